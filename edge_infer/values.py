"""Frozen value types handed between pipeline stages."""

from __future__ import annotations

import json
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured image, BGR uint8 (OpenCV's order), as the source delivered it.

    `release` gives the pixel buffer back to the source's pool once the frame is no longer needed
    (after preprocessing, or when the frame is dropped), so live capture allocates nothing per frame.
    """

    seq: int
    image: np.ndarray
    ts: float
    path: str | None = None
    release: Callable[[], None] = field(default=lambda: None, repr=False)
    # When the source delivered it (time.monotonic): how far a result lags behind reality is measured from here.
    captured: float = field(default_factory=time.monotonic, repr=False)


@dataclass(frozen=True, eq=False)
class PreparedFrame:
    """A frame already scaled and quantized into a staging buffer shaped like the model's input."""

    seq: int
    ts: float
    path: str | None
    input: np.ndarray
    preprocess_ms: float
    release: Callable[[], None] = field(default=lambda: None, repr=False)
    captured: float = field(default_factory=time.monotonic, repr=False)
    generation: int = 0  # of the model it was prepared for: a frame prepared for a switched-away model is passed over


@dataclass(frozen=True)
class Window:
    """A rectangle of pixels."""

    x: int
    y: int
    width: int
    height: int


def center_window(width: int, height: int, aspect_width: int, aspect_height: int) -> Window:
    """The largest window of a width x height area with the aspect ratio aspect_width : aspect_height,
    centred: the sides (or the top and bottom) that do not fit are cut evenly."""
    # Compare aspect ratios without division: width/height vs aspect_width/aspect_height.
    if width * aspect_height > aspect_width * height:
        kept = round(height * aspect_width / aspect_height)
        return Window((width - kept) // 2, 0, kept, height)
    kept = round(width * aspect_height / aspect_width)
    return Window(0, (height - kept) // 2, width, kept)


@dataclass(frozen=True)
class Box:
    """A region of the frame in fractions of its width and height: left, top, width, height."""

    x: float
    y: float
    width: float
    height: float

    WHOLE: typing.ClassVar[Box]

    def pixels(self, frame_width: int, frame_height: int) -> tuple[int, int, int, int]:
        """(x, y, width, height) in whole pixels inside the frame, at least 1 x 1."""
        left, top = round(self.x * frame_width), round(self.y * frame_height)
        right, bottom = round((self.x + self.width) * frame_width), round((self.y + self.height) * frame_height)
        left, top = min(left, frame_width - 1), min(top, frame_height - 1)
        return left, top, max(1, min(right, frame_width) - left), max(1, min(bottom, frame_height) - top)


Box.WHOLE = Box(0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class Class:
    """One ranked class: the model's output index, its label and its score in [0, 1]."""

    index: int
    label: str
    score: float


@dataclass(frozen=True)
class Timing:
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    # From the source delivering the frame to its result: the stages plus the wait in the hand-off,
    # i.e. how far the published label lags behind what the camera sees.
    age_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


@dataclass(frozen=True)
class Classification:
    """The result for one frame, as every output publishes it."""

    frame: int
    ts: float
    model: str
    backend: str
    top: tuple[Class, ...]
    timing: Timing
    path: str | None = None
    # With `cameras:` in the configuration: which camera, and which of its regions (None: the whole frame).
    camera: str | None = None
    region: str | None = None

    def to_json(self) -> str:
        """One compact line, as stdout and the MQTT classification topic carry it."""
        return json.dumps(self.to_json_dict(), separators=(",", ":"), ensure_ascii=False)

    def to_json_dict(self) -> dict[str, object]:
        record: dict[str, object] = {
            "type": "classification",
            "ts": round(self.ts, 6),
            "frame": self.frame,
            "model": self.model,
            "backend": self.backend,
            "top": [{"index": c.index, "label": c.label, "score": round(c.score, 6)} for c in self.top],
            "latency_ms": {
                "preprocess": round(self.timing.preprocess_ms, 3),
                "inference": round(self.timing.inference_ms, 3),
                "postprocess": round(self.timing.postprocess_ms, 3),
                "total": round(self.timing.total_ms, 3),
                "age": round(self.timing.age_ms, 3),
            },
        }
        if self.path is not None:
            record["path"] = self.path
        if self.camera is not None:  # a run of `cameras:`; a plain `source:` run keeps its records as they were
            record["camera"] = self.camera
            record["region"] = self.region
        return record

"""Frozen value types handed between pipeline stages."""

from __future__ import annotations

import json
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class SensorScores:
    """What a network on the camera's sensor (the AI Camera's IMX500) said about one frame: its output as it came,
    and how long the sensor took (its DNN and DSP times)."""

    outputs: np.ndarray  # float32, one per class, as the network gives them (logits or probabilities)
    inference_ms: float


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
    # From a camera that runs the network itself (the AI Camera): its scores for this frame; None when the network
    # has not answered for it (the first frames after a start).
    sensor: SensorScores | None = field(default=None, repr=False)


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
    sensor_ms: float | None = None  # with a network on the sensor: `input` holds its outputs, and this its time


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

    @property
    def label(self) -> str | None:
        """The answer: the best class, or None when no class reached the threshold (or unknown_below)."""
        return self.top[0].label if self.top else None

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
            "label": self.label,
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


# --- the run's status: what the MQTT stats, /api/status, /metrics and the final log report ------------
# The run assembly builds a RunStatus on request (Run.status()), from any thread; outputs read the model and
# backend in use from it (the thermal guard and the Edge TPU failover change them), never from what they were
# opened with. to_json_dict is the one JSON form (the MQTT stats message, /api/status).

@dataclass(frozen=True)
class Percentiles:
    p50: float = 0.0
    p95: float = 0.0

    def to_json_dict(self) -> dict[str, float]:
        return {"p50": round(self.p50, 3), "p95": round(self.p95, 3)}


@dataclass(frozen=True)
class FrameCounts:
    """What the inference loop counted (RunStats): for the run, or for one camera."""

    frames: int = 0
    dropped_frames: int = 0
    output_errors: int = 0
    uptime_s: float = 0.0
    fps: float = 0.0
    inference_ms: Percentiles = Percentiles()
    age_ms: Percentiles = Percentiles()  # capture to result: how far results lag behind reality

    def to_json_dict(self) -> dict[str, object]:
        return {"frames": self.frames, "dropped_frames": self.dropped_frames, "output_errors": self.output_errors,
                "uptime_s": round(self.uptime_s, 1), "fps": round(self.fps, 2),
                "inference_ms": self.inference_ms.to_json_dict(), "age_ms": self.age_ms.to_json_dict()}


@dataclass(frozen=True)
class SourceHealth:
    """A live source that reconnects (ReconnectingSource)."""

    state: str  # "streaming" or "reconnecting"
    outages: int  # how many times the source was lost
    outage_s: float  # seconds without the source, in all, the current outage included
    since_s: float  # seconds in the current state

    @property
    def streaming(self) -> bool:
        return self.state == "streaming"

    def to_json_dict(self) -> dict[str, object]:
        return {"state": self.state, "outages": self.outages, "outage_s": round(self.outage_s, 1),
                "since_s": round(self.since_s, 1)}


@dataclass(frozen=True)
class AcceleratorHealth:
    """The accelerator failover (Failover): the Edge TPU's or the Hailo's."""

    state: str  # the accelerator ("edgetpu", "hailo"), or "lost" while the fallback runs on the CPU
    failovers: int  # how many times the accelerator was lost (a start-up on the fallback counts)
    lost_s: float  # seconds on the fallback, in all, the current spell included

    def to_json_dict(self) -> dict[str, object]:
        return {"state": self.state, "failovers": self.failovers, "lost_s": round(self.lost_s, 1)}


@dataclass(frozen=True)
class GuardStatus:
    """The thermal guard's last step."""

    level: int = 0
    model: str = ""
    temperature_c: float | None = None

    def to_json_dict(self) -> dict[str, object]:
        return {"level": self.level, "model": self.model, "temperature_c": self.temperature_c}


@dataclass(frozen=True)
class BoardHealth:
    """What the board reports, where it does: the SoC temperature and the Pi firmware's throttling flags.

    In a run, the flags' "*_occurred" keys and `throttle_events` are since the service started (service.board:
    the firmware's own "occurred" bits are cleared every 2 s); the other flags are the state now.
    """

    cpu_temp_c: float | None = None
    throttled: Mapping[str, bool] | None = None
    throttle_events: Mapping[str, int] | None = None  # times each condition began since the service started

    def to_json_dict(self) -> dict[str, object]:
        health: dict[str, object] = {}
        if self.cpu_temp_c is not None:
            health["cpu_temp_c"] = round(self.cpu_temp_c, 1)
        if self.throttled is not None:
            health["throttled"] = dict(self.throttled)
        if self.throttle_events is not None:
            health["throttle_events"] = dict(self.throttle_events)
        return health


@dataclass(frozen=True)
class RegionStatus:
    model: str
    backend: str


@dataclass(frozen=True)
class CameraStatus:
    """One camera of a `cameras:` run."""

    name: str
    frames: FrameCounts
    source: SourceHealth | None = None  # None: a file source, which does not reconnect
    regions: Mapping[str, RegionStatus] = field(default_factory=dict)

    @property
    def streaming(self) -> bool:
        return self.source is None or self.source.streaming

    def to_json_dict(self) -> dict[str, object]:
        counts = self.frames.to_json_dict()
        del counts["uptime_s"], counts["output_errors"]  # the run's, not a camera's
        if self.source is not None:
            counts["source"] = self.source.to_json_dict()
        counts["regions"] = {name: {"model": region.model, "backend": region.backend}
                             for name, region in self.regions.items()}
        return counts


@dataclass(frozen=True)
class RunStatus:
    model: str  # the configured model's, as it runs now (a guard step or the fallback changes it)
    backend: str
    frames: FrameCounts = FrameCounts()
    source: SourceHealth | None = None  # a plain `source:` run's, when it reconnects
    accelerator: AcceleratorHealth | None = None
    guard: GuardStatus | None = None
    board: BoardHealth = BoardHealth()
    cameras: tuple[CameraStatus, ...] = ()  # a `cameras:` run's

    def camera(self, name: str) -> CameraStatus | None:
        return next((camera for camera in self.cameras if camera.name == name), None)

    def to_json_dict(self) -> dict[str, object]:
        """The MQTT stats message and `/api/status`'s `stats`."""
        record: dict[str, object] = {**self.frames.to_json_dict(), "model": self.model, "backend": self.backend}
        if self.source is not None:
            record["source"] = self.source.to_json_dict()
        if self.cameras:
            record["cameras"] = {camera.name: camera.to_json_dict() for camera in self.cameras}
        if self.accelerator is not None:
            record["accelerator"] = self.accelerator.to_json_dict()
        if self.guard is not None:
            record["guard"] = self.guard.to_json_dict()
        return {**record, **self.board.to_json_dict()}

"""What every frame source provides, and the buffer pool live sources reuse."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..values import Box, Frame


def no_extension(seconds: float) -> None:
    """Outside systemd nobody holds a start deadline to extend."""


@dataclass(frozen=True)
class SourceHints:
    """What the model wants, so a source that can scale cheaply (Picamera2's ISP, libjpeg's DCT) does it there."""

    width: int
    height: int
    crop: str
    # The network on the AI Camera's sensor (pipeline.imx500.SensorNetwork), which the Picamera2 source opens the
    # camera for, points at `box` of its frames, and reads each frame's outputs from.
    network: Any = None
    box: Box = Box.WHOLE
    # A start that waits for something slow (the AI Camera's firmware upload) asks for more time with it
    # (SystemdNotifier.extend_start: systemd's EXTEND_TIMEOUT_USEC).
    extend_start: Callable[[float], None] = field(default=no_extension, compare=False)
    # The frames are shown (the live page, snapshots) or cut into regions: a source that could deliver them
    # scaled down for the model (an MJPEG video's JPEGs decoded at a reduced scale) delivers them whole.
    full_size: bool = False


class Source(Protocol):
    """A producer of frames. `read` blocks for the next frame, returns None at the end, raises SourceError."""

    @property
    def description(self) -> str: ...

    @property
    def live(self) -> bool:
        """A camera or stream (only the newest frame matters), rather than a file."""
        ...

    @property
    def skipped(self) -> int:
        """Frames it could not decode and passed over."""
        ...

    def read(self) -> Frame | None: ...

    def retarget(self, hints: SourceHints) -> bool:
        """Deliver frames for `hints` from the next read: a model with another input size now classifies the
        frames (a config reload, a taught model). Called on the thread that reads. False: only opening the
        source again can (ReconnectingSource does that)."""
        ...

    def close(self) -> None: ...


class BufferPool:
    """Frame buffers handed back after use, so steady-state capture allocates no new images.

    Thread-safe: the capture thread takes buffers, the inference thread gives them back.
    It keeps at most `keep` spare buffers; when it has none the reader allocates a fresh one.
    """

    def __init__(self, keep: int = 4) -> None:
        self._free: deque[np.ndarray] = deque()
        self._keep = keep
        self._lock = threading.Lock()

    def take(self) -> np.ndarray | None:
        with self._lock:
            return self._free.pop() if self._free else None

    def give_back(self, buffer: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)

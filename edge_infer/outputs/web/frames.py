"""The live view's pictures: the capture thread's copies, one encoder per camera, and the JPEG its viewers share.

- capture thread, `see_frame`: only while a viewer waits for a picture (or a `/snapshot.jpg` asked)
  and at most `max_fps` times a second, copies the frame into one of two reused buffers (the other
  one may be in the encoder's hands); otherwise it returns after one comparison;
- one encoder thread per camera scales the newest copy to `width`, draws that frame's own results on
  it (each region's box and label) and encodes one JPEG, shared by every viewer through a sequence number;
- each viewer's own handler thread waits for the next sequence number and writes it. A slow
  viewer simply gets the newest JPEG when it is ready again (it skips frames, nothing is queued
  for it); a stalled one costs nothing (no viewer waiting: no copy, no encoding).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import cv2
import numpy as np

from ...values import Box, Classification, Frame
from ..snapshots import annotate, encode_jpeg

log = logging.getLogger(__name__)

WAIT_STEP_S = 0.5  # how often waiting threads look at the stop event
SNAPSHOT_WAIT_S = 2.0  # /snapshot.jpg waits this long for a fresh frame, then serves the newest it has
# A snapshot this recent is served again as it is: a full-size encode is the dearest thing the server does,
# and forty clients asking at once must not cost forty of them.
SNAPSHOT_REUSE_S = 0.5
# How long the encoder waits for the result of the frame it is about to show. Results come one inference
# after their frame; a frame that inference passed over (newest-frame mode) gets none, and the
# newest result of an earlier frame is drawn instead, never one of a later frame.
RESULT_WAIT_S = 1.0
RESULTS_KEPT = 64  # a camera's recent results, looked up by frame number


class FrameGrabber:
    """The capture thread's side: the newest frame in one of two reused buffers, copied only on demand."""

    def __init__(self, max_fps: float, demand: Callable[[], bool], clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / max_fps
        self._demand = demand
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._buffers: list[np.ndarray | None] = [None, None]
        self._frames = [-1, -1]  # the frame number (Frame.seq) each buffer holds: its own result is drawn on it
        self._newest = -1  # the buffer holding the newest copy; -1: none yet
        self._reading = -1  # the buffer the encoder reads: the capture thread writes the other one
        self._next_at = float("-inf")
        self._wanted_until = float("-inf")  # a /snapshot.jpg asked for a fresh frame
        self.seq = 0  # copies made so far
        self.copies_failed = 0

    def want(self, seconds: float) -> None:
        self._wanted_until = self._clock() + seconds

    def see_frame(self, frame: Frame) -> None:
        now = self._clock()
        # Unlocked reads: a stale value costs or saves one copy, never correctness.
        if now < self._next_at or not (now < self._wanted_until or self._demand()):
            return
        image = frame.image
        with self._cond:
            # A schedule, not a minimum gap: a 30 fps camera under a 10 fps cap gives 10, not 7.5.
            self._next_at = max(self._next_at, now - self._interval) + self._interval
            target = (self._newest + 1) % 2 if self._reading < 0 else 1 - self._reading
            buffer = self._buffers[target]
            if buffer is None or buffer.shape != image.shape or buffer.dtype != image.dtype:
                buffer = self._buffers[target] = np.empty_like(image)  # first frame, or the source changed size
            np.copyto(buffer, image)
            self._frames[target] = frame.seq
            self._newest = target
            self.seq += 1
            self._cond.notify_all()

    @property
    def reading_frame(self) -> int:
        """The frame number of the copy the encoder took last."""
        with self._cond:
            return self._frames[self._reading] if self._reading >= 0 else -1

    def take(self, after: int, timeout: float) -> tuple[np.ndarray, int] | None:
        """Encoder: the newest copy if newer than `after` (waiting up to `timeout`); call `done` after reading it."""
        with self._cond:
            if self.seq == after:
                self._cond.wait(timeout)
            if self.seq == after or self._newest < 0:
                return None
            self._reading = self._newest
            return self._buffers[self._reading], self.seq  # type: ignore[return-value]

    def done(self) -> None:
        with self._cond:
            self._reading = -1

    def copy_newest(self, newer_than: int, timeout: float) -> tuple[np.ndarray, int] | None:
        """A copy of a frame newer than `newer_than` if one comes within `timeout`, else of the newest one;
        with its frame number."""
        with self._cond:
            self._cond.wait_for(lambda: self.seq > newer_than, timeout)
            if self._newest < 0:
                return None
            buffer = self._buffers[self._newest]
            return None if buffer is None else (buffer.copy(), self._frames[self._newest])

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class JpegHub:
    """The newest encoded frame, shared by every viewer; viewers waiting for one are the demand for frames."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jpeg = b""
        self.seq = 0
        self.waiting = 0  # viewers waiting for the next JPEG: read by the capture thread
        self.viewers = 0

    def put(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg = jpeg
            self.seq += 1
            self._cond.notify_all()

    def wait_newer(self, seq: int, timeout: float) -> tuple[bytes, int] | None:
        with self._cond:
            if self.seq == seq:
                self.waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self.waiting -= 1
            return (self._jpeg, self.seq) if self.seq != seq else None

    @contextmanager
    def viewer(self) -> Iterator[int]:
        """Count a viewer while it is connected; yields the current sequence, so it starts with a fresh frame."""
        with self._cond:
            self.viewers += 1
            seq = self.seq
        try:
            yield seq
        finally:
            with self._cond:
                self.viewers -= 1

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class ResultHistory:
    """A camera's recent results by frame number, so a picture shows its own frame's labels, not newer ones.

    Written by the inference loop (`add`), read by the encoder and the status page. Bounded: the last
    RESULTS_KEPT results."""

    def __init__(self, places: Sequence[str | None]) -> None:
        self._cond = threading.Condition()
        self._results: deque[Classification] = deque(maxlen=RESULTS_KEPT)
        # Per region (None: the whole frame), every key there from the start: readers on other threads
        # iterate while the loop assigns, and a dict that never grows can be read that way.
        self.newest: dict[str | None, Classification | None] = dict.fromkeys(places)
        self.total: dict[str | None, int] = dict.fromkeys(places, 0)  # results per region since the start

    def add(self, result: Classification) -> None:
        with self._cond:
            self._results.append(result)
            if result.region in self.newest:
                self.newest[result.region] = result
                self.total[result.region] += 1
            self._cond.notify_all()

    def for_frame(self, frame: int, timeout: float) -> dict[str | None, Classification]:
        """Per region, the result of `frame`, or of the latest frame before it; waits up to `timeout` for a
        result of `frame` or later, which tells that `frame`'s own has come or never will."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._results) and self._results[-1].frame >= frame, timeout)
            shown: dict[str | None, Classification] = {}
            for result in self._results:  # oldest first: later ones at or before `frame` replace earlier ones
                if result.frame <= frame:
                    shown[result.region] = result
            return shown

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class CameraView:
    """One camera's live view: its grabber, its encoder thread and the JPEG its viewers share."""

    def __init__(self, name: str | None, boxes: Mapping[str, Box], max_fps: float, width: int, jpeg_quality: int,
                 stopping: threading.Event, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.boxes = dict(boxes)  # its regions (none: the whole frame)
        self._width = width
        self._jpeg_quality = jpeg_quality
        self._stopping = stopping
        self.hub = JpegHub()
        self.grabber = FrameGrabber(max_fps, lambda: self.hub.waiting > 0, clock)
        self.results = ResultHistory(tuple(self.boxes) or (None,))
        self._scaled: np.ndarray | None = None
        self._clock = clock
        self._snapshot: tuple[float, bytes] | None = None  # (when it was encoded, the JPEG)
        self._snapshot_lock = threading.Lock()
        self._encoder = threading.Thread(target=self._encode, name=f"web-encoder-{name}" if name else "web-encoder",
                                         daemon=True)

    def start(self) -> None:
        self._encoder.start()

    def annotate(self, image: np.ndarray, results: Mapping[str | None, Classification]) -> np.ndarray:
        """Each region's box and label, or the whole frame's label."""
        if not self.boxes:
            return annotate(image, results.get(None))
        for region, box in self.boxes.items():
            annotate(image, results.get(region), box)
        return image

    def _encode(self) -> None:
        """The encoder thread: newest frame + that frame's results -> one JPEG for every viewer."""
        seq = 0
        while not self._stopping.is_set():
            taken = self.grabber.take(seq, WAIT_STEP_S)
            if taken is None:
                continue
            image, seq = taken
            try:
                frame = self.grabber.reading_frame
                picture = self._scale(image)  # our own copy: the grabber's buffer goes back at once
            finally:
                self.grabber.done()
            try:
                results = self.results.for_frame(frame, RESULT_WAIT_S)
                self.hub.put(encode_jpeg(self.annotate(picture, results), self._jpeg_quality))
            except Exception as exc:
                log.warning("web: could not encode a frame: %s", exc)

    def _scale(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        size = (self._width, max(1, round(height * self._width / width))) if width > self._width else (width, height)
        shape = (size[1], size[0], *image.shape[2:])
        if self._scaled is None or self._scaled.shape != shape or self._scaled.dtype != image.dtype:
            self._scaled = np.empty(shape, image.dtype)  # reused from now on
        if size == (width, height):
            np.copyto(self._scaled, image)
        else:
            cv2.resize(image, size, dst=self._scaled, interpolation=cv2.INTER_AREA)
        return self._scaled

    def newest_frame(self) -> tuple[np.ndarray, int] | None:
        """A copy of a frame that arrives within SNAPSHOT_WAIT_S (else of the newest one), full size, with its
        frame number; None before the first frame."""
        seq = self.grabber.seq
        self.grabber.want(SNAPSHOT_WAIT_S)
        return self.grabber.copy_newest(seq, SNAPSHOT_WAIT_S)

    def snapshot(self) -> bytes | None:
        """The newest frame at full size with its own results on it: encoded now, or at most SNAPSHOT_REUSE_S ago.

        The lock makes requests that come together wait for one encode and share it."""
        with self._snapshot_lock:
            if self._snapshot is not None and self._clock() - self._snapshot[0] < SNAPSHOT_REUSE_S:
                return self._snapshot[1]
            copied = self.newest_frame()
            if copied is None:
                return None
            image, frame = copied
            jpeg = encode_jpeg(self.annotate(image, self.results.for_frame(frame, RESULT_WAIT_S)), self._jpeg_quality)
            self._snapshot = (self._clock(), jpeg)
            return jpeg

    def close(self) -> None:
        self.grabber.wake()
        self.hub.wake()
        self.results.wake()
        if self._encoder.is_alive():
            self._encoder.join(WAIT_STEP_S + RESULT_WAIT_S)

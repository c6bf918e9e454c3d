"""The capture thread and the bounded hand-off between it and the inference loop."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from ..errors import EdgeInferError, SourceError
from ..sources.base import Source
from ..values import Frame

log = logging.getLogger(__name__)


class Releasable(Protocol):
    """A frame, or a frame already prepared: `release` gives its buffer back to the pool it came from."""

    def release(self) -> None: ...


Item = TypeVar("Item", bound=Releasable)


class FrameHandoff(Generic[Item]):
    """Holds at most `capacity` frames between the capture thread and the inference loop.

    Items are frames or prepared frames: anything with `release()`, called when one is dropped.

    With `drop_oldest` (live video) a full hand-off drops its oldest frame and counts it, so the
    loop always gets the newest frame and never lags behind reality. Without it (files) the
    capture thread waits for room, so every frame is classified.
    """

    def __init__(self, capacity: int, drop_oldest: bool, stop: threading.Event,
                 cond: threading.Condition | None = None) -> None:
        self._frames: deque[Item] = deque()
        self._capacity = capacity
        self._drop_oldest = drop_oldest
        self._stop = stop
        # Several cameras' hand-offs share one condition, so the loop can wait for a frame from any of them.
        self._cond = cond or threading.Condition()
        self._finished = False
        self.error: EdgeInferError | None = None
        self.dropped = 0

    def put(self, frame: Item) -> bool:
        """Hand over a frame; False when the run stopped before there was room for it."""
        with self._cond:
            while len(self._frames) >= self._capacity:
                if self._drop_oldest:
                    self._frames.popleft().release()
                    self.dropped += 1
                elif self._stop.is_set():
                    return False
                else:
                    self._cond.wait(0.1)
            self._frames.append(frame)
            self._cond.notify_all()
            return True

    def finish(self, error: EdgeInferError | None = None) -> None:
        """No more frames will come; `error` says why, if the source failed."""
        with self._cond:
            self._finished = True
            self.error = error
            self._cond.notify_all()

    def take(self) -> Item | None:
        """The next frame if one is waiting, without waiting."""
        with self._cond:
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame

    @property
    def ready(self) -> bool:
        """A frame is waiting, or none will come any more."""
        with self._cond:
            return bool(self._frames) or self._finished

    def get(self, timeout: float) -> Item | None:
        """The next frame, or None if none came within `timeout` (check `exhausted`)."""
        with self._cond:
            if not self._frames and not self._finished:
                self._cond.wait(timeout)
            return self.take()

    @property
    def exhausted(self) -> bool:
        with self._cond:
            return self._finished and not self._frames


def capture_frames(source: Source, prepare: Callable[[Frame], Item], handoff: FrameHandoff[Item],
                   stop: threading.Event) -> None:
    """Body of the capture thread: read and prepare frames until the source ends, fails, or the run stops."""
    error: EdgeInferError | None = None
    try:
        while not stop.is_set():
            frame = source.read()
            if frame is None:
                break
            item = prepare(frame)
            if not handoff.put(item):
                item.release()
                break
    except EdgeInferError as exc:
        error = exc
    except Exception as exc:  # a driver or decoder bug must still end the run with one clear line
        log.debug("capture failed", exc_info=True)
        error = SourceError(f"{source.description} failed: {type(exc).__name__}: {exc}")
    finally:
        handoff.finish(error)


def start_capture(source: Source, prepare: Callable[[Frame], Item], handoff: FrameHandoff[Item],
                  stop: threading.Event, name: str = "capture") -> threading.Thread:
    thread = threading.Thread(target=capture_frames, args=(source, prepare, handoff, stop), name=name, daemon=True)
    thread.start()
    return thread

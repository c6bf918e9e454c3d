"""Live sources that come back: a camera unplugged for a moment or a stream that restarts does not end the run.

When the source fails or stops delivering, it is closed and opened again with backoff (1 s,
doubling to 30 s), for as long as the run lasts. The outage is logged once when it starts and once
when it ends, and counted in the source's health, which the stats report. Files never reach here:
they end normally.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from ..errors import SourceError
from ..values import Frame, SourceHealth
from .base import Source, SourceHints

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
LONGEST_RETRY_S = 30.0


# The retry schedule the Edge TPU failover shares.
class Backoff:
    """Waits of `first` seconds, doubling up to `longest`: 1, 2, 4, ... 30, 30 for (1, 30).

    A device that comes back soon is found soon; one that stays away costs one try per `longest` s."""

    def __init__(self, first: float, longest: float) -> None:
        self.first = first
        self.longest = longest
        self._next = first

    def next(self) -> float:
        """The wait before the next try; the one after it is twice as long (at most `longest`)."""
        delay = self._next
        self._next = min(self._next * 2, self.longest)
        return delay

    def reset(self) -> None:
        """The thing came back: the next outage starts again at `first`."""
        self._next = self.first


class ReconnectingSource:
    """Wraps a live source; `reopen(hints)` opens a new one of the same kind, for the model's `hints`. Frames are
    numbered across outages.

    `read` waits out an outage on the capture thread; `stop` (the run's stop event) ends the wait.
    """

    live = True

    def __init__(self, source: Source | None, reopen: Callable[[SourceHints], Source], stop: threading.Event, *,
                 hints: SourceHints, clock: Callable[[], float] = time.monotonic, description: str = "",
                 camera: str | None = None) -> None:
        """`source` None: it could not be opened at start (one of several cameras), and is tried again.
        `camera`: its name in a `cameras:` run, which its log lines start with."""
        self._prefix = f"camera {camera}: " if camera else ""
        self._source = source
        self._reopen = reopen
        self._hints = hints
        self._open_again = False  # retarget: the source cannot serve the new hints as it is
        self._stop = stop
        self._clock = clock
        self.description = source.description if source is not None else description
        self._seq = 0
        self._skipped_before = 0
        self._outages = 0 if source is not None else 1
        self._outage_total = 0.0
        self._state_since = clock()
        self._lost_at: float | None = None if source is not None else self._state_since

    @property
    def skipped(self) -> int:
        return self._skipped_before + (self._source.skipped if self._source is not None else 0)

    @property
    def reconnecting(self) -> bool:
        return self._lost_at is not None

    def health(self) -> SourceHealth:
        now = self._clock()
        current = now - self._lost_at if self._lost_at is not None else 0.0
        return SourceHealth("reconnecting" if self.reconnecting else "streaming", self._outages,
                            self._outage_total + current, now - self._state_since)

    def read(self) -> Frame | None:
        backoff = Backoff(FIRST_RETRY_S, LONGEST_RETRY_S)
        while not self._stop.is_set():
            if self._source is None:
                if self._stop.wait(backoff.next()):
                    break
                self._try_reopen()
                continue
            if self._open_again:
                self._reopen_for_model()
                continue
            try:
                frame = self._source.read()
                if frame is None:  # a live stream has no end: the server went away
                    raise SourceError(f"{self.description} ended")
            except Exception as exc:  # any failure of a live source is an outage, not the end of the run
                self._lost(exc)
                continue
            if self._lost_at is not None:
                self._back()
            self._seq += 1
            return replace(frame, seq=self._seq)
        return None

    def _lost(self, error: Exception) -> None:
        if self._lost_at is None:  # said before closing: a library may abort the process there (libcamera can)
            self._outages += 1
            self._lost_at = self._state_since = self._clock()
            log.warning("%ssource lost: %s; reconnecting every %g-%g s", self._prefix, error, FIRST_RETRY_S,
                        LONGEST_RETRY_S)
        else:
            log.debug("%s: still lost (%s)", self.description, error)
        self._drop()

    def _drop(self) -> None:
        """Close the source, keeping its count of frames passed over."""
        source, self._source = self._source, None
        if source is not None:
            self._skipped_before += source.skipped
            source.close()

    def _open(self) -> None:
        """Open a new source for the newest hints; raises what `reopen` raises."""
        self._source = self._reopen(self._hints)
        self.description = self._source.description
        self._open_again = False

    def _try_reopen(self) -> None:
        try:
            self._open()
        except Exception as exc:
            log.debug("%s: reopening failed: %s", self.description, exc)

    def retarget(self, hints: SourceHints) -> bool:
        """The source serves `hints` from the next read, as it is or opened again for them (a Pi camera's lores
        stream, sized for a smaller model); a reconnect later opens it for them too."""
        self._hints = hints
        if self._source is not None and not self._source.retarget(hints):
            self._open_again = True
        return True

    def _reopen_for_model(self) -> None:
        """Not an outage: closed and opened at once, for the model's new input; if that fails, it is lost."""
        log.info("%s%s: opening it again for the model's %dx%d input", self._prefix, self.description,
                 self._hints.width, self._hints.height)
        self._drop()
        try:
            self._open()
        except Exception as exc:
            self._lost(exc)

    def _back(self) -> None:
        assert self._lost_at is not None
        now = self._clock()
        self._outage_total += now - self._lost_at
        log.warning("%s%s is back after %.1f s (outage %d)", self._prefix, self.description, now - self._lost_at,
                    self._outages)
        self._lost_at = None
        self._state_since = now

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

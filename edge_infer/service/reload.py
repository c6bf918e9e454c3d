"""Models applied without a restart: the run watches its configuration file and moves regions to the models
it names now (a class taught with `teach train --apply`, or a model edited in by hand), and the file of
taught models the live page put in use (teach/in_use.py).

A changed file is read whole and checked as at start; one that is wrong is logged and changes nothing.
Only which model each region runs (and `model.path`) is applied live, with the camera's frames scaled for it
(Source.retarget); anything else waits for a restart, and the log says so.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from ..errors import EdgeInferError

log = logging.getLogger(__name__)

POLL_S = 2.0
Config = TypeVar("Config")  # what the file reads as (the run's Config): the watch only hands it on


def file_state(path: str | Path) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


class ConfigWatch(Generic[Config]):
    """A run component: its thread looks at the files every `interval_s` and, when one changed, calls
    `apply(applied, new)` with the configuration applied last (at first the run's) and what `read` makes of
    the files now (the run moves the regions whose model changed). A file that is gone is no change: an
    editor saving it may remove it for a moment."""

    def __init__(self, paths: Sequence[str | Path], read: Callable[[], Config], apply: Callable[[Config, Config], None],
                 applied: Config, interval_s: float = POLL_S) -> None:
        self._paths = tuple(paths)
        self._read = read
        self._apply = apply
        self._applied = applied
        self._interval_s = interval_s
        self._seen = self._states()
        self._lock = threading.Lock()  # check() runs on the watch's thread and on the page's "Use this model"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="config-watch", daemon=True)

    def _states(self) -> tuple[tuple[int, int, int] | None, ...]:
        return tuple(file_state(path) for path in self._paths)

    def start(self) -> None:
        self._thread.start()

    def current(self) -> Config:
        """The configuration applied last."""
        return self._applied

    def check(self) -> bool:
        """Apply the files if one changed since last seen; True when one did."""
        with self._lock:
            states = self._states()
            if states == self._seen or any(state is None and seen is not None
                                           for state, seen in zip(states, self._seen, strict=True)):
                return False
            changed = ", ".join(str(path) for path, state, seen in zip(self._paths, states, self._seen, strict=True)
                                if state != seen)
            self._seen = states
            try:
                config = self._read()
            except EdgeInferError as exc:
                log.error("%s changed, but cannot be used: %s; the run goes on as it was", changed, exc)
                return False
            try:
                self._apply(self._applied, config)
            except EdgeInferError as exc:
                log.error("%s changed, but applying it failed: %s; the run goes on as it was", changed, exc)
            else:
                self._applied = config
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._interval_s + 1.0)

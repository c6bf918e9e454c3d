"""Retries that wait longer each time: the reconnecting source and the Edge TPU failover share this one."""

from __future__ import annotations


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

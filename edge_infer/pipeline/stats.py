"""Run statistics: updated by the inference loop once per frame, read by anyone (MQTT stats, the final log line)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..values import FrameCounts, Percentiles


class RunStats:
    """Counters and a ring of the last `window` frames' inference times and completion times.

    Written only by the inference loop; other threads read snapshots. A reader racing a write may
    see one slot old and one new: harmless for percentiles over hundreds of frames.
    """

    def __init__(self, window: int = 300, clock: Callable[[], float] = time.monotonic) -> None:
        self.frames = 0
        self.dropped = 0
        self.output_errors = 0
        self._clock = clock
        self._started = clock()
        self._inference_ms = np.zeros(window)
        self._age_ms = np.zeros(window)
        self._finished_at = np.zeros(window)
        self._inference_total_ms = 0.0

    def record(self, inference_ms: float, dropped: int, age_ms: float = 0.0) -> None:
        slot = self.frames % len(self._inference_ms)
        self._inference_ms[slot] = inference_ms
        self._age_ms[slot] = age_ms
        self._finished_at[slot] = self._clock()
        self._inference_total_ms += inference_ms
        self.frames += 1
        self.dropped = dropped

    @property
    def seconds(self) -> float:
        return self._clock() - self._started

    def recent_fps(self) -> float:
        """Frames per second over the ring: (n - 1) frames completed between its oldest and newest entries."""
        n = min(self.frames, len(self._finished_at))
        if n < 2:
            return 0.0
        newest = (self.frames - 1) % len(self._finished_at)
        oldest = (self.frames - n) % len(self._finished_at)
        span = self._finished_at[newest] - self._finished_at[oldest]
        return (n - 1) / span if span > 0 else 0.0

    def counts(self) -> FrameCounts:
        n = min(self.frames, len(self._inference_ms))
        p50, p95 = (np.percentile(self._inference_ms[:n], [50, 95]) if n else (0.0, 0.0))
        age_p50, age_p95 = (np.percentile(self._age_ms[:n], [50, 95]) if n else (0.0, 0.0))
        return FrameCounts(self.frames, self.dropped, self.output_errors, self.seconds, self.recent_fps(),
                           Percentiles(float(p50), float(p95)), Percentiles(float(age_p50), float(age_p95)))

    def summary(self) -> str:
        seconds = self.seconds
        fps = self.frames / seconds if seconds > 0 else 0.0
        mean = self._inference_total_ms / self.frames if self.frames else 0.0
        return (f"{self.frames} frames in {seconds:.1f} s ({fps:.1f} fps), {self.dropped} dropped, "
                f"inference {mean:.2f} ms mean, {self.output_errors} output errors")

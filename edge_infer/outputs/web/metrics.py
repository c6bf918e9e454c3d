"""Prometheus metrics for the live view's /metrics, in the text format, written by hand."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ... import __version__
from ...values import FrameCounts, RunStatus

# Seconds; MobileNets take 0.2 ms (x86, 0.25_128) to 200 ms (a Pi 3, V2 224).
INFERENCE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class RegionCounts:
    """A region's part of the metrics (the whole frame's, for a camera without regions: region "")."""

    results: int
    top_score: float


class Histogram:
    """A Prometheus histogram, observed on the inference thread and read by /metrics (under a lock, so the
    buckets, the count and the sum always agree)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        slot = bisect.bisect_left(self.bounds, value)  # le: a value equal to a bound belongs to it
        with self._lock:
            self._counts[slot] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[int], float]:
        """Cumulative counts per bound and +Inf, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running)
        return cumulative, total


def label_value(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


def render_metrics(status: RunStatus, histogram: Histogram, mqtt_connected: bool | None, viewers: int,
                   regions: Mapping[tuple[str, str], RegionCounts] | None = None) -> str:
    """The Prometheus text exposition format (version 0.0.4), written by hand: no dependency at run time.

    A `cameras:` run labels the per-camera series with `camera` (frames, dropped frames, fps, the source
    being up) and adds per-region series labelled `camera` and `region` (results and the top score)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {number(value)}" for labels, value in samples)

    def by_camera(value: Callable[[FrameCounts], float]) -> list[tuple[str, float]]:
        if not status.cameras:
            return [("", value(status.frames))]
        return [(f'{{camera="{label_value(camera.name)}"}}', value(camera.frames)) for camera in status.cameras]

    metric("edge_infer_info", "gauge", "The running edge-infer: model, backend and version (always 1).",
           [(f'{{model="{label_value(status.model)}",backend="{label_value(status.backend)}",'
             f'version="{label_value(__version__)}"}}', 1)])
    metric("edge_infer_frames_total", "counter", "Frames classified since the start.",
           by_camera(lambda counts: counts.frames))
    metric("edge_infer_dropped_frames_total", "counter",
           "Frames a live source delivered that inference had no time for (newest-frame mode).",
           by_camera(lambda counts: counts.dropped_frames))
    metric("edge_infer_output_errors_total", "counter", "Results an output failed to take.",
           [("", status.frames.output_errors)])
    cumulative, total = histogram.snapshot()
    bounds = zip(histogram.bounds, cumulative[:-1], strict=True)
    buckets = [(f'{{le="{number(bound)}"}}', count) for bound, count in bounds]
    lines.append("# HELP edge_infer_inference_seconds Time the interpreter took per frame (invoke only).")
    lines.append("# TYPE edge_infer_inference_seconds histogram")
    lines.extend(f"edge_infer_inference_seconds_bucket{labels} {count}" for labels, count in buckets)
    lines.append(f'edge_infer_inference_seconds_bucket{{le="+Inf"}} {cumulative[-1]}')
    lines.append(f"edge_infer_inference_seconds_sum {number(total)}")
    lines.append(f"edge_infer_inference_seconds_count {cumulative[-1]}")
    metric("edge_infer_fps", "gauge", "Frames classified per second, over the last 300 frames.",
           by_camera(lambda counts: float(round(counts.fps, 2))))
    metric("edge_infer_uptime_seconds", "gauge", "Seconds since the run started.",
           [("", float(round(status.frames.uptime_s, 1)))])
    if status.board.cpu_temp_c is not None:
        metric("edge_infer_cpu_temperature_celsius", "gauge", "SoC temperature.",
               [("", float(round(status.board.cpu_temp_c, 1)))])
    if status.board.throttled is not None:
        metric("edge_infer_throttled", "gauge", "Raspberry Pi firmware throttling flags (1: set).",
               [(f'{{flag="{label_value(flag)}"}}', int(bool(on))) for flag, on in status.board.throttled.items()])
    if status.board.throttle_events is not None:
        metric("edge_infer_throttle_events_total", "counter",
               "Times each throttling condition began since the service started.",
               [(f'{{condition="{label_value(name)}"}}', count)
                for name, count in status.board.throttle_events.items()])
    metric("edge_infer_source_up", "gauge", "1 while the source delivers frames, 0 while it reconnects.",
           [("", int(status.source is None or status.source.streaming))] if not status.cameras else
           [(f'{{camera="{label_value(camera.name)}"}}', int(camera.streaming)) for camera in status.cameras])
    if regions:
        where = {place: f'{{camera="{label_value(place[0])}",region="{label_value(place[1])}"}}' for place in regions}
        metric("edge_infer_region_results_total", "counter", "Results of each region (or whole frame) since the start.",
               [(where[place], counts.results) for place, counts in regions.items()])
        metric("edge_infer_region_top_score", "gauge", "The newest result's top score (0 with nothing above the "
               "threshold).", [(where[place], counts.top_score) for place, counts in regions.items()])
    if mqtt_connected is not None:
        metric("edge_infer_mqtt_connected", "gauge", "1 while connected to the MQTT broker.",
               [("", int(mqtt_connected))])
    metric("edge_infer_stream_viewers", "gauge", "Clients watching /stream.mjpg.", [("", viewers)])
    return "\n".join(lines) + "\n"

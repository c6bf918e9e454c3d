"""Prometheus metrics for the live view's /metrics, in the text format, written by hand."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ... import __version__

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


def render_metrics(stats: Mapping[str, Any], histogram: Histogram, model: str, backend: str,
                   mqtt_connected: bool | None, viewers: int,
                   regions: Mapping[tuple[str, str], RegionCounts] | None = None) -> str:
    """The Prometheus text exposition format (version 0.0.4), written by hand: no dependency at run time.

    A `cameras:` run labels the per-camera series with `camera` (frames, dropped frames, fps, the source
    being up) and adds per-region series labelled `camera` and `region` (results and the top score)."""
    lines: list[str] = []
    cameras = stats.get("cameras")
    per_camera = cameras if isinstance(cameras, Mapping) else None

    def by_camera(key: str, cast: Callable[[Any], float]) -> list[tuple[str, float]]:
        if per_camera is None:
            return [("", cast(stats.get(key, 0)))]
        return [(f'{{camera="{label_value(name)}"}}', cast(camera.get(key, 0))) for name, camera in per_camera.items()]


    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {number(value)}" for labels, value in samples)

    metric("edge_infer_info", "gauge", "The running edge-infer: model, backend and version (always 1).",
           [(f'{{model="{label_value(model)}",backend="{label_value(backend)}",'
             f'version="{label_value(__version__)}"}}', 1)])
    metric("edge_infer_frames_total", "counter", "Frames classified since the start.", by_camera("frames", int))
    metric("edge_infer_dropped_frames_total", "counter",
           "Frames a live source delivered that inference had no time for (newest-frame mode).",
           by_camera("dropped_frames", int))
    metric("edge_infer_output_errors_total", "counter", "Results an output failed to take.",
           [("", int(stats.get("output_errors", 0)))])
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
           by_camera("fps", float))
    metric("edge_infer_uptime_seconds", "gauge", "Seconds since the run started.",
           [("", float(stats.get("uptime_s", 0.0)))])
    if "cpu_temp_c" in stats:
        metric("edge_infer_cpu_temperature_celsius", "gauge", "SoC temperature.", [("", float(stats["cpu_temp_c"]))])
    throttled = stats.get("throttled")
    if isinstance(throttled, Mapping):
        metric("edge_infer_throttled", "gauge", "Raspberry Pi firmware throttling flags (1: set).",
               [(f'{{flag="{label_value(flag)}"}}', int(bool(on))) for flag, on in throttled.items()])
    def up(where: Mapping[str, Any]) -> int:
        source = where.get("source")
        return int(source.get("state", "streaming") == "streaming" if isinstance(source, Mapping) else True)

    metric("edge_infer_source_up", "gauge", "1 while the source delivers frames, 0 while it reconnects.",
           [("", up(stats))] if per_camera is None else
           [(f'{{camera="{label_value(name)}"}}', up(camera)) for name, camera in per_camera.items()])
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

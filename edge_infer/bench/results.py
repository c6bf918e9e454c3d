"""What the bench measures, as typed values: one worker's measurement (or failure), and the whole report.

Workers run in their own processes and send their results as JSON; `from_json_dict` reads them
back, and `to_json_dict` is the `--json` report's format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Latency:
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    fps: float  # 1000 / mean


def latency(samples_ms: list[float] | np.ndarray) -> Latency:
    samples = np.asarray(samples_ms, dtype=np.float64)
    mean = float(samples.mean())
    p50, p90, p99 = (float(v) for v in np.percentile(samples, [50, 90, 99]))
    return Latency(round(mean, 4), round(float(samples.std()), 4), round(p50, 4), round(p90, 4), round(p99, 4),
                   round(1000.0 / mean, 2) if mean > 0 else 0.0)


@dataclass(frozen=True)
class PipelineLatency(Latency):
    """Per-frame latency through the whole pipeline; `fps` is measured from frame intervals, not 1000 / mean."""

    frames: int
    dropped: int


@dataclass(frozen=True)
class Measurement:
    """One (model, threads, delegate) setting, measured by a worker."""

    model: str
    path: str
    threads: int
    delegate: str
    runtime: str
    input: str  # e.g. "224x224 uint8"
    invoke: Latency
    reference: Latency | None  # the bare LiteRT loop, when asked for
    reference_ratio: float | None  # bare p50 / ours: 1.0 means no overhead of ours in invoke
    pipeline: PipelineLatency
    pipeline_ratio: float | None  # invoke p50 / median frame interval: 1.0 means the pipeline adds nothing
    overhead_ms: float | None
    cpu_percent: float | None
    peak_rss_mb: float
    size_mb: float
    macs_m: float | None
    params_m: float | None
    # What the zoo (or the model's own packed facts) knows of the model.
    arch: str | None
    alpha: float | None
    resolution: int | None
    published_top1: float | None

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Measurement:
        values = {f.name: data[f.name] for f in fields(cls)}
        values["invoke"] = Latency(**data["invoke"])
        values["reference"] = Latency(**data["reference"]) if data["reference"] else None
        values["pipeline"] = PipelineLatency(**data["pipeline"])
        return cls(**values)


@dataclass(frozen=True)
class Failure:
    """A setting that could not be measured: the model does not load, or the worker died or hung."""

    model: str
    error: str

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


Result = Measurement | Failure


def result_from_json_dict(data: dict[str, Any]) -> Result:
    return Failure(data["model"], data["error"]) if "error" in data else Measurement.from_json_dict(data)


@dataclass(frozen=True)
class Conditions:
    """What the numbers depend on besides the model: the board, its clock and heat, the software."""

    board: str
    machine: str
    cores: int
    governor: str | None
    python: str
    numpy: str
    opencv: str
    temperature_c: float | None
    throttled: dict[str, bool] | None
    runtime: str | None
    temperature_after_c: float | None
    throttled_after: dict[str, bool] | None


@dataclass(frozen=True)
class Settings:
    warmup: int
    runs: int
    frames: int
    seconds: float
    source: dict[str, Any] | str  # the source mapping, or "synthetic 640x480"


@dataclass(frozen=True)
class Report:
    conditions: Conditions
    settings: Settings
    results: list[Result]

    def to_json_dict(self) -> dict[str, Any]:
        return {"conditions": asdict(self.conditions), "settings": asdict(self.settings),
                "results": [r.to_json_dict() for r in self.results]}

"""What a bench run measures: the models, thread counts and delegates, as one task per worker process."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..models.files import model_dirs, resolve_model
from ..models.runtime import edgetpu_library_present, usable_cores


@dataclass(frozen=True)
class BenchPlan:
    models: tuple[str, ...]  # paths
    threads: tuple[int, ...]
    warmup: int
    runs: int
    frames: int  # at least this many frames are measured through the pipeline
    seconds: float  # each measurement goes on at least this long
    reference: bool
    source: dict[str, Any] | None  # a source mapping, or None for the synthetic 640x480 frame


@dataclass(frozen=True)
class Task:
    """One worker's job: one (model, threads, delegate) setting, and how long to measure it."""

    model: str  # a path
    threads: int
    delegate: Literal["cpu", "edgetpu"]
    reference: bool
    warmup: int
    runs: int
    frames: int
    seconds: float
    source: dict[str, Any] | None

    @property
    def name(self) -> str:
        return Path(self.model).name.removesuffix(".tflite")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Task:
        return cls(**json.loads(text))


def default_threads() -> tuple[int, ...]:
    return tuple(sorted({1, usable_cores()}))


def find_models(arguments: list[str], models_dir: str | None) -> list[str]:
    """Names, paths or directories; none given: every MobileNet in the model directories."""
    if not arguments:
        arguments = [str(d) for d in model_dirs(models_dir) if d.is_dir()]
    found: list[str] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            found += sorted(str(p) for p in path.glob("*mobilenet*.tflite"))
        else:
            found.append(str(resolve_model(argument, models_dir)))
    if not found:
        raise ConfigError("no models to benchmark: name them, or put mobilenet*.tflite files in "
                          f"{', '.join(map(str, model_dirs(models_dir)))} (edge-infer models pull NAME)")
    return list(dict.fromkeys(found))


def tasks(plan: BenchPlan) -> list[Task]:
    """Every (model, threads, delegate) to measure; Edge TPU models only where the Edge TPU library is."""
    has_edgetpu = edgetpu_library_present()
    out = []
    for model in plan.models:
        compiled = model.endswith("_edgetpu.tflite")
        if compiled and not has_edgetpu:
            continue
        for threads in (plan.threads if not compiled else plan.threads[:1]):
            out.append(Task(model, threads, "edgetpu" if compiled else "cpu", plan.reference and not compiled,
                            plan.warmup, plan.runs, plan.frames, plan.seconds, plan.source))
    return out

"""What a bench run measures: the models, thread counts and delegates, as one task per worker process.

Edge TPU builds (*_edgetpu.tflite) are measured on the Coral where libedgetpu is installed, HEFs (*.hef) on the Hailo
where HailoRT's Python API is; each once, at the first thread count (the accelerator does the work).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..models.files import model_dirs, model_stem, resolve_model
from ..models.runtime import edgetpu_library_present, usable_cores
from ..pipeline.hailo import hailo_platform_present


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
    delegate: Literal["cpu", "edgetpu", "hailo"]
    reference: bool
    warmup: int
    runs: int
    frames: int
    seconds: float
    source: dict[str, Any] | None

    @property
    def name(self) -> str:
        return model_stem(Path(self.model).name)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Task:
        return cls(**json.loads(text))


def default_threads() -> tuple[int, ...]:
    return tuple(sorted({1, usable_cores()}))


def find_models(arguments: list[str], models_dir: str | None) -> list[str]:
    """Names, paths or directories; none given: every MobileNet (.tflite, and .hef for the Hailo) in the model
    directories."""
    if not arguments:
        arguments = [str(d) for d in model_dirs(models_dir) if d.is_dir()]
    found: list[str] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            found += sorted(str(p) for pattern in ("*mobilenet*.tflite", "*mobilenet*.hef") for p in path.glob(pattern))
        else:
            found.append(str(resolve_model(argument, models_dir)))
    if not found:
        raise ConfigError("no models to benchmark: name them, or put mobilenet*.tflite (or .hef) files in "
                          f"{', '.join(map(str, model_dirs(models_dir)))} (edge-infer models pull NAME)")
    return list(dict.fromkeys(found))


def delegate_of(model: str) -> Literal["cpu", "edgetpu", "hailo"]:
    if model.endswith(".hef"):
        return "hailo"
    return "edgetpu" if model.endswith("_edgetpu.tflite") else "cpu"


def tasks(plan: BenchPlan) -> list[Task]:
    """Every (model, threads, delegate) to measure; accelerator models only where their library is."""
    present = {"cpu": True, "edgetpu": edgetpu_library_present(), "hailo": hailo_platform_present()}
    out = []
    for model in plan.models:
        delegate = delegate_of(model)
        if not present[delegate]:
            continue
        compiled = delegate != "cpu"
        for threads in (plan.threads if not compiled else plan.threads[:1]):
            out.append(Task(model, threads, delegate, plan.reference and not compiled,
                            plan.warmup, plan.runs, plan.frames, plan.seconds, plan.source))
    return out

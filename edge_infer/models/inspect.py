"""`edge-infer models inspect`: what a model file holds, and how that compares with what its authors published."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .check import check_model
from .files import read_model
from .graph import interpreter_cost
from .metadata import metadata_labels
from .runtime import load_runtime, open_interpreter
from .tensors import tensor_spec
from .zoo import build_manifest, find_entry, redownload_hint


@dataclass(frozen=True)
class TensorReport:
    name: str
    shape: list[int]
    dtype: str
    scale: float
    zero_point: int


@dataclass(frozen=True)
class Published:
    top1: float | None
    macs_m: float
    params_m: float


@dataclass(frozen=True)
class ModelReport:
    model: str
    path: str
    size_mb: float
    inputs: list[TensorReport]
    outputs: list[TensorReport]
    ops: dict[str, int]
    needs_edgetpu: bool
    labels: str  # where the labels come from, for a person to read
    macs_m: float | None  # None: the graph is one Edge TPU custom op, not countable
    params_m: float | None
    published: Published | None  # None: not a zoo model

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def tensor_report(details: dict[str, Any]) -> TensorReport:
    spec = tensor_spec(details)
    return TensorReport(details["name"], list(spec.shape), spec.dtype.__name__, spec.scale, spec.zero_point)


def inspect_model(path: Path) -> ModelReport:
    model = read_model(path)
    runtime = load_runtime()
    check_model(model, runtime.name)
    interpreter = open_interpreter(runtime, model)
    try:  # a damaged file can parse and still hold tensor names that are not UTF-8, or shapes that are no shapes
        inputs = [tensor_report(d) for d in interpreter.get_input_details()]
        outputs = [tensor_report(d) for d in interpreter.get_output_details()]
        cost = interpreter_cost(interpreter)
    except (UnicodeDecodeError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise ModelError(f"'{path}' is damaged: its graph cannot be read ({type(exc).__name__}: {exc}); "
                         f"{redownload_hint(model.name)}") from exc
    labels = metadata_labels(model)
    entry = find_entry(build_manifest(), model.name)
    return ModelReport(
        model=model.name, path=str(path), size_mb=round(len(model.content) / 1e6, 3),
        inputs=inputs, outputs=outputs, ops=cost.ops, needs_edgetpu=model.needs_edgetpu,
        labels=f"model metadata ({len(labels)} labels)" if labels else "none in the model (use --labels)",
        macs_m=cost.macs_m, params_m=cost.params_m,
        published=Published(entry.top1, entry.macs_m, entry.params_m) if entry else None)

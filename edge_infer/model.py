"""Model files: find them, read them, and check that they are image classifiers we can run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .labels import align_labels, metadata_labels, parse_labels

DEFAULT_MODEL_DIRS = ("~/.local/share/edge-infer/models", "/var/lib/edge-infer/models")
EDGETPU_OP = b"edgetpu-custom-op"
SUPPORTED_DTYPES = (np.uint8, np.int8, np.float32)


def model_dirs(configured: str | None) -> list[Path]:
    """Where a bare model name is looked up: the config's models_dir, $EDGE_INFER_MODELS, then defaults."""
    dirs = [configured, os.environ.get("EDGE_INFER_MODELS"), *DEFAULT_MODEL_DIRS]
    return [Path(d).expanduser() for d in dirs if d]


def resolve_model(name: str, models_dir: str | None) -> Path:
    """A path as given, or a name (with or without .tflite) found in the model directories."""
    given = Path(name).expanduser()
    if given.is_file():
        return given
    if given.is_absolute() or os.sep in name:
        raise ModelError(f"model file '{name}' does not exist")
    searched = model_dirs(models_dir)
    for directory in searched:
        for candidate in (directory / name, directory / f"{name}.tflite"):
            if candidate.is_file():
                return candidate
    raise ModelError(f"model '{name}' not found in {', '.join(map(str, searched))}: "
                     "give a path, or set model.models_dir / EDGE_INFER_MODELS")


@dataclass(frozen=True)
class ModelFile:
    path: Path
    content: bytes

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".tflite")

    @property
    def needs_edgetpu(self) -> bool:
        """Compiled by edgetpu_compiler: the graph is one custom op only libedgetpu can run."""
        return EDGETPU_OP in self.content

    @property
    def cpu_twin(self) -> str:
        return self.name.replace("_edgetpu", "") + ".tflite"


def read_model(path: Path) -> ModelFile:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model '{path}': {exc.strerror}") from exc
    # Every TFLite flatbuffer carries the file identifier "TFL3" at byte offset 4.
    if content[4:8] != b"TFL3":
        raise ModelError(f"'{path}' is not a TFLite model (corrupt, truncated, or another format)")
    return ModelFile(path, content)


@dataclass(frozen=True)
class TensorSpec:
    index: int
    shape: tuple[int, ...]
    dtype: type
    scale: float  # real = scale * (q - zero_point); scale 0 means not quantized
    zero_point: int


def tensor_spec(details: dict[str, Any]) -> TensorSpec:
    scale, zero_point = details.get("quantization", (0.0, 0))
    return TensorSpec(int(details["index"]), tuple(int(d) for d in details["shape"]),
                      np.dtype(details["dtype"]).type, float(scale), int(zero_point))


def classifier_tensors(model: ModelFile, inputs: list[dict[str, Any]],
                       outputs: list[dict[str, Any]]) -> tuple[TensorSpec, TensorSpec]:
    """The (input, output) of an image classifier: [1, H, W, 3] in, [1, classes] out."""
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"'{model.path}' is not an image classifier: it has {len(inputs)} inputs and "
                         f"{len(outputs)} outputs, a classifier has one of each")
    image, scores = tensor_spec(inputs[0]), tensor_spec(outputs[0])
    if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] != 3 or image.dtype not in SUPPORTED_DTYPES:
        raise ModelError(f"'{model.path}' is not an image classifier: its input is {list(image.shape)} "
                         f"{image.dtype.__name__}, not [1, height, width, 3] uint8/int8/float32")
    if len(scores.shape) != 2 or scores.shape[0] != 1 or scores.shape[1] < 2 or scores.dtype not in SUPPORTED_DTYPES:
        raise ModelError(f"'{model.path}' is not an image classifier: its output is {list(scores.shape)}, "
                         "not [1, classes] (a feature extractor or a detector?)")
    return image, scores


def load_labels(model: ModelFile, labels_file: str | None, num_classes: int) -> tuple[tuple[str, ...], str]:
    """Labels for each output index and where they came from; a labels file beats the metadata."""
    if labels_file:
        try:
            labels, source = parse_labels(Path(labels_file).expanduser().read_text()), labels_file
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"cannot read labels file '{labels_file}': {exc}") from exc
    else:
        found = metadata_labels(model.content)
        if found is None:
            raise ModelError(f"'{model.path}' carries no labels in its metadata: set model.labels "
                             "(or --labels) to a labels file")
        labels, source = found, "model metadata"
    aligned = align_labels(labels, num_classes)
    if aligned is None:
        raise ModelError(f"{len(labels)} labels from {source} do not fit the {num_classes} outputs of '{model.path}'")
    return aligned, source

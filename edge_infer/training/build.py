"""Build MobileNet TFLite models on a workstation (`edge-infer models build`), with Keras and TensorFlow.

An optional extra (`pip install 'edge-infer[build]'`): TensorFlow is imported only inside these
functions, never by the runtime. The architecture comes from keras.applications; calibration
images go through the runtime's own Preprocessor, so full-integer quantization is calibrated on
exactly what inference will see.

With `extractor`, the model ends at the pooled features instead of the classes (Keras's `include_top=False,
pooling="avg"`, or a fine-tuned model cut at its last global average pooling): an embedding extractor of any
alpha x resolution, which `edge-infer teach train --base FILE` teaches classes on.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError, RuntimeUnavailableError
from ..models.files import replacing
from ..models.graph import GraphCost, interpreter_cost
from ..models.metadata import align_labels, parse_labels, with_metadata
from ..models.runtime import load_runtime
from ..models.tensors import MOBILENET_NORMALIZATION, TensorSpec
from ..pipeline.preprocess import Preprocessor
from ..sources.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

# What keras.applications offers (and has ImageNet weights for).
SUPPORTED = {
    "mobilenet_v1": ((0.25, 0.5, 0.75, 1.0), (128, 160, 192, 224)),
    "mobilenet_v2": ((0.35, 0.5, 0.75, 1.0, 1.3, 1.4), (96, 128, 160, 192, 224)),
}
QUANTIZATIONS = ("int8", "uint8", "float16", "float32")
CALIBRATION_IMAGES = 200  # the converter's advice is a few hundred


@dataclass(frozen=True)
class BuildRequest:
    arch: str
    alpha: float
    resolution: int
    weights: str = "none"  # imagenet, none, or a Keras model file
    classes: int | None = None  # None: 1000, or what a weights file has
    quantize: str = "int8"  # full-integer, int8 in and out: XNNPACK's fastest path
    calibration: str | None = None
    labels: str | None = None
    output: str | None = None
    extractor: bool = False  # end at the pooled embedding [1, N], not at the classes

    def default_name(self) -> str:
        alpha = f"{self.alpha:g}" if self.alpha != 1.0 else "1.0"
        # Coral names its extractor <classifier>_embedding_extractor: the same here.
        return f"{self.arch}_{alpha}_{self.resolution}_{self.quantize}" \
               f"{'_embedding_extractor' if self.extractor else ''}.tflite"


@dataclass(frozen=True)
class BuildResult:
    path: Path
    cost: GraphCost
    size_bytes: int
    embedding: int | None = None  # an extractor's output size


def validate(request: BuildRequest) -> Path:
    """Check everything a build needs before the slow part; return the output path."""
    if request.extractor and (request.classes or request.labels):
        raise ConfigError(f"--extractor: an embedding extractor has no classes, so no "
                          f"{'--classes' if request.classes else '--labels'} (teach train gives it yours)")
    if request.arch not in SUPPORTED:
        raise ConfigError(f"--arch: {request.arch!r} is not one of {', '.join(SUPPORTED)}")
    alphas, resolutions = SUPPORTED[request.arch]
    if not Path(request.weights).is_file():
        if request.alpha not in alphas:
            raise ConfigError(f"--alpha: Keras's {request.arch} supports {', '.join(map(str, alphas))}, "
                              f"not {request.alpha:g}")
        if request.resolution not in resolutions:
            raise ConfigError(f"--resolution: Keras's {request.arch} supports {', '.join(map(str, resolutions))}, "
                              f"not {request.resolution}")
        if request.weights not in ("imagenet", "none"):
            raise ConfigError(f"--weights: '{request.weights}' is not imagenet, none, or an existing Keras model file")
    if request.quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize: {request.quantize!r} is not one of {', '.join(QUANTIZATIONS)}")
    if request.quantize in ("int8", "uint8"):
        if not request.calibration:
            raise ConfigError(f"--quantize {request.quantize} needs --calibration DIR: a few hundred images like "
                              "the ones the model will see")
        if not calibration_files(request.calibration):
            raise ConfigError(f"--calibration: no images in '{request.calibration}' "
                              f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    if request.labels and not Path(request.labels).is_file():
        raise ConfigError(f"--labels: '{request.labels}' does not exist")
    output = Path(request.output or request.default_name()).expanduser()
    directory = output.parent if str(output.parent) else Path(".")
    if not directory.is_dir() or not os.access(directory, os.W_OK):
        raise ConfigError(f"--output: cannot write into '{directory}' (missing or not writable)")
    return output


def calibration_files(directory: str) -> list[Path]:
    path = Path(directory)
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:CALIBRATION_IMAGES]


def import_tensorflow() -> tuple[Any, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines are not for users
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        raise RuntimeUnavailableError(f"building models needs TensorFlow ({exc}): pip install 'edge-infer[build]'") \
            from exc
    return tf, keras


def keras_model(request: BuildRequest) -> Any:
    """keras.applications' MobileNet, with ImageNet weights, random weights, or a user's model file."""
    _, keras = import_tensorflow()
    if Path(request.weights).is_file():
        try:
            model = keras.models.load_model(request.weights, compile=False)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"--weights: cannot load '{request.weights}' as a Keras model: {exc}") from exc
        return pooled_features(model, request.weights) if request.extractor else model
    weights = "imagenet" if request.weights == "imagenet" else None
    build = keras.applications.MobileNet if request.arch == "mobilenet_v1" else keras.applications.MobileNetV2
    if request.extractor:  # Keras's own extractor: the ImageNet weights without the top (the "no_top" files)
        return build(input_shape=(request.resolution, request.resolution, 3), alpha=request.alpha, weights=weights,
                     include_top=False, pooling="avg")
    classes = request.classes or 1000
    if weights and classes != 1000:
        raise ConfigError("--classes: ImageNet weights come with 1000 classes; fine-tune, then pass --weights FILE")
    return build(input_shape=(request.resolution, request.resolution, 3), alpha=request.alpha, weights=weights,
                 classes=classes)


def pooled_features(model: Any, source: str) -> Any:
    """A fine-tuned classifier cut at its last global average pooling: its own embedding, [1, N].

    Keras's V1 pools with keepdims ([1, 1, 1, N]) before its 1x1 convolution: the same pooling without keepdims
    is applied here instead, so the output is [1, N] as include_top=False gives it, from one MEAN (a Reshape of a
    batch of None would add SHAPE, STRIDED_SLICE and PACK to the graph)."""
    _, keras = import_tensorflow()
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if not pools:
        raise ConfigError(f"--extractor: '{source}' has no global average pooling layer to end at: not a MobileNet "
                          "classifier")
    features = keras.layers.GlobalAveragePooling2D(name="embedding")(pools[-1].input)
    return keras.Model(model.inputs, features)


def representative_data(files: list[Path], height: int, width: int) -> Iterator[list[np.ndarray]]:
    """Calibration batches, preprocessed exactly as the runtime does it for a float input."""
    preprocess = Preprocessor(TensorSpec(0, (1, height, width, 3), np.float32, 0.0, 0))
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        batch = np.empty((1, height, width, 3), np.float32)
        preprocess(image, batch[0])
        yield [batch]


def convert(model: Any, request: BuildRequest) -> bytes:
    tf, _ = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if request.quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif request.quantize in ("int8", "uint8"):
        _, height, width, _ = model.input_shape
        files = calibration_files(request.calibration or "")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: representative_data(files, height, width)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.uint8 if request.quantize == "uint8" else tf.int8
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    chatter = io.StringIO()  # Keras prints the exported signature to stdout; keep it for --log-level debug
    with contextlib.redirect_stdout(chatter):
        content = bytes(converter.convert())
    log.debug("converter: %s", chatter.getvalue())
    return content


def label_list(request: BuildRequest, classes: int) -> list[str]:
    if request.labels:
        aligned = align_labels(parse_labels(Path(request.labels).read_text()), classes)
        if aligned is None:
            raise ConfigError(f"--labels: '{request.labels}' does not fit the model's {classes} classes")
        return list(aligned)
    if request.weights == "imagenet":
        _, keras = import_tensorflow()
        index = json.loads(Path(keras.utils.get_file(
            "imagenet_class_index.json",
            "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json")).read_text())
        return [index[str(i)][1].replace("_", " ") for i in range(1000)]
    return [f"class {i}" for i in range(classes)]


def cost_of(content: bytes) -> GraphCost:
    return interpreter_cost(load_runtime().interpreter(model_content=content))


def build(request: BuildRequest) -> BuildResult:
    output = validate(request)
    model = keras_model(request)
    _, height, width, _ = model.input_shape
    outputs = int(model.output_shape[-1])  # classes, or an extractor's embedding size
    content = convert(model, request)
    # keras.applications.mobilenet.preprocess_input is x / 127.5 - 1: MobileNet's own normalization.
    mean, std = MOBILENET_NORMALIZATION
    info = {"arch": request.arch, "alpha": request.alpha, "resolution": int(height), "quantize": request.quantize,
            "weights": Path(request.weights).name, "mean": mean, "std": std}
    if request.extractor:
        # No labels to pack (an empty labels.txt): a run refuses it for want of labels; teach takes it as a base.
        info |= {"extractor": True, "embedding": outputs}
        content = with_metadata(content, [], info)
    else:
        content = with_metadata(content, label_list(request, outputs), {**info, "classes": outputs})
    with replacing(output) as temp:
        temp.write_bytes(content)
    return BuildResult(output, cost_of(content), len(content), outputs if request.extractor else None)


def compile_for_edgetpu(path: Path) -> Path:
    """Run edgetpu_compiler (Coral's, x86-64 Debian/Ubuntu) on a full-integer model; never pretend."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        raise RuntimeUnavailableError(f"edgetpu_compiler is not on PATH, so {path} was not compiled for the Edge TPU: "
                                      "install package edgetpu-compiler from Coral's apt repository (x86-64 only), "
                                      f"then run: edgetpu_compiler -o {path.parent} {path}")
    done = subprocess.run([compiler, "-s", "-o", str(path.parent), str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeUnavailableError(f"edgetpu_compiler failed on {path}: {done.stdout.strip()[-300:]}")
    return path.with_name(path.stem + "_edgetpu.tflite")

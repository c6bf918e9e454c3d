"""The classifier: one interpreter, created once per process; per frame only set-input, invoke, read-output."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import ModelError, RuntimeUnavailableError
from ..models.check import check_model
from ..models.files import ModelFile, read_model, resolve_model
from ..models.graph import GraphCost, interpreter_cost
from ..models.metadata import load_labels, packed_info
from ..models.runtime import Interpreter, Runtime, load_edgetpu_delegate, load_runtime, open_interpreter, usable_cores
from ..models.tensors import TensorSpec, classifier_tensors
from ..models.zoo import DEFAULT_MODEL
from .postprocess import dequantize

log = logging.getLogger(__name__)

CUSTOM_OP = re.compile(r"unresolved custom op: ([\w-]+)")
# libedgetpu must be built against the TensorFlow the runtime comes from (pycoral's README: "version-
# matching builds ... share the same TENSORFLOW_COMMIT"); Coral's apt libedgetpu1-std 16.0 is built on
# TensorFlow 2.5 (google-coral/libedgetpu workspace.bzl at "Release Grouper").
LIBEDGETPU_MISMATCH_HINT = ("the libedgetpu installed is probably built for another TensorFlow than this runtime; "
                            "install a libedgetpu built for a recent TensorFlow (google-coral/libedgetpu from "
                            "source, or the feranick/libedgetpu releases)")


@dataclass(frozen=True)
class ModelConfig:
    path: str = field(default=DEFAULT_MODEL, metadata={"min_length": 1})  # a .tflite (.hef, .rpk) path, or a name
    models_dir: str | None = None
    labels: str | None = None  # labels file; default: the labels inside the model's metadata
    num_threads: int | None = field(default=None, metadata={"min": 1})  # None: every usable core
    # hailo: a .hef on a Hailo-8/8L (pipeline/hailo.py); imx500: an .rpk on the AI Camera's sensor (pipeline/imx500.py)
    delegate: Literal["cpu", "edgetpu", "hailo", "imx500"] = "cpu"
    edgetpu_device: str = field(default="", metadata={"pattern": r"((usb|pci)(:\d+)?)?",
                                                      "pattern_help": "empty, usb, usb:N, pci or pci:N"})
    # CPU model to run when the accelerator (Edge TPU, Hailo) cannot be used
    fallback_model: str | None = field(default=None, metadata={"min_length": 1})
    # The interpreter in a worker process, so a native library that aborts takes only the worker down:
    # auto: with an accelerator (libedgetpu aborts on a USB error), true: the CPU too, false: never. Never the AI
    # Camera's network: it runs on the sensor, and its scores come with the frames.
    isolate: bool | Literal["auto"] = "auto"


@dataclass(frozen=True)
class LoadedModel:
    """What the rest of the program needs to know about the model that is running."""

    name: str
    path: str
    backend: str  # "cpu", "edgetpu", "hailo" or "imx500"
    runtime: str
    threads: int
    input: TensorSpec
    output: TensorSpec
    labels: tuple[str, ...]
    labels_source: str
    packed: dict[str, Any]  # build facts packed in the model (normalization, alpha, resolution), or {}


class Classifier:
    on_sensor = False  # True: the camera runs the network, and each frame brings its scores (pipeline/imx500.py)

    def __init__(self, interpreter: Interpreter, info: LoadedModel) -> None:
        self.info = info
        self._interpreter = interpreter
        # interpreter.tensor() returns a function giving a view into the interpreter's own buffer;
        # views must be dropped before invoke(), so we keep the functions, not the views.
        self._input_view = interpreter.tensor(info.input.index)
        self._output_view = interpreter.tensor(info.output.index)

    def input_tensor(self) -> np.ndarray:
        """The (height, width, 3) input buffer to write a frame into; drop it before invoke()."""
        return self._input_view()[0]

    def invoke(self) -> None:
        try:
            self._interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            # LiteRT appends "Node number N (name) failed to invoke." to what the kernel reported
            # (the runtime's own report, as ai-edge-litert 2.3.0 words it: seen with the stand-in libedgetpu).
            reason = str(exc).split("Node number")[0].strip().rstrip(".") or str(exc)
            where = " on the Edge TPU" if self.info.backend == "edgetpu" else ""
            raise RuntimeUnavailableError(f"inference failed in {self.info.name}{where}: {reason}") from exc

    def cost(self) -> GraphCost:
        return interpreter_cost(self._interpreter)

    def read_scores(self, out: np.ndarray) -> np.ndarray:
        return dequantize(self._output_view()[0], self.info.output.scale, self.info.output.zero_point, out)

    def raw_scores(self) -> np.ndarray:
        """The output tensor as the model wrote it (quantized); drop it before invoke()."""
        return self._output_view()[0]

    def close(self) -> None:
        """Drop the interpreter now, and with it its delegates (the interpreter holds them; LiteRT's
        Interpreter.__del__ frees itself before them, and Delegate.__del__ calls the library's
        tflite_plugin_destroy_delegate), however long something else keeps this object. Using it after is an
        AttributeError. For a dead Edge TPU, before the Coral is tried again: libedgetpu hands a new delegate
        the driver still open for a device of the same type (google-coral/libedgetpu
        tflite/edgetpu_manager_direct.cc, OpenDeviceInternal and TryMatchDriverWrapper), i.e. the dead one."""
        del self._input_view, self._output_view, self._interpreter  # the views' functions hold it too


def load_classifier(config: ModelConfig, runtime: Runtime | None = None) -> Classifier:
    """Find, check and load exactly the configured model, on the Edge TPU or the Hailo if asked: an accelerator that
    cannot be used raises RuntimeUnavailableError (the fallback is ModelSelection's to choose)."""
    if config.delegate == "imx500":  # picamera2's IMX500: the network goes to the camera's sensor
        from .imx500 import load_imx500_classifier

        return load_imx500_classifier(config)
    if should_isolate(config):
        from .worker import IsolatedClassifier  # the worker process loads this module again, with isolate false

        return IsolatedClassifier(config)
    if config.delegate == "hailo":
        from .hailo import load_hailo_classifier  # HailoRT, not LiteRT: nothing of the TFLite path applies

        return load_hailo_classifier(config)
    runtime = runtime or load_runtime()
    model = read_model(resolve_model(config.path, config.models_dir))
    threads = config.num_threads or usable_cores()
    if config.delegate == "edgetpu":
        delegate = load_edgetpu_delegate(runtime, config.edgetpu_device)
        return classifier_on(runtime, model, config, threads, [delegate])
    if model.needs_edgetpu:
        raise ModelError(f"'{model.path}' is compiled for the Coral Edge TPU and cannot run on the CPU: set "
                         f"model.delegate: edgetpu (needs libedgetpu1-std and a Coral), or use the CPU model "
                         f"{model.cpu_twin}")
    return classifier_on(runtime, model, config, threads, [])


def should_isolate(config: ModelConfig) -> bool:
    if config.delegate == "imx500":  # nothing runs here to isolate
        return False
    return config.isolate is True or (config.isolate == "auto" and config.delegate != "cpu")


def classifier_on(runtime: Runtime, model: ModelFile, config: ModelConfig, threads: int,
                  delegates: list[Any]) -> Classifier:
    if delegates and not model.needs_edgetpu:
        log.warning("model %s is not compiled for the Edge TPU: it will run on the CPU", model.name)
    if packed_info(model).get("extractor"):  # `models build --extractor`: an embedding, no classes
        raise ModelError(f"'{model.path}' is an embedding extractor, not a classifier: teach it your classes with "
                         f"edge-infer teach train DATASET --base {model.path} --output FILE.tflite")
    check_model(model, runtime.name)  # before this process trusts the file to native code
    interpreter = create_interpreter(runtime, model, threads, delegates)
    # Only a model compiled by edgetpu_compiler runs on the Edge TPU; the delegate leaves any other on the CPU.
    backend = "edgetpu" if delegates and model.needs_edgetpu else "cpu"
    image, scores = classifier_tensors(model, interpreter.get_input_details(), interpreter.get_output_details())
    labels, labels_source = load_labels(model, config.labels, scores.shape[1])
    info = LoadedModel(model.name, str(model.path), backend, runtime.name, threads, image, scores, labels,
                       labels_source, packed_info(model))
    log.info("model %s: input %dx%d %s, %d classes (labels from %s); %s, %d threads, backend %s",
             info.name, image.width, image.height, image.dtype.__name__, scores.shape[1], labels_source,
             runtime.name, threads, backend if backend == "edgetpu" else "cpu (XNNPACK)")
    return Classifier(interpreter, info)


def create_interpreter(runtime: Runtime, model: ModelFile, threads: int, delegates: list[Any]) -> Interpreter:
    """An interpreter with tensors allocated. With a delegate, any failure to prepare is the accelerator's.

    libedgetpu's delegate prepares its custom op at allocate_tensors; a libedgetpu built for another
    TensorFlow than the runtime's fails there ("Unsupported data type in custom op handler", "Node
    number N (EdgeTpuDelegateForCustomOp) failed to prepare": google-coral/libedgetpu
    tflite/custom_op.cc, and the threads google-coral/edgetpu#259 and #435), and a delegate whose
    Prepare fails makes the runtime restore the CPU plan and raise RuntimeError.
    """
    try:
        if delegates:
            interpreter = runtime.interpreter(model_content=model.content, num_threads=threads,
                                              experimental_delegates=delegates)
        else:
            interpreter = open_interpreter(runtime, model, num_threads=threads)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if delegates:
            raise RuntimeUnavailableError(f"the Edge TPU delegate could not prepare '{model.path}' ({reason}): "
                                          f"{LIBEDGETPU_MISMATCH_HINT}") from exc
        op = CUSTOM_OP.search(str(exc))
        if op:
            raise ModelError(f"'{model.path}' uses the custom op '{op.group(1)}', which this runtime does not "
                             "provide") from exc
        raise ModelError(f"cannot prepare '{model.path}': {reason}") from exc
    return interpreter

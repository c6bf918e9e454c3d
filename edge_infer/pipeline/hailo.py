"""The Hailo backend: a HEF on a Hailo-8 or Hailo-8L (Raspberry Pi AI Kit, AI HAT+) through HailoRT's Python API.

HailoRT is used as picamera2 uses it (raspberrypi/picamera2 at 3e6dff0, picamera2/devices/hailo/hailo.py, class
Hailo), each call as hailo-ai/hailort v4.23.0 defines it (hailort/libhailort/bindings/python/platform/hailo_platform/
pyhailort/pyhailort.py): one VDevice per process with the round-robin scheduler, shared by every model in it
(Hailo.__init__ and Hailo.TARGET_REF_COUNT); VDevice.create_infer_model(hef), set_batch_size(1), each stream's format
type (Hailo._set_input_output), InferModel.configure(); one Bindings made once, whose buffers are ours
(Hailo._create_bindings); per frame ConfiguredInferModel.run([bindings], timeout), the synchronous form of the
run_async Hailo.run waits on; close() drops the configured model and releases the VDevice with its last user
(Hailo.close).

The input is what the Hailo Model Zoo's MobileNets take: 224x224x3 uint8 RGB pixels as they are, the normalization
being inside the network (hailo_model_zoo cfg/base/mobilenet.yaml, normalize_in_net); edge-infer's preprocessing
writes straight into the bound input buffer. The output is asked for in the HEF's own format type (uint8 for these),
and dequantized here with its quant_info, real = (q - qp_zp) * qp_scale (HailoRT's include/hailo/quantization.hpp,
dequantize_output). Probabilities or logits: a HEF does not say, so its quantization decides, once: an output whose
every representable value lies in [0, 1] can only be probabilities (a softmax inside the network); one that can
hold anything outside [0, 1] is logits, and gets a softmax here. A float32 output is decided per frame (all
scores >= 0 and summing to 1: probabilities). A HEF carries no labels: model.labels, else the 1001 ImageNet labels
that ship with edge-infer, lined up with 1000 or 1001 outputs as any model's.

Errors say what to do in one line: an accelerator that cannot be used (no HailoRT, no device, a device another
process holds, a driver and a library of different versions, a device that fails mid-run) is a
RuntimeUnavailableError (the fallback model's cue); a HEF HailoRT cannot read or that is compiled for another
chip is a ModelError.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import re
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, RuntimeUnavailableError
from ..models.files import ModelFile, read_hef, resolve_model
from ..models.graph import GraphCost
from ..models.metadata import align_labels, load_labels, parse_labels
from ..models.tensors import TensorSpec
from ..models.zoo import build_manifest, find_entry, redownload_hint
from .classifier import Classifier, LoadedModel, ModelConfig
from .postprocess import dequantize

log = logging.getLogger(__name__)

INVOKE_TIMEOUT_MS = 10_000  # picamera2 waits as long for a model to take a frame (Hailo.run_async)
DRIVER_VERSION_FILE = "/sys/module/hailo_pci/version"  # MODULE_VERSION(HAILO_DRV_VER): hailort-drivers pcie.c
IMAGENET_LABELS = "imagenet_labels.txt"  # package data of edge_infer.models: 1001 labels, background first
INSTALL_HINT = ("install HailoRT (on Raspberry Pi OS: sudo apt install hailo-all, which brings the driver, the "
                "library and python3-hailort; then reboot) and give the venv the system's packages "
                "(python3 -m venv --system-site-packages, as deploy.sh does)")
DEVICE_HINT = ("check that the AI Kit / AI HAT+ is seated, that PCIe is on (dtparam=pciex1 in config.txt) and that "
               "the driver is loaded (lsmod | grep hailo_pci)")
STATUS_IN_MESSAGE = re.compile(r"\((HAILO_[A-Z0-9_]+)\)")
# pyhailort.py, ExceptionWrapper.create_exception_from_status: statuses with an exception class of their own; any
# other status comes as HailoRTException("libhailort failed with error: N (HAILO_...)").
STATUS_OF_CLASS = {
    "HailoRTTimeout": "HAILO_TIMEOUT", "HailoRTStreamAborted": "HAILO_STREAM_ABORT",
    "HailoRTInvalidOperationException": "HAILO_INVALID_OPERATION",
    "HailoRTInvalidArgumentException": "HAILO_INVALID_ARGUMENT", "HailoRTNotFoundException": "HAILO_NOT_FOUND",
    "HailoRTInvalidHEFException": "HAILO_INVALID_HEF",
    "HailoRTHEFNotCompatibleWithDevice": "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE",
    "HailoRTDriverOperationFailedException": "HAILO_DRIVER_OPERATION_FAILED",
    "HailoCommunicationClosedException": "HAILO_COMMUNICATION_CLOSED",
}
HEF_UNREADABLE = {"HAILO_INVALID_HEF", "HAILO_HEF_NOT_SUPPORTED", "HAILO_HEF_FILE_CORRUPTED"}


def status_of(exc: BaseException) -> str:
    """The HailoRT status an exception stands for (HAILO_...), or its class name."""
    found = STATUS_IN_MESSAGE.search(str(exc))
    return found.group(1) if found else STATUS_OF_CLASS.get(type(exc).__name__, type(exc).__name__)


def said(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def import_platform() -> Any:
    """HailoRT's Python package; it checks at import that its _pyhailort matches the library (pyhailort.cpp,
    validate_versions_match) and raises when it does not."""
    try:
        return importlib.import_module("hailo_platform")
    except Exception as exc:  # ImportError, and the package's own checks (MissingPyHRTLib, a version mismatch)
        raise RuntimeUnavailableError(f"HailoRT's Python API (hailo_platform) cannot be imported ({said(exc)}): "
                                      f"{INSTALL_HINT}") from exc


def hailo_platform_present() -> bool:
    """Whether HailoRT's Python package is installed (without importing it)."""
    return importlib.util.find_spec("hailo_platform") is not None


def driver_version(path: str = DRIVER_VERSION_FILE) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


class SharedDevice:
    """The process's one VDevice, shared by every Hailo model in it (picamera2's Hailo.TARGET and TARGET_REF_COUNT):
    a second VDevice would find the device marked as used by the first (HAILO_DEVICE_IN_USE), and fail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vdevice: Any = None
        self._users = 0

    def acquire(self, platform: Any) -> Any:
        with self._lock:
            if self._vdevice is None:
                params = platform.VDevice.create_params()
                params.scheduling_algorithm = platform.HailoSchedulingAlgorithm.ROUND_ROBIN
                try:
                    self._vdevice = platform.VDevice(params)
                except platform.HailoRTException as exc:
                    raise device_error(platform, exc) from exc
            self._users += 1
            return self._vdevice

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._vdevice is not None:
                vdevice, self._vdevice = self._vdevice, None
                vdevice.release()  # the device is free for a new VDevice (a retry, another process) at once


DEVICE = SharedDevice()


def device_error(platform: Any, exc: BaseException) -> RuntimeUnavailableError:
    """Why the VDevice could not be made, in one line with what to do."""
    status = status_of(exc)
    if status == "HAILO_OUT_OF_PHYSICAL_DEVICES":  # no device, or none free (vdevice.cpp, create_devices)
        try:
            found = list(platform.Device.scan())
        except Exception:  # only to word the message
            found = []
        if not found:
            return RuntimeUnavailableError(f"no Hailo device found (HailoRT: {status}; /dev/hailo0 is missing): "
                                           f"{DEVICE_HINT}")
        return RuntimeUnavailableError(f"the Hailo ({', '.join(found)}) is in use by another process (HailoRT: "
                                       f"{status}): stop it (another edge-infer, a hailo-apps or rpicam-apps "
                                       "pipeline), or run both through HailoRT's multi-process service")
    if status == "HAILO_INVALID_DRIVER_VERSION":  # hailort_driver.cpp, validate_driver_version
        driver = driver_version()
        return RuntimeUnavailableError(
            f"the Hailo driver ({driver or 'see ' + DRIVER_VERSION_FILE}) and the HailoRT library "
            f"({getattr(platform, '__version__', '?')}) are different versions (HailoRT: {status}): install the "
            "same version of both (sudo apt install hailo-all brings matching ones; a driver built by hand "
            "from hailort-drivers must be the library's release), then reboot")
    return RuntimeUnavailableError(f"the Hailo cannot be opened ({said(exc)}): {DEVICE_HINT}")


def device_architecture(vdevice: Any) -> str | None:
    """The chip: HAILO8 or HAILO8L (pyhailort.py: VDevice.get_physical_devices, Control.identify, BoardInformation
    .device_architecture, as `hailortcli fw-control identify` prints it and picamera2's hailo_architecture reads)."""
    try:
        return str(vdevice.get_physical_devices()[0].control.identify().device_architecture)
    except Exception:  # only to word messages and logs
        return None


def hef_labels(model: ModelFile, labels_file: str | None, classes: int) -> tuple[tuple[str, ...], str]:
    if labels_file:
        return load_labels(model, labels_file, classes)
    text = resources.files("edge_infer.models").joinpath(IMAGENET_LABELS).read_text()
    aligned = align_labels(parse_labels(text), classes)
    if aligned is None:
        raise ModelError(f"'{model.path}' has {classes} outputs and a HEF carries no labels: set model.labels (or "
                         "--labels) to its labels file")
    return aligned, "edge-infer's ImageNet labels (a HEF carries none)"


def gives_probabilities(dtype: type, scale: float, zero_point: float) -> bool | None:
    """Whether a quantized output can only hold probabilities (every representable value in [0, 1]); None for a
    float output, whose values decide per frame."""
    if np.dtype(dtype).kind == "f":
        return None
    info = np.iinfo(dtype)
    low, high = (info.min - zero_point) * scale, (info.max - zero_point) * scale
    return low >= -1e-6 and high <= 1.0 + scale + 1e-6


class HailoClassifier(Classifier):
    """A Classifier on the Hailo: the same methods, HailoRT's objects instead of an interpreter."""

    def __init__(self, info: LoadedModel, handles: tuple[Any, ...], configured: Any, bindings: Any,
                 pixels: np.ndarray, raw: np.ndarray, quant: tuple[float, float], probabilities: bool | None,
                 errors: type[BaseException]) -> None:
        self.info = info
        self._handles = handles  # the HEF and infer model: kept alive while the buffers are bound
        self._configured: Any = configured  # None once closed
        self._run = functools.partial(configured.run, [bindings], INVOKE_TIMEOUT_MS)  # one frame: built once
        self._pixels = pixels  # the bound input buffer: (height, width, 3) uint8 RGB
        self._raw = raw.reshape(-1)  # the bound output buffer, in the HEF's output format
        self._quant = quant  # (qp_scale, qp_zp); (0, 0) for a float output, which dequantize copies as it is
        self._probabilities = probabilities
        self._errors = errors
        self._scores = np.zeros(info.output.shape[1], np.float32)

    def input_tensor(self) -> np.ndarray:
        return self._pixels

    def invoke(self) -> None:
        try:
            self._run()
        except self._errors as exc:
            raise RuntimeUnavailableError(f"inference failed in {self.info.name} on the Hailo: {said(exc)} "
                                          f"(HailoRT: {status_of(exc)})") from exc
        scores = dequantize(self._raw, *self._quant, self._scores)
        probabilities = self._probabilities
        if probabilities is None:  # a float output: probabilities when they look like ones
            probabilities = bool(scores.min() >= 0.0 and abs(float(scores.sum()) - 1.0) < 0.01)
        if not probabilities:  # logits: softmax, shifted by the largest for exp's sake
            scores -= scores.max()
            np.exp(scores, out=scores)
            scores /= scores.sum()

    def read_scores(self, out: np.ndarray) -> np.ndarray:
        out[...] = self._scores
        return out

    def raw_scores(self) -> np.ndarray:
        """The scores as probabilities (float32), dequantized and softmaxed here: what a worker process hands over,
        so the run's side (info.output: float32, not quantized) only copies them."""
        return self._scores

    def cost(self) -> GraphCost:
        return GraphCost({"HEF": 1}, None, None)  # the network runs on the Hailo: nothing here to count

    def close(self) -> None:
        """Drop the configured model and, with its last user, release the VDevice (picamera2's Hailo.close), so a
        new VDevice (the Hailo tried again after a failover) finds the device free."""
        configured, self._configured = self._configured, None
        if configured is None:  # closed already
            return
        self._handles = ()
        try:
            configured.shutdown()
        except Exception as exc:  # a dead device may refuse; the VDevice goes anyway
            log.debug("the Hailo model did not shut down cleanly: %s", said(exc))
        DEVICE.release()


def load_hailo_classifier(config: ModelConfig) -> HailoClassifier:
    """Find and load the configured HEF on the Hailo; errors as the module's docstring says."""
    path = resolve_model(config.path, config.models_dir)
    model = read_hef(path)
    platform = import_platform()
    vdevice = DEVICE.acquire(platform)
    try:
        return open_on(platform, vdevice, model, config)
    except BaseException:
        DEVICE.release()
        raise


def open_on(platform: Any, vdevice: Any, model: ModelFile, config: ModelConfig) -> HailoClassifier:
    errors = platform.HailoRTException
    version = getattr(platform, "__version__", "")
    try:
        hef = platform.HEF(str(model.path))
        inputs, outputs = hef.get_input_vstream_infos(), hef.get_output_vstream_infos()
    except errors as exc:
        raise hef_error(model, version, exc) from exc
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"'{model.path}' is not an image classifier: it has {len(inputs)} inputs and {len(outputs)} "
                         "outputs, a classifier has one of each")
    image, scores = inputs[0], outputs[0]
    shape = tuple(int(d) for d in image.shape)
    uint8 = platform.FormatType.UINT8
    if len(shape) != 3 or shape[2] != 3 or image.format.type not in (uint8, platform.FormatType.AUTO):
        raise ModelError(f"'{model.path}' takes {list(shape)} {getattr(image.format.type, 'name', image.format.type)}, "
                         "not height x width x 3 uint8 RGB (an NV12 or RGBX build? use the model's RGB HEF)")
    classes = int(np.prod(scores.shape))
    if classes < 2 or sorted(int(d) for d in scores.shape)[:-1] != [1] * (len(scores.shape) - 1):
        raise ModelError(f"'{model.path}' is not an image classifier: its output is {list(scores.shape)}, "
                         "not one score per class (a detector?)")
    output_type = scores.format.type
    dtypes = {uint8: np.uint8, platform.FormatType.UINT16: np.uint16, platform.FormatType.FLOAT32: np.float32}
    dtype = dtypes.get(output_type, np.uint8)  # AUTO: "usually UINT8" (pyhailort.cpp, FormatType)
    labels, labels_source = hef_labels(model, config.labels, classes)
    arch = device_architecture(vdevice)
    try:
        infer_model = vdevice.create_infer_model(str(model.path))
        infer_model.set_batch_size(1)
        infer_model.input().set_format_type(image.format.type)
        for output in infer_model.outputs:
            output.set_format_type(output_type)
        configured = infer_model.configure()
        pixels = np.empty(shape, np.uint8)
        raw = np.empty(tuple(infer_model.output().shape), dtype)
        bindings = configured.create_bindings(output_buffers={infer_model.output_names[0]: raw})
        bindings.input().set_buffer(pixels)
    except errors as exc:
        status = status_of(exc)
        if status == "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE":
            raise chip_error(model, arch, exc) from exc
        if status in HEF_UNREADABLE:
            raise hef_error(model, version, exc) from exc
        raise RuntimeUnavailableError(f"the Hailo cannot run '{model.path}' ({said(exc)}; HailoRT: {status}): "
                                      f"{DEVICE_HINT}") from exc
    quantized = np.dtype(dtype).kind != "f"
    quant = (float(scores.quant_info.qp_scale), float(scores.quant_info.qp_zp)) if quantized else (0.0, 0.0)
    probabilities = gives_probabilities(dtype, *quant)
    info = LoadedModel(model.name, str(model.path), "hailo", f"hailort {version}".strip(), 1,
                       TensorSpec(0, (1, *shape), np.uint8, 1.0, 0),
                       TensorSpec(0, (1, classes), np.float32, 0.0, 0), labels, labels_source,
                       # the pixels go in as they are: the network normalizes them (normalize_in_net)
                       {"mean": 0.0, "std": 1.0})
    log.info("model %s: input %dx%d uint8 RGB, %d classes (labels from %s); HailoRT %s on %s, %s", info.name,
             shape[1], shape[0], classes, labels_source, version, arch or "the Hailo",
             {True: "probabilities from the network", False: "logits, softmax on the CPU",
              None: "float scores (softmax unless they are probabilities)"}[probabilities])
    return HailoClassifier(info, (hef, infer_model), configured, bindings, pixels, raw, quant, probabilities, errors)


def hef_error(model: ModelFile, version: str, exc: BaseException) -> ModelError:
    return ModelError(f"HailoRT {version} cannot read '{model.path}' ({said(exc)}; HailoRT: {status_of(exc)}): a HEF "
                      "from a Dataflow Compiler this HailoRT does not support (the Hailo Model Zoo v2.18 HEFs need "
                      f"HailoRT 4.23), or a damaged file; {redownload_hint(model.name)}")


def chip_error(model: ModelFile, arch: str | None, exc: BaseException) -> ModelError:
    """A HEF for the Hailo-8 on a Hailo-8L (a Hailo-8 runs a Hailo-8L HEF, more slowly): device_internal.cpp,
    DeviceBase::check_hef_is_compatible."""
    entry = find_entry(build_manifest(), model.name)
    compiled_for = f"the {entry.hailo.upper()}" if entry is not None and entry.hailo else "another chip"
    chip = arch.lower() if arch else None
    twin = None
    if entry is not None and entry.hailo and chip:
        twin = find_entry(build_manifest(), model.name.removesuffix(entry.hailo) + chip)
    use = (f"use {twin.name} (edge-infer models pull {twin.name})" if twin is not None
           else f"use a HEF compiled for the {arch or 'chip present'}")
    return ModelError(f"'{model.path}' is compiled for {compiled_for}, not for the {arch or 'Hailo'} here "
                      f"(HailoRT: {status_of(exc)}): {use}")

"""The LiteRT interpreter and its delegates: the one place that touches the inference runtime."""

from __future__ import annotations

import ctypes
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError, RuntimeUnavailableError
from .files import ModelFile

# Newest first: ai-edge-litert is the maintained successor of tflite-runtime; full TensorFlow works too.
RUNTIME_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
EDGETPU_LIBRARY = "libedgetpu.so.1"
EDGETPU_INSTALL_HINT = ("install the Edge TPU runtime (package libedgetpu1-std from Coral's apt repository) "
                        "and plug in the Coral device")


class Interpreter(Protocol):
    """The part of LiteRT's (and tflite_runtime's) `Interpreter` that edge-infer uses."""

    def allocate_tensors(self) -> None: ...

    def invoke(self) -> None: ...

    def tensor(self, index: int) -> Callable[[], np.ndarray]: ...

    def set_tensor(self, index: int, value: np.ndarray) -> None: ...

    def get_input_details(self) -> list[dict[str, Any]]: ...

    def get_output_details(self) -> list[dict[str, Any]]: ...

    def get_tensor_details(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Runtime:
    name: str  # e.g. "ai_edge_litert 2.3.0"
    interpreter: Callable[..., Interpreter]  # Interpreter(model_path= | model_content=, num_threads=, ...)
    load_delegate: Callable[..., Any]  # load_delegate(library, options) -> an opaque delegate handle


def load_runtime(candidates: tuple[str, ...] = RUNTIME_MODULES) -> Runtime:
    errors = []
    for module_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        package = importlib.import_module(module_name.split(".")[0])
        version = getattr(package, "__version__", "")
        # tensorflow.lite keeps load_delegate under `experimental`.
        load_delegate = getattr(module, "load_delegate", None) or module.experimental.load_delegate
        return Runtime(f"{module_name.split('.')[0]} {version}".strip(), module.Interpreter, load_delegate)
    raise RuntimeUnavailableError("no TFLite interpreter is installed: pip install ai-edge-litert "
                                  f"(tried {'; '.join(errors)})")


def usable_cores() -> int:
    """Cores this process may run on (respects taskset and cgroup cpusets, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def edgetpu_library_present() -> bool:
    try:
        ctypes.CDLL(EDGETPU_LIBRARY)
        return True
    except OSError:
        return False


def load_edgetpu_delegate(runtime: Runtime, device: str) -> Any:
    """The Coral Edge TPU delegate; `device` is "" (first found), "usb", "usb:N", "pci" or "pci:N"."""
    # Probe the library ourselves: when it is missing, load_delegate leaves a half-built
    # Delegate whose destructor prints a traceback of its own.
    if not edgetpu_library_present():
        raise RuntimeUnavailableError(f"Edge TPU library {EDGETPU_LIBRARY} not found: {EDGETPU_INSTALL_HINT}")
    options = {"device": device} if device else {}
    try:
        return runtime.load_delegate(EDGETPU_LIBRARY, options)
    except (ValueError, RuntimeError, OSError) as exc:
        where = f" '{device}'" if device else ""
        reason = str(exc).strip().splitlines()[0]
        raise RuntimeUnavailableError(f"no Edge TPU device{where} could be opened ({reason}): check that the Coral is "
                                      "plugged in (lsusb shows 'Global Unichip' or '18d1:9302') and that the "
                                      "user may access it") from exc


def open_interpreter(runtime: Runtime, model: ModelFile, **options: Any) -> Interpreter:
    """An interpreter for `model`, tensors not yet allocated; a file LiteRT cannot parse is a ModelError."""
    try:
        return runtime.interpreter(model_content=model.content, **options)
    except ValueError as exc:
        raise ModelError(f"'{model.path}' is not a valid TFLite model: {exc}") from exc

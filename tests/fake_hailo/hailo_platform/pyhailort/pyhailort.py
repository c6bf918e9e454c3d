"""Stands in for HailoRT's Python API where no Hailo-8 or Hailo-8L exists (hailo-ai/hailort at v4.23.0, the
release Hailo Model Zoo v2.18 compiles its Hailo-8/8L HEFs for).

It mirrors hailort/libhailort/bindings/python/platform/hailo_platform/pyhailort/pyhailort.py and only the part of it
edge-infer and picamera2's picamera2/devices/hailo/hailo.py use: VDevice (create_params, create_infer_model,
get_physical_devices, release), HEF (get_input_vstream_infos, get_output_vstream_infos), InferModel (input, output,
outputs, input_names, output_names, set_batch_size, configure), ConfiguredInferModel (create_bindings,
wait_for_async_ready, run, run_async, shutdown), its Bindings and their InferStreams (set_buffer, get_buffer),
Device.scan and Control.identify, FormatType, FormatOrder, HailoSchedulingAlgorithm and the exception classes.
Failures come as upstream raises them:
- no device: VDevice::create finds no free device and fails with HAILO_OUT_OF_PHYSICAL_DEVICES ("Failed to create
  vdevice. there are not enough free devices. requested: 1, found: 0", libhailort/src/vdevice/vdevice.cpp,
  VDeviceBase::create_devices); pyhailort's ExceptionWrapper turns a status without a class of its own into
  HailoRTException("libhailort failed with error: 74 (HAILO_OUT_OF_PHYSICAL_DEVICES)");
- a device another VDevice holds is skipped as HAILO_DEVICE_IN_USE (VdmaDevice::mark_as_used, the driver's
  per-open-file owner), so it too ends in HAILO_OUT_OF_PHYSICAL_DEVICES, in this process or another, until the
  holder releases it or dies (here: an flock on the device node, which the kernel drops with the process);
- a driver of another version than the library: HAILO_INVALID_DRIVER_VERSION ("Driver version (4.20.0) is different
  from library version (4.23.0)", libhailort/src/vdma/driver/hailort_driver.cpp, validate_driver_version);
- a HEF for another chip: configure() fails with HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE ("HEF format is not compatible
  with device. Device arch: HAILO8L, HEF arch: HAILO8", libhailort/src/device_common/device_internal.cpp,
  DeviceBase::check_hef_is_compatible; a Hailo-8 takes a Hailo-8L HEF with a warning, a Hailo-8L only its own);
- a file that is not a HEF: HAILO_HEF_NOT_SUPPORTED ("HEF magic does not match", libhailort/src/hef/hef.cpp,
  validate_hef_header);
- the device gone mid-run: run() fails. What real HailoRT returns when a PCIe device drops off the bus is not
  documented; the stand-in raises HAILO_DRIVER_OPERATION_FAILED's class (HailoRTDriverOperationFailedException,
  "Failure in hailort driver ioctl"), the status an ioctl on a dead device gives;
- the device there but not answering (its firmware hung): run() is run_async(bindings) then job.wait(timeout), and a
  job that never completes fails the wait with HAILO_TIMEOUT once `timeout` ms have passed, which ExceptionWrapper
  raises as HailoRTTimeout("Received a timeout - hailort has failed because a timeout had occurred").
HailoRT's logger writes its errors to stderr as "[HailoRT] [error] ..." (libhailort/src/utils/hailort_logger.cpp:
HAILORT_CONSOLE_LOGGER_PATTERN on a stderr_color_sink) and to hailort.log files; the stand-in writes the stderr lines.

The machine is a directory, $HAILO_STANDIN_ROOT, laid out as / is: dev/hailo0 is the device (a file naming its chip,
HAILO8 or HAILO8L; removed = gone; dev/hailo0.hung beside it = hung), sys/module/hailo_pci/version the driver's
version (MODULE_VERSION(HAILO_DRV_VER), hailo-ai/hailort-drivers linux/pcie/src/pcie.c). A HEF is b"\\x01HEF"
(hef_internal.hpp HEADER_MAGIC, big-endian) followed by JSON: {"tflite": a real TFLite MobileNet, "arch": "HAILO8" |
"HAILO8L", "output": "softmax" | "logits", "classes": 1001 | 1000}. Its "network" runs that TFLite model on the CPU
(ai_edge_litert) on the very pixels it is given, so what it answers is a real classification: "softmax" hands out the
model's probabilities quantized as the TFLite output is, "logits" their logarithms plus 10 on a [-14, 10] range
(uint8, qp_zp 148.75), and 1000 classes drop index 0 (background).
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LIBRARY_VERSION = "4.23.0"
HEF_MAGIC = b"\x01HEF"
LOGITS_RANGE = (-14.0, 10.0)  # log-probabilities + 10: logits (softmax ignores the shift), e^-24 at the floor

STATUS = {26: "HAILO_INVALID_HEF", 36: "HAILO_DRIVER_OPERATION_FAILED", 74: "HAILO_OUT_OF_PHYSICAL_DEVICES",
          76: "HAILO_INVALID_DRIVER_VERSION", 92: "HAILO_HEF_NOT_SUPPORTED"}  # include/hailo/hailort.h


def root() -> Path:
    return Path(os.environ.get("HAILO_STANDIN_ROOT", "/nonexistent-hailo-standin"))


def device_node() -> Path:
    return root() / "dev" / "hailo0"


def device_hung() -> bool:
    """The device is there but completes no job (its firmware hung)."""
    return device_node().with_name("hailo0.hung").exists()


def log_error(message: str) -> None:
    print(f"[HailoRT] [error] {message}", file=sys.stderr, flush=True)


# --- _pyhailort's enums and structs (bindings/python/src/pyhailort.cpp) ---------------------------------------------

class FormatType(enum.IntEnum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class FormatOrder(enum.IntEnum):
    AUTO = 0
    NHWC = 1
    NC = 7


class HailoSchedulingAlgorithm(enum.IntEnum):
    NONE = 0
    ROUND_ROBIN = 1


class DeviceArchitectureTypes(enum.IntEnum):
    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2

    def __str__(self) -> str:
        return self.name


@dataclass
class HailoFormat:
    type: FormatType
    order: FormatOrder
    flags: int = 0


@dataclass
class QuantInfo:
    qp_zp: float
    qp_scale: float
    limvals_min: float = 0.0
    limvals_max: float = 0.0


@dataclass
class VStreamInfo:
    name: str
    shape: tuple[int, ...]
    format: HailoFormat
    quant_info: QuantInfo
    network_name: str = ""


@dataclass
class VDeviceParams:
    scheduling_algorithm: HailoSchedulingAlgorithm = HailoSchedulingAlgorithm.ROUND_ROBIN
    device_count: int = 1
    multi_process_service: bool = False


# --- exceptions (pyhailort.py) ----------------------------------------------------------------------------------

class HailoRTException(Exception):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTInvalidArgumentException(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


class HailoRTDriverOperationFailedException(HailoRTException):
    pass


HailoRTPCIeDriverException = HailoRTDriverOperationFailedException


def status_exception(code: int) -> HailoRTException:
    """ExceptionWrapper.create_exception_from_status: a class of its own for some statuses, else the generic one."""
    name = STATUS[code]
    if name == "HAILO_INVALID_HEF":
        return HailoRTInvalidHEFException("Invalid HEF. See hailort.log for more information")
    if name == "HAILO_DRIVER_OPERATION_FAILED":
        return HailoRTDriverOperationFailedException(
            "Failure in hailort driver ioctl. run 'dmesg | grep hailo' for more information")
    return HailoRTException(f"libhailort failed with error: {code} ({name})")


# --- HEF ----------------------------------------------------------------------------------------------------------

def parse_hef(source: str | bytes) -> dict[str, Any]:
    content = Path(source).read_bytes() if isinstance(source, str) else source
    if content[:4] != HEF_MAGIC:
        log_error(f"HEF magic does not match. detected magic - {int.from_bytes(content[:4], 'big'):x}")
        raise status_exception(92)
    try:
        spec = json.loads(content[4:])
        spec["tflite"], spec["arch"]  # noqa: B018 - both must be there
    except (ValueError, KeyError, TypeError) as exc:
        log_error("Failed parsing HEF file")
        raise status_exception(26) from exc
    return spec


class Network:
    """The HEF's network: the named TFLite model on the CPU, its answer as the HEF's output."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.spec = spec
        self.interpreter = Interpreter(model_path=spec["tflite"], num_threads=1)
        self.interpreter.allocate_tensors()
        self.input_detail = self.interpreter.get_input_details()[0]
        self.output_detail = self.interpreter.get_output_details()[0]
        scale, zero_point = self.output_detail["quantization"]
        self.tflite_quant = (float(scale), int(zero_point))
        self.classes = int(spec.get("classes", self.output_detail["shape"][-1]))
        if spec.get("output", "softmax") == "logits":
            low, high = LOGITS_RANGE
            self.quant = QuantInfo(qp_zp=-low * 255 / (high - low), qp_scale=(high - low) / 255, limvals_min=low,
                                   limvals_max=high)
        else:
            self.quant = QuantInfo(qp_zp=float(zero_point), qp_scale=float(scale), limvals_min=0.0, limvals_max=1.0)

    def input_info(self) -> VStreamInfo:
        _, height, width, channels = (int(d) for d in self.input_detail["shape"])
        # Normalization is in the network (the Model Zoo's normalize_in_net): the host hands in pixels as they are.
        return VStreamInfo(f"{self.name}/input_layer1", (height, width, channels),
                           HailoFormat(FormatType.UINT8, FormatOrder.NHWC), QuantInfo(0.0, 1.0, 0.0, 255.0),
                           self.name)

    def output_info(self) -> VStreamInfo:
        return VStreamInfo(f"{self.name}/{self.spec.get('output', 'softmax')}1", (self.classes,),
                           HailoFormat(FormatType.UINT8, FormatOrder.NC), self.quant, self.name)

    @property
    def name(self) -> str:
        return Path(self.spec["tflite"]).name.removesuffix(".tflite")

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """The real scores of `pixels` (H, W, 3 uint8), quantized as the output's quant_info says (uint8)."""
        self.interpreter.set_tensor(self.input_detail["index"], pixels[np.newaxis].astype(self.input_detail["dtype"]))
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.output_detail["index"])[0]
        scale, zero_point = self.tflite_quant
        probabilities = (raw.astype(np.float32) - zero_point) * scale if scale else raw.astype(np.float32)
        if self.classes == len(probabilities) - 1:
            probabilities = probabilities[1:]
        if self.spec.get("output", "softmax") == "logits":
            low, high = LOGITS_RANGE
            real = np.log(np.maximum(probabilities, np.exp(low - high))) + high
        else:
            real = probabilities
        return np.clip(np.rint(real / self.quant.qp_scale + self.quant.qp_zp), 0, 255).astype(np.uint8)


class HEF:
    """Python representation of the Hailo Executable Format (pyhailort.py, HEF)."""

    def __init__(self, hef_source: str | bytes) -> None:
        if not isinstance(hef_source, str | bytes):
            raise ValueError("HEF can only be created from a file path (str) or a buffer (bytes)")
        self._spec = parse_hef(hef_source)
        self._path = hef_source if isinstance(hef_source, str) else None
        self._network: Network | None = None

    @property
    def path(self) -> str | None:
        return self._path

    def network(self) -> Network:
        if self._network is None:
            self._network = Network(self._spec)
        return self._network

    def get_input_vstream_infos(self, name: str | None = None) -> list[VStreamInfo]:
        return [self.network().input_info()]

    def get_output_vstream_infos(self, name: str | None = None) -> list[VStreamInfo]:
        return [self.network().output_info()]

    def get_network_group_names(self) -> list[str]:
        return [self.network().name]


# --- devices ------------------------------------------------------------------------------------------------------

class BoardInformation:
    def __init__(self, device_architecture: DeviceArchitectureTypes) -> None:
        self.device_architecture = device_architecture
        self.board_name = "Hailo-8"
        self.firmware_version = LIBRARY_VERSION


class Control:
    def __init__(self, device_id: str) -> None:
        self._device_id = device_id

    def identify(self) -> BoardInformation:
        if not device_node().exists():
            raise status_exception(36)
        return BoardInformation(DeviceArchitectureTypes[device_arch()])


def device_arch() -> str:
    return device_node().read_text().strip() or "HAILO8"


class Device:
    """A physical device (pyhailort.py, Device): for identify(); inference goes through VDevice."""

    @classmethod
    def scan(cls) -> list[str]:
        return ["0000:01:00.0"] if device_node().exists() else []

    def __init__(self, device_id: str | None = None) -> None:
        if device_id is None:
            ids = Device.scan()
            if not ids:
                raise HailoRTException("HailoRT device not found in the system")
            device_id = ids[0]
        self._device_id = device_id
        self.control = Control(device_id)

    @property
    def device_id(self) -> str:
        return self._device_id

    def release(self) -> None:
        pass


def check_driver_version() -> None:
    """HailoRTDriver's constructor: the driver's version must be the library's (validate_driver_version)."""
    version_file = root() / "sys" / "module" / "hailo_pci" / "version"
    driver = version_file.read_text().strip() if version_file.exists() else LIBRARY_VERSION
    if driver != LIBRARY_VERSION:
        log_error(f"Driver version ({driver}) is different from library version ({LIBRARY_VERSION})")
        log_error("Driver version mismatch, status 76")
        raise status_exception(76)


class VDevice:
    """Hailo virtual device representation (pyhailort.py, VDevice): one device, held until release()."""

    def __init__(self, params: VDeviceParams | None = None, *, device_ids: list[str] | None = None) -> None:
        self._params = params or VDevice.create_params()
        self._creation_pid = os.getpid()
        self._held: int | None = None
        free = 0
        if device_node().exists():
            check_driver_version()
            fd = os.open(device_node(), os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # mark_as_used: HAILO_DEVICE_IN_USE when held
                self._held, free = fd, 1
            except BlockingIOError:
                os.close(fd)
        if free < self._params.device_count:
            log_error("Failed to create vdevice. there are not enough free devices. requested: "
                      f"{self._params.device_count}, found: {free}")
            raise status_exception(74)

    @staticmethod
    def create_params() -> VDeviceParams:
        return VDeviceParams()

    def create_infer_model(self, hef_source: str | bytes, name: str = "") -> InferModel:
        if os.getpid() != self._creation_pid:
            raise HailoRTException("InferModel can be created only from the process VDevice was created in.")
        if self._held is None:
            raise HailoRTException("VDevice was released")
        return InferModel(self, HEF(hef_source))

    def get_physical_devices_ids(self) -> list[str]:
        return Device.scan()

    def get_physical_devices(self) -> list[Device]:
        return [Device(device_id) for device_id in self.get_physical_devices_ids()]

    def release(self) -> None:
        if self._held is not None:
            os.close(self._held)  # the driver forgets its owner with the file
            self._held = None

    def __enter__(self) -> VDevice:
        return self

    def __exit__(self, *args: object) -> bool:
        self.release()
        return False

    def __del__(self) -> None:
        self.release()


# --- the InferModel API -------------------------------------------------------------------------------------------

DTYPES = {FormatType.UINT8: np.uint8, FormatType.UINT16: np.uint16, FormatType.FLOAT32: np.float32}


@dataclass
class StreamState:
    info: VStreamInfo
    format_type: FormatType

    def dtype(self) -> type:
        return DTYPES[FormatType.UINT8 if self.format_type == FormatType.AUTO else self.format_type]


class InferModel:
    """pyhailort.py, InferModel: the streams' formats are set here, then configure()."""

    class InferStream:
        def __init__(self, state: StreamState) -> None:
            self._state = state

        @property
        def name(self) -> str:
            return self._state.info.name

        @property
        def shape(self) -> list[int]:
            return list(self._state.info.shape)

        @property
        def format(self) -> HailoFormat:
            return HailoFormat(self._state.format_type, self._state.info.format.order)

        @property
        def quant_infos(self) -> list[QuantInfo]:
            return [self._state.info.quant_info]

        def set_format_type(self, type: FormatType) -> None:  # noqa: A002 - upstream's name
            self._state.format_type = FormatType(type)

    def __init__(self, vdevice: VDevice, hef: HEF) -> None:
        self._vdevice = vdevice
        self._hef = hef
        self._input = StreamState(hef.get_input_vstream_infos()[0], FormatType.AUTO)
        self._output = StreamState(hef.get_output_vstream_infos()[0], FormatType.AUTO)
        self.batch_size = 0

    @property
    def hef(self) -> HEF:
        return self._hef

    def set_batch_size(self, batch_size: int) -> None:
        self.batch_size = batch_size

    @property
    def input_names(self) -> list[str]:
        return [self._input.info.name]

    @property
    def output_names(self) -> list[str]:
        return [self._output.info.name]

    @property
    def inputs(self) -> list[InferModel.InferStream]:
        return [self.InferStream(self._input)]

    @property
    def outputs(self) -> list[InferModel.InferStream]:
        return [self.InferStream(self._output)]

    def input(self, name: str = "") -> InferModel.InferStream:
        return self.InferStream(self._stream(self._input, name))

    def output(self, name: str = "") -> InferModel.InferStream:
        return self.InferStream(self._stream(self._output, name))

    @staticmethod
    def _stream(state: StreamState, name: str) -> StreamState:
        if name not in ("", state.info.name):
            raise HailoRTException(f"libhailort failed with error: 61 (HAILO_NOT_FOUND): {name}")
        return state

    def configure(self) -> ConfiguredInferModel:
        """Configures the device with the HEF (VDeviceBase::create_local_config_params checks the chip first)."""
        if not device_node().exists():
            raise status_exception(36)
        device, hef = device_arch(), self._hef._spec["arch"]
        compatible = {"HAILO8": {"HAILO8", "HAILO8L"}, "HAILO8L": {"HAILO8L"}}.get(device, set())
        if hef not in compatible:
            log_error(f"HEF format is not compatible with device. Device arch: {device}, HEF arch: {hef}")
            raise HailoRTHEFNotCompatibleWithDevice(
                "HEF file is not compatible with device. See hailort.log for more information")
        if (device, hef) == ("HAILO8", "HAILO8L"):
            print("[HailoRT] [warning] HEF was compiled for Hailo8L device, while the device itself is Hailo8. "
                  "This will result in lower performance.", file=sys.stderr, flush=True)
        return ConfiguredInferModel(self)


class AsyncInferCompletionInfo:
    def __init__(self, exception: HailoRTException | None) -> None:
        self._exception = exception

    @property
    def exception(self) -> HailoRTException | None:
        return self._exception


class AsyncInferJob:
    """pyhailort.py, AsyncInferJob: wait(timeout_ms) raises the job's error; a job not completed within timeout_ms
    fails the wait with HAILO_TIMEOUT, which ExceptionWrapper raises as HailoRTTimeout."""

    def __init__(self, error: HailoRTException | None, completed: bool = True) -> None:
        self._error = error
        self._completed = completed

    def wait(self, timeout_ms: int) -> None:
        if not self._completed:
            time.sleep(timeout_ms / 1000)
            raise HailoRTTimeout("Received a timeout - hailort has failed because a timeout had occurred")
        if self._error is not None:
            raise self._error


class ConfiguredInferModel:
    """pyhailort.py, ConfiguredInferModel: bindings, then run (synchronous) or run_async."""

    class Bindings:
        class InferStream:
            def __init__(self, state: StreamState) -> None:
                self._state = state
                self._buffer: np.ndarray | None = None

            def set_buffer(self, buffer: np.ndarray) -> None:
                if not buffer.flags.c_contiguous:
                    raise HailoRTException("Buffer must be C_CONTIGUOUS")
                frame_bytes = int(np.prod(self._state.info.shape)) * np.dtype(self._state.dtype()).itemsize
                if buffer.nbytes != frame_bytes:  # the C++ InferStream checks the frame size (HAILO_INVALID_ARGUMENT)
                    raise HailoRTInvalidArgumentException("Invalid argument. See hailort.log for more information")
                self._buffer = buffer

            def get_buffer(self, tf_format: bool | None = False) -> np.ndarray | None:
                return self._buffer

        def __init__(self, model: InferModel) -> None:
            self._input = self.InferStream(model._input)
            self._output = self.InferStream(model._output)

        def input(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._input

        def output(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._output

    def __init__(self, model: InferModel) -> None:
        self._model = model
        self._shut_down = False

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(self, *args: object) -> None:
        self.shutdown()

    def create_bindings(self, input_buffers: dict[str, np.ndarray] | None = None,
                        output_buffers: dict[str, np.ndarray] | None = None) -> ConfiguredInferModel.Bindings:
        bindings = self.Bindings(self._model)
        for buffer in (input_buffers or {}).values():
            bindings.input().set_buffer(buffer)
        for buffer in (output_buffers or {}).values():
            bindings.output().set_buffer(buffer)
        return bindings

    def wait_for_async_ready(self, timeout_ms: int = 1000, frames_count: int = 1) -> None:
        self._check_alive()

    def _check_alive(self) -> None:
        if self._shut_down or self._model._vdevice._held is None:
            raise HailoRTException("libhailort failed with error: 6 (HAILO_INVALID_OPERATION)")
        if not device_node().exists():
            log_error("Failed to run the inference: the device does not answer (status 36)")
            raise status_exception(36)

    def _infer(self, bindings: ConfiguredInferModel.Bindings) -> None:
        self._check_alive()
        pixels, out = bindings.input().get_buffer(), bindings.output().get_buffer()
        if pixels is None or out is None:
            raise HailoRTException("libhailort failed with error: 2 (HAILO_INVALID_ARGUMENT)")
        network = self._model._hef.network()
        quantized = network(pixels.reshape(self._model._input.info.shape))
        if out.dtype == np.float32:  # FormatType.FLOAT32: HailoRT dequantizes on the host
            quant = self._model._output.info.quant_info
            out.reshape(-1)[...] = (quantized.astype(np.float32) - quant.qp_zp) * quant.qp_scale
        else:
            out.reshape(-1)[...] = quantized

    def run(self, bindings: list[ConfiguredInferModel.Bindings], timeout: int) -> None:
        self.run_async(bindings).wait(timeout)  # as upstream's run is

    def run_async(self, bindings: list[ConfiguredInferModel.Bindings], callback: Any = None) -> AsyncInferJob:
        error: HailoRTException | None = None
        try:
            self._check_alive()
            if device_hung():  # queued, never completed: no callback, and the job's wait times out
                return AsyncInferJob(None, completed=False)
            for one in bindings:
                self._infer(one)
        except HailoRTException as exc:
            error = exc
        if callback is not None:
            callback(completion_info=AsyncInferCompletionInfo(error))
        return AsyncInferJob(error)

    def shutdown(self) -> None:
        self._shut_down = True


__all__ = [
    "HEF", "AsyncInferJob", "ConfiguredInferModel", "Device", "DeviceArchitectureTypes", "FormatOrder", "FormatType",
    "HailoRTDriverOperationFailedException", "HailoRTException", "HailoRTHEFNotCompatibleWithDevice",
    "HailoRTInvalidArgumentException", "HailoRTInvalidHEFException", "HailoRTPCIeDriverException", "HailoRTTimeout",
    "HailoSchedulingAlgorithm", "InferModel", "VDevice",
]

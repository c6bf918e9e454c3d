"""Stands in for Picamera2 (raspberrypi/picamera2 at 3e6dff0, 0.3.36) where no Pi camera exists.

Only what edge-infer uses, and each behaviour as the upstream code has it (file:line there):
- global_camera_info() lists USB webcams too and sorts them last (picamera2.py:295-312);
- a camera another process holds fails in __init__ with "Camera __init__ sequence did not complete."
  caused by acquire()'s EBUSY (picamera2.py:356-368, libcamera py_main.cpp:153-158);
- ScalerCropMaximum is a zero rectangle until configure() chooses a sensor mode, and camera_controls'
  ScalerCrop is a placeholder until then (libcamera pipeline_base.cpp:864-868 and 563-582,
  ipa_base.cpp:79; picamera2 re-reads both after configure, picamera2.py:1226-1230); a zero ScalerCrop
  is the smallest crop, at the sensor's top-left corner;
- stream configs take only format/size/stride/preserve_ar (picamera2.py:750; preserve_ar since 0.3.23),
  lores defaults to YUV420 at main's size (:881-935), the video colour space is Rec709 from 1280x720 up
  (:911-916), align_configuration() rounds YUV420 widths down to 64 (VC4) or 128 (PiSP) (:1086-1105);
- on PiSP the ISP crops each stream by rpi::ScalerCrops, set from preserve_ar (:1274-1280), and
  ignores ScalerCrop;
- capture_array(name, wait=seconds) raises TimeoutError when no frame comes in time (:1508-1537), and
  a YUV420 array is (height * 3 / 2, stride) with the rows padded (request.py:319-324);
- frames come one per 1 / FrameRate s (FrameRate is FrameDurationLimits, controls.py:8-18; 30 fps when unset,
  the video configuration's 33333 us, :917-921), and the first only after the startup frames libcamera's Pi IPA
  marks (the larger of AGC's 6 and AWB's 3 convergence frames, each plus the 1 most sensors mistrust:
  libcamera ipa_base.cpp IpaBase::start) and Picamera2 drops (:1417-1421). The stand-in keeps that time
  without waiting it out: a wait shorter than the next frame's time is a TimeoutError at once;
- camera_controls lists the camera's controls from the moment it is open (:541-543), the AF ones (AfMode,
  LensPosition, ...) only for a sensor with a lens (libcamera ipa_base.cpp, ipaAfControls and lensPresent_:
  here the IMX708, Camera Module 3, with LensPosition (min, max, default) from its tuning file's lens map and
  default, imx708.json rpi.af); setting a control it does not list raises "Control X is not advertised by
  libcamera" (controls.py:26-33), in set_controls and in a configuration's controls (:1271).

The camera films a photograph: the image at $FAKE_PICAMERA2's "scene" stretched over the sensor.
$FAKE_PICAMERA2 is JSON: cameras (list of {"Model", "Id"}; Model "Sensor B" is vimc's camera: one stream, three
controls, formats RGB888 and BGR888 of which only BGR888 streams), platform ("vc4" or "pisp"), version, streams (how
many the camera has), dma_heaps (the DMA heap paths the DmaAllocator tries, as dma_heap.py's heapNames; unset: a
Raspberry Pi OS kernel's, which are there; where none of them exists Picamera2() without an allocator raises "Could
not open any dmaHeap device", and so does close(), after releasing the camera), main_format (the main stream's
format whatever was asked, as the camera's validate() adjusts it), busy, stall_after (frames before the camera stops
sending), unplugged_after (frames before the camera vanishes: no more frames, and stopping it aborts the process as
libcamera 0.4 does), import_error, log (a file where closing appends the camera's state as one JSON line), sensor
(the sensor mode's crop, (x, y, width, height); by default the IMX477's 2028x1520 binned mode, and the full
4056x3040 array for an IMX500, whose modes both read it all: imx500.c imx500_supported_modes), imx500 (below).

capture_request(wait, flush) gives a CompletedRequest (request.py:87-183): make_array(name) as capture_array
gives it, get_metadata() a new dict each call ({ScalerCrop, SensorTimestamp, FrameDuration} and, on an IMX500
running a network, the Cnn* keys below), release() once (a second release raises "CompletedRequest: lock now has
negative ref_count"; after release make_array raises "Stream 'main' is not defined" and get_metadata an
AssertionError, as upstream's request is None then). `requests` lists every request handed out; while the
application holds buffer_count of them no frame can be filled, and capture_request stalls as with stall_after.
capture_array takes a request and releases it (capture_array_, picamera2.py:2163-2169).

The Raspberry Pi AI Camera (camera Model "imx500"; picamera2.devices.IMX500 stands in for upstream's
devices/imx500/imx500.py): Imx500Driver keeps what the kernel driver keeps per sensor (raspberrypi/linux
drivers/media/i2c/imx500.c at 0a3ca5c): the network file set through the IMX500 object's device fd (refused with
EBUSY while streaming: the control is grabbed), the inference window (each value clamped to the control's max,
4032), the firmware stage and progress its debugfs fw_progress shows (stage, bytes sent in whole 1 MiB SPI
transfers, file size; the rp2040's transfer_progress has the rest). A camera opened after a network was set
streams it: start() uploads it first (imx500_start_streaming, when network_written is false), taking upload_s,
and every request then carries what libcamera's IMX500 cam helper exports (cam_helper_imx500.cpp:262-306,
ipa_base.cpp:1736-1761), as the Python bindings give arrays, tuples (py_helpers.cpp valueOrTuple):
CnnOutputTensor (floats: the real TFLite model named by the rpk's standin_network entry, run on the inference
window of the scene stretched over the full 4056x3040 array, resized to the rpk's input size as the sensor does,
without keeping the aspect ratio, and dequantised), CnnOutputTensorInfo (the bytes of controller.h's
CnnOutputTensorInfo: one tensor of one dimension, the class count), CnnKpiInfo ((DNN runtime, DSP runtime) in
microseconds: the measured invoke time and DSP_US) - except the first late_frames requests after each start(),
which have none of the three (the DNN's output lags the frames).
$FAKE_PICAMERA2's "imx500" object (defaults in IMX500_DEFAULTS):
- classes: 1001 (the model's output as it is) or 1000 (the background class, index 0, dropped);
- logits: null (logits, the log of the probabilities, when the rpk's intrinsics say cpu.softmax: true, else the
  probabilities), true or false (either whatever the intrinsics say);
- late_frames: requests after each start() without tensors;
- upload_s: seconds start() blocks uploading a network it has not uploaded yet (progress rises linearly);
- autosuspend_s: seconds after streaming stops until the sensor powers off and forgets its network: a later
  start() streams without one (no upload, no tensors) unless an IMX500 object sets a network again;
- fw_progress: "direct" (debugfs readable: IMX500.fw_progress DIRECT), "indirect" (only through the sudo
  scripts) or "none" (neither: upstream prints that the progress bar is not available, and
  get_fw_upload_progress fails its assert);
- upload_fails: false, true (the sensor rejects the uploaded network: EREMOTEIO, as imx500_state_transition
  returns when the reply is not TRANS_DONE) or an errno name (e.g. "EAGAIN": DD_REF_STS never updated); start()
  then raises RuntimeError("Failed to start camera: Remote I/O error") after the upload time (py_main.cpp:181-186
  throws std::system_error, which pybind11 makes a RuntimeError, when Camera::start fails; it fails when
  VIDIOC_STREAMON does, pipeline_base.cpp:709-716, and that fails with the sensor's s_stream error);
  a network file whose firmware blocks are malformed fails the same way with EINVAL, without uploading;
- import_error: e.g. "No module named 'libarchive'": importing picamera2.devices (or .devices.imx500) raises
  ModuleNotFoundError with that text (upstream imports Imath, jsonschema, OpenEXR, libarchive and videodev2 there).
"""

from __future__ import annotations

import ctypes
import enum
import errno
import functools
import json
import os
import threading
import time
from typing import Any

import cv2
import imx500_rpk
import libcamera
import numpy as np


def settings() -> dict[str, Any]:
    return json.loads(os.environ.get("FAKE_PICAMERA2", "{}"))


if settings().get("import_error"):  # e.g. simplejpeg built on numpy 1 under numpy 2 (picamera2#1088)
    raise ValueError(settings()["import_error"])

MIN_CROP = (0, 0, 64, 64)
STARTUP_FRAMES = 7
LENS_MODELS = {"imx708"}
# (min, max, default) as camera_controls gives them; AfMode's are AfModeManual..AfModeContinuous.
LENS_CONTROLS = {"AfMode": (0, 2, 0), "AfRange": (0, 2, 0), "AfSpeed": (0, 1, 0), "AfTrigger": (0, 1, 0),
                 "AfPause": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0)}
FRAME_DURATION_LIMITS = (33333, 694434742, 33333)  # (min, max, default) in us: a range wide enough for 0.1 fps
VIRTUAL_CONTROLS = {"FrameRate": "FrameDurationLimits"}  # controls.py:18, _VIRTUAL_FIELDS_MAP_
instances: list[Picamera2] = []
requests: list[CompletedRequest] = []

IMX500_SENSOR = (0, 0, 4056, 3040)
IMX500_DEFAULTS: dict[str, Any] = {"classes": 1001, "logits": None, "late_frames": 2, "upload_s": 0.0,
                                   "autosuspend_s": 5.0, "fw_progress": "direct", "upload_fails": False,
                                   "import_error": None}
DSP_US = 150  # the DSP time CnnKpiInfo reports


def _libcamera_size_to_tuple(sz: Any) -> tuple[int, int]:
    return (sz.width, sz.height)


def _libcamera_rect_to_tuple(rect: Any) -> tuple[int, int, int, int]:
    return (rect.x, rect.y, rect.width, rect.height)


libcamera.Size.to_tuple = _libcamera_size_to_tuple  # picamera2/__init__.py:64-69
libcamera.Rectangle.to_tuple = _libcamera_rect_to_tuple  # picamera2/__init__.py:72-76


def imx500_settings() -> dict[str, Any]:
    return {**IMX500_DEFAULTS, **settings().get("imx500", {})}


class Platform(enum.Enum):  # picamera2/platform.py:8-12
    VC4 = 0
    PISP = 1


def sensor(model: str | None = None) -> tuple[int, int, int, int]:
    """The analogue crop of the sensor mode: (x, y, width, height); IMX477's 2028x1520 binned mode by default,
    the whole array for an IMX500."""
    default = IMX500_SENSOR if model == "imx500" else (0, 0, 2028, 1520)
    return tuple(settings().get("sensor", default))  # type: ignore[return-value]


def stretched(width: int, height: int) -> np.ndarray:
    """The scene photograph stretched over width x height sensor pixels."""
    scene = settings()["scene"]
    return _stretched(scene, os.stat(scene).st_mtime_ns, width, height)


@functools.lru_cache(maxsize=2)
def _stretched(scene: str, _mtime: int, width: int, height: int) -> np.ndarray:
    return cv2.resize(cv2.imread(scene), (width, height), interpolation=cv2.INTER_AREA)


def centre(limits: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """What the ISP does for preserve_ar: the limits bounded to width:height, centred (pisp.cpp:1573)."""
    x, y, w, h = limits
    if w * height > width * h:
        kept = h * width // height
        return x + (w - kept) // 2, y, kept, h
    kept = w * height // width
    return x, y + (h - kept) // 2, w, kept


MIB = 1024 * 1024
FW_NETWORK_STAGE = 2  # imx500.c enum imx500_image_type TYPE_NW_WEIGHTS
WINDOW_MAX = 4032  # imx500.c inf_window_ctrl .max: v4l2 clamps each u32 of the ROI to it (std_validate_elem)


class OutputTensorInfo(ctypes.LittleEndianStructure):  # libcamera controller.h:37-41
    _fields_ = [("tensor_data_num", ctypes.c_uint32), ("num_dimensions", ctypes.c_uint32),
                ("size", ctypes.c_uint16 * 16)]


class CnnOutputTensorInfo(ctypes.LittleEndianStructure):  # libcamera controller.h:43-48
    _fields_ = [("network_name", ctypes.c_char * 64), ("num_tensors", ctypes.c_uint32),
                ("info", OutputTensorInfo * 16), ("frameCount", ctypes.c_uint8)]


class Subdev:
    """An open /dev/v4l-subdevN of an IMX500 (upstream: open(..., 'rb+', buffering=0), imx500.py:325)."""

    def __init__(self, driver: Imx500Driver) -> None:
        self.driver = driver
        self.closed = False
        driver.open_fds += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.driver.open_fds -= 1


class Imx500Driver:
    """What the kernel driver keeps for one IMX500 (imx500.c struct imx500), for as long as the process runs."""

    def __init__(self, camera_id: str, index: int) -> None:
        self.camera_id = camera_id
        self.device_id = f"{10 + index}-001a"  # the I2C client's name: bus-address; the SPI one is ...-0040
        self.open_fds = 0
        self.fw_network: bytes | None = None
        self.fw_stage = 0  # kzalloc'd: TYPE_LOADER until an upload starts
        self.fw_progress = 0
        self.network_written = False
        self.streaming = False
        self.inference_window = (0, 0, 0, 0)
        self.transfer: tuple[float, float, int] | None = None  # (monotonic start, seconds, bytes) while uploading
        self.stopped_at: float | None = None  # when streaming last stopped, if the sensor is still powered
        self.uploads = 0
        self.network: dict[str, Any] = {}
        self.interpreters: dict[str, Any] = {}

    def open(self) -> Subdev:
        return Subdev(self)

    def settle(self) -> None:
        """Runtime PM: autosuspend_s (pm_runtime_set_autosuspend_delay(dev, 5000) in imx500_probe) after streaming
        stops, the sensor powers off, and imx500_power_off forgets the network (imx500_clear_fw_network)."""
        if self.stopped_at is not None and time.monotonic() - self.stopped_at >= imx500_settings()["autosuspend_s"]:
            self.stopped_at = None
            self.fw_network, self.network_written, self.fw_progress = None, False, 0

    def stream_off(self) -> None:
        if self.streaming:
            self.streaming, self.stopped_at = False, time.monotonic()

    def set_network(self, data: bytes) -> None:
        """The NETWORK_FW_FD control (imx500_set_ctrl): reads the whole file, keeps it for the next stream-on."""
        self.settle()
        if self.streaming:  # __v4l2_ctrl_grab(network_fw_ctrl) while streaming
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        self.fw_network, self.network_written, self.fw_progress = data, False, 0  # imx500_clear_fw_network
        entries = imx500_rpk.cpio_entries(data)
        info = dict(line.split("=", 1) for line in entries.get("network_info.txt", b"").decode().splitlines()
                    if "=" in line)
        intrinsics = json.loads(entries.get("network_intrinsics", b"{}") or b"{}")
        self.network = {"model": entries.get("standin_network", b"").decode() or None,
                        "name": info.get("networkName", ""),
                        "size": (int(info.get("inputTensorWidth", 0)), int(info.get("inputTensorHeight", 0))),
                        "softmax": bool(intrinsics.get("cpu", {}).get("softmax"))}

    def set_window(self, roi: tuple[int, int, int, int]) -> None:
        """The inference window control (V4L2_CID_USER_IMX500_INFERENCE_WINDOW)."""
        self.inference_window = tuple(min(v, WINDOW_MAX) for v in roi)  # type: ignore[assignment]

    def window(self) -> tuple[int, int, int, int]:
        """The window the DNN reads (imx500_set_inference_window: an empty one is the whole array)."""
        left, top, width, height = self.inference_window
        if not width or not height:
            return IMX500_SENSOR
        return min(left, 4056), min(top, 3040), min(width, 4056), min(height, 3040)

    def sent(self) -> int:
        assert self.transfer is not None
        start, seconds, size = self.transfer
        return size if seconds <= 0 else min(size, int(size * (time.monotonic() - start) / seconds))

    def debugfs_fw_progress(self) -> str:
        """/sys/kernel/debug/imx500-fw:<dev>/fw_progress (fw_progress_show): stage, bytes sent in whole 1 MiB SPI
        transfers, size of the network file."""
        self.settle()
        progress = self.sent() // MIB * MIB if self.transfer else self.fw_progress
        return f"{self.fw_stage} {progress} {len(self.fw_network or b'')}\n"

    def debugfs_transfer_progress(self) -> str:
        """/sys/kernel/debug/rp2040-spi:<dev>/transfer_progress: bytes of the current SPI transfer."""
        return f"{self.sent() % MIB if self.transfer else 0}\n"

    def stream_on(self) -> None:
        """imx500_set_stream(1) -> imx500_start_streaming: a network not written yet is uploaded first (loader and
        main firmware are not modelled); raises OSError with the errno VIDIOC_STREAMON then fails with."""
        self.settle()
        self.stopped_at = None
        if self.fw_network is not None and not self.network_written:
            valid = imx500_rpk.valid_fw_bytes(self.fw_network)
            if not valid:  # imx500_state_transition: "Validate firmware"
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            config = imx500_settings()
            self.fw_stage, self.fw_progress = FW_NETWORK_STAGE, 0
            self.uploads += 1
            self.transfer = (time.monotonic(), float(config["upload_s"]), valid)
            time.sleep(float(config["upload_s"]))
            self.transfer, self.fw_progress = None, valid
            fails = config["upload_fails"]
            if fails:
                code = errno.EREMOTEIO if fails is True else getattr(errno, fails)
                raise OSError(code, os.strerror(code))
            self.network_written, self.fw_progress = True, len(self.fw_network)
        self.streaming = True

    def interpreter(self) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        model = self.network["model"]
        if not model:
            raise RuntimeError("stand-in IMX500: the network file has no standin_network entry (see imx500_rpk)")
        if model not in self.interpreters:
            self.interpreters[model] = Interpreter(model_path=model, num_threads=1)
            self.interpreters[model].allocate_tensors()
        return self.interpreters[model]

    def infer(self, window: tuple[int, int, int, int], frame_count: int) -> dict[str, Any]:
        """The Cnn* metadata of one frame: the network run on `window` of the full sensor image."""
        interpreter = self.interpreter()
        source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        _, height, width, _ = source["shape"]
        if self.network["size"] != (width, height):
            raise RuntimeError(f"stand-in IMX500: the rpk's input {self.network['size']} is not the size of "
                               f"{self.network['model']}, {(width, height)}")
        scene = cv2.imread(settings()["scene"])  # the window of the scene stretched over the array, cut from the
        sx, sy = scene.shape[1] / IMX500_SENSOR[2], scene.shape[0] / IMX500_SENSOR[3]  # scene itself (quicker)
        x, y, w, h = window
        left, top = round(x * sx), round(y * sy)
        pixels = scene[top:max(round((y + h) * sy), top + 1), left:max(round((x + w) * sx), left + 1)]
        image = cv2.cvtColor(cv2.resize(pixels, (int(width), int(height)), interpolation=cv2.INTER_AREA),
                             cv2.COLOR_BGR2RGB)[np.newaxis]
        if source["dtype"] == np.int8:
            image = (image.astype(np.int16) - 128).astype(np.int8)
        elif source["dtype"] != np.uint8:
            image = (image.astype(np.float32) / 127.5 - 1.0).astype(source["dtype"])
        interpreter.set_tensor(source["index"], image)
        begin = time.perf_counter()
        interpreter.invoke()
        dnn_us = int((time.perf_counter() - begin) * 1e6)
        raw = interpreter.get_tensor(target["index"]).reshape(-1)
        scale, zero = target["quantization"]
        values = (raw.astype(np.float32) - zero) * scale if scale else raw.astype(np.float32)
        if imx500_settings()["classes"] == 1000 and len(values) == 1001:
            values = values[1:]
        logits = imx500_settings()["logits"]
        if self.network["softmax"] if logits is None else logits:  # a network leaving softmax to the CPU: logits
            values = np.log(np.maximum(values, 1e-6))
        info = CnnOutputTensorInfo()
        info.network_name = self.network["name"].encode()[:63]
        info.num_tensors = 1
        info.info[0].tensor_data_num = len(values)
        info.info[0].num_dimensions = 1
        info.info[0].size[0] = len(values)
        info.frameCount = frame_count & 0xFF
        return {"CnnOutputTensor": tuple(values.astype(np.float32).tolist()),
                "CnnOutputTensorInfo": tuple(bytes(info)), "CnnKpiInfo": (dnn_us, DSP_US)}


imx500_drivers: dict[str, Imx500Driver] = {}


def imx500_driver(camera_id: str) -> Imx500Driver:
    if camera_id not in imx500_drivers:
        imx500_drivers[camera_id] = Imx500Driver(camera_id, len(imx500_drivers))
    return imx500_drivers[camera_id]


class Frame:
    """One frame as libcamera completes it: what each stream and the DNN saw when it was taken."""

    def __init__(self, picam2: Picamera2) -> None:
        assert picam2.camera_config is not None
        self.picam2 = picam2
        self.number = picam2.frames_since_start
        self.crops = {name: picam2.crop(name) for name in ("main", "lores") if picam2.camera_config.get(name)}
        self.timestamp = time.monotonic_ns()
        self.duration_us = int(picam2.frame_interval_s() * 1e6)
        self.tensors = (picam2.network_at_open and picam2.imx500 is not None and picam2.imx500.network_written
                        and self.number > int(imx500_settings()["late_frames"]))
        self.window = picam2.imx500.window() if picam2.imx500 else None
        self._metadata: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            metadata: dict[str, Any] = {"ScalerCrop": self.crops["main"], "SensorTimestamp": self.timestamp,
                                        "FrameDuration": self.duration_us}
            if self.tensors:
                assert self.picam2.imx500 is not None and self.window is not None
                metadata.update(self.picam2.imx500.infer(self.window, self.number))
            self._metadata = metadata
        return dict(self._metadata)


class CompletedRequest:
    """request.py:87-183, without the buffers: the frame's images are made when asked for."""

    def __init__(self, picam2: Picamera2, frame: Frame) -> None:
        assert picam2.camera_config is not None
        self.picam2 = picam2
        self.request: Frame | None = frame
        self.ref_count = 1
        self.config = picam2.camera_config.copy()
        requests.append(self)

    @property
    def released(self) -> bool:
        return self.ref_count <= 0

    def acquire(self) -> None:
        if self.ref_count == 0:
            raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
        self.ref_count += 1

    def release(self) -> None:
        self.ref_count -= 1
        if self.ref_count < 0:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        if self.ref_count == 0:
            self.picam2.held -= 1
            self.request = None
            self.config = {}

    def get_metadata(self) -> dict[str, Any]:
        assert self.request is not None
        return self.request.metadata()

    def make_array(self, name: str) -> np.ndarray:
        config = self.config.get(name, None)
        if config is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        assert self.request is not None
        return self.picam2.image(config, self.request.crops[name])


# libcamera's virtual test camera (the kernel's vimc driver) as the system stage sees it: one stream, and only these
# controls (libcamera pipeline/vimc/vimc.cpp, VimcCameraData::init at v0.4.0); Model as its sensor entity names it.
VIMC_MODEL = "Sensor B"
VIMC_CONTROLS = {"Brightness": (-1.0, 1.0, 0.0), "Contrast": (0.0, 2.0, 1.0), "Saturation": (0.0, 2.0, 1.0)}
# The formats it lists (vimc.cpp, pixelformats and generateConfiguration); validate() makes any other BGR888.
VIMC_FORMATS = ("RGB888", "BGR888")
# The memory order of each RGB format (picamera2/request.py:350, the PIL mode of each).
CHANNELS = {"RGB888": "BGR", "BGR888": "RGB", "XRGB8888": "BGRX", "XBGR8888": "RGBX"}
class DmaAllocator:  # picamera2/allocators/dmaallocator.py, whose DmaHeap (dma_heap.py:71-82) raises without a heap
    def __init__(self) -> None:
        heaps = settings().get("dma_heaps")  # None: a Raspberry Pi OS kernel, which has them
        if heaps is not None and not any(os.path.exists(heap) for heap in heaps):
            raise RuntimeError("Could not open any dmaHeap device")


class LibcameraAllocator:  # picamera2/allocators/libcameraallocator.py:16-18: keeps the camera, allocates later
    def __init__(self, camera: Any) -> None:
        self.camera = camera


class Picamera2:
    platform = Platform.VC4

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        cameras = [{**camera, "Num": num} for num, camera in enumerate(settings().get("cameras", []))]
        return sorted(cameras, key=lambda cam: ("/usb" not in cam["Id"], cam["Id"]), reverse=True)

    def __init__(self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None,
                 allocator: Any = None) -> None:
        self.is_open = False
        self.started = False
        self.closed = False
        self.controls: dict[str, Any] = {}
        self.camera_config: dict[str, Any] | None = None
        self.aligned = False
        self.version = tuple(int(p) for p in settings().get("version", "0.3.36").split("."))
        self.platform = Platform.PISP if settings().get("platform") == "pisp" else Platform.VC4
        self.frames = 0
        self.frames_since_start = 0
        self.held = 0  # requests the application has not released
        self.stop_count = 0
        # upstream indexes the sorted list with camera_num and opens that entry's Num (picamera2.py:344): the
        # IMX500 helper's camera_num is a Num, so with cameras sorted differently the two can disagree.
        self.info = self.global_camera_info()[camera_num]
        self.imx500 = imx500_driver(self.info["Id"]) if self.info.get("Model") == "imx500" else None
        self.network_at_open = self.imx500 is not None and self.imx500.fw_network is not None
        instances.append(self)
        try:
            if settings().get("busy"):
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
        except Exception as e:
            raise RuntimeError("Camera __init__ sequence did not complete.") from e
        # libcamera's Camera: its streams (py_main.cpp, Camera.streams), one per output the pipeline has: a Pi's
        # ISP has several, vimc and a UVC camera one (pipeline/vimc/vimc.cpp, uvcvideo.cpp).
        self.camera = type("Camera", (), {"streams": frozenset(range(settings().get(
            "streams", 1 if self.info.get("Model") == VIMC_MODEL else 4)))})()
        self.is_open = True
        # After the acquire, outside its try (picamera2.py:376): the DmaAllocator opens a DMA heap or raises.
        self.allocator = DmaAllocator() if allocator is None else allocator

    def sensor(self) -> tuple[int, int, int, int]:
        return sensor(self.info.get("Model"))

    @property
    def camera_properties(self) -> dict[str, Any]:
        return {"Model": self.info.get("Model"),
                "ScalerCropMaximum": self.sensor() if self.camera_config else (0, 0, 0, 0)}

    @property
    def camera_controls(self) -> dict[str, Any]:
        if self.info.get("Model") == VIMC_MODEL:  # vimc's only controls (pipeline/vimc/vimc.cpp, initFrameRate...)
            return dict(VIMC_CONTROLS)
        controls: dict[str, Any] = {"FrameDurationLimits": FRAME_DURATION_LIMITS}
        if self.info.get("Model") in LENS_MODELS:
            controls.update(LENS_CONTROLS)
        if not self.camera_config:
            return {**controls, "ScalerCrop": ((0, 0, 0, 0), (65535, 65535, 65535, 65535), (0, 0, 0, 0))}
        controls["ScalerCrop"] = (MIN_CROP, self.sensor(), self.sensor())
        if self.platform is Platform.PISP and self.version >= (0, 3, 23):
            main = self.camera_config["main"]["size"]
            lores = (self.camera_config["lores"] or self.camera_config["main"])["size"]
            controls["ScalerCrops"] = (centre(self.sensor(), *main), centre(self.sensor(), *lores), self.sensor())
        return controls

    def check_advertised(self, controls: dict[str, Any]) -> None:
        for name in controls:
            if VIRTUAL_CONTROLS.get(name, name) not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")

    def create_video_configuration(self, main: dict | None = None, lores: dict | None = None, transform: Any = None,
                                   colour_space: Any = None, buffer_count: int = 6,
                                   controls: dict | None = None, **_: Any) -> dict[str, Any]:
        valid = ("format", "size", "stride") + (("preserve_ar",) if self.version >= (0, 3, 23) else ())
        for stream in (main or {}, lores or {}):
            for key in stream:
                if key not in valid:
                    raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {valid}")
        main = {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True, **(main or {})}
        if lores is not None:
            lores = {"format": "YUV420", "size": main["size"], "preserve_ar": False, **lores}
        if colour_space is None:
            small = main["size"][0] < 1280 or main["size"][1] < 720
            colour_space = type("ColorSpace", (), {"name": "Smpte170m" if small else "Rec709"})()
        return {"main": main, "lores": lores, "transform": transform, "colour_space": colour_space,
                "buffer_count": buffer_count, "controls": dict(controls or {})}

    def align_configuration(self, config: dict[str, Any]) -> None:
        align = 64 if self.platform is Platform.VC4 else 128  # YUV420: twice the luma alignment
        for stream in (config["main"], config["lores"]):
            if stream and stream["format"] in ("YUV420", "YVU420"):
                width, height = stream["size"]
                stream["size"] = (width - width % align, height - height % 2)
        self.aligned = True

    def configure(self, config: dict[str, Any]) -> None:
        main, lores = config["main"], config["lores"]
        if self.info.get("Model") == VIMC_MODEL and main["format"] not in VIMC_FORMATS:
            # libcamera's validate() adjusts it ("Adjusting format to BGR888", vimc.cpp), and Picamera2 reads the
            # stream's configuration back into its own (picamera2.py:1137-1150, _update_camera_config).
            main["format"] = "BGR888"
        main["format"] = settings().get("main_format", main["format"])  # another camera's own
        if lores is not None and len(self.camera.streams) < 2:
            # Upstream writes and reads libcamera's configuration at(1) (picamera2.py:1034, :1149), which has one
            # entry on such a camera: an unchecked out-of-bounds access (camera.cpp CameraConfiguration::at). The
            # stand-in stops there instead of going on with garbage.
            raise AssertionError("stand-in: a lores stream asked of a camera with one stream (undefined behaviour)")
        if lores is not None and (lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]):
            raise RuntimeError("lores stream dimensions may not exceed main stream")
        for stream in (main, lores):
            if stream is not None:
                width = stream["size"][0]
                pixel_bytes = {"YUV420": 1, "YUYV": 2}.get(stream["format"]) or len(CHANNELS[stream["format"]])
                stream["stride"] = -(-width * pixel_bytes // 64) * 64  # rows padded to 64 bytes
        self.check_advertised(config["controls"])
        self.camera_config = config
        self.controls.update(config["controls"])

    def camera_configuration(self) -> dict[str, Any]:
        assert self.camera_config is not None
        return self.camera_config

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.check_advertised(controls)
        self.controls.update(controls)

    def frame_interval_s(self) -> float:
        if self.controls.get("FrameRate"):
            return 1.0 / self.controls["FrameRate"]
        return self.controls.get("FrameDurationLimits", FRAME_DURATION_LIMITS)[0] / 1e6

    def start(self, config: dict[str, Any] | None = None, show_preview: Any = False) -> None:
        if config is not None:  # start() configures first when given a configuration (picamera2.py:1326-1351)
            self.configure(config)
        if self.started:  # start_ (picamera2.py:1299-1324)
            return
        main_format = (self.camera_config or {}).get("main", {}).get("format")
        if self.info.get("Model") == VIMC_MODEL and main_format == "RGB888":
            # Listed, but libcamera asks vimc's debayer for MEDIA_BUS_FMT_BGR888_1X24 and Linux 6.x's always gives
            # RGB888_1X24 (vimc-debayer.c, vimc_debayer_set_fmt): link validation fails the stream-on with EPIPE
            # (vimc-common.c, vimc_vdev_link_validate), as the system stage saw with libcamera 0.4 on Linux 6.12.
            raise RuntimeError("Failed to start camera: Broken pipe")
        if self.imx500 is not None:
            try:  # camera.start(): the sensor's stream-on uploads a new network first, and may fail
                self.imx500.stream_on()
            except OSError as error:  # py_main.cpp:181-186: std::system_error -> RuntimeError
                raise RuntimeError(f"Failed to start camera: {os.strerror(error.errno)}") from None
        self.started = True
        self.frames_since_start = 0

    def crop(self, stream: str) -> tuple[int, int, int, int]:
        """The part of the sensor the ISP scales into `stream`."""
        assert self.camera_config is not None
        if self.platform is Platform.PISP and self.version >= (0, 3, 23):
            main_crop, lores_crop, full = self.camera_controls["ScalerCrops"]
            if stream == "lores":
                return lores_crop if self.camera_config["lores"]["preserve_ar"] else main_crop
            return main_crop if self.camera_config["main"]["preserve_ar"] else full
        crop = self.controls.get("ScalerCrop", self.sensor())
        return MIN_CROP if crop[2] == 0 or crop[3] == 0 else crop

    def capture_request(self, wait: float | bool | None = None, signal_function: Any = None,
                        flush: Any = None) -> CompletedRequest:
        """picamera2.py:1855-1865. The stand-in's frames are always fresh, so flush has nothing to skip; no Job
        (wait=False or a signal_function) either."""
        if wait is False or signal_function is not None:
            raise NotImplementedError("stand-in: capture_request returns no Job")
        self.next_frame(None if wait is True else wait)
        self.held += 1
        return CompletedRequest(self, Frame(self))

    def next_frame(self, wait: float | None) -> None:
        """Waits for the next frame as the stand-in's timing has it, or raises TimeoutError."""
        stall_after = settings().get("stall_after")
        assert self.camera_config is not None or not self.started
        buffers = (self.camera_config or {}).get("buffer_count", 6)
        stalled = stall_after is not None and self.frames >= stall_after
        if not self.started or stalled or self.unplugged() or self.held >= buffers:
            if wait is None:  # upstream waits for ever
                threading.Event().wait()
            time.sleep(wait)
            raise TimeoutError()
        if wait is not None and wait < self.frame_interval_s() * (1 + (STARTUP_FRAMES if self.frames == 0 else 0)):
            raise TimeoutError()  # the frame would come later than that
        self.frames += 1
        self.frames_since_start += 1

    def capture_array(self, name: str = "main", wait: float | None = None) -> np.ndarray:
        request = self.capture_request(wait=wait)
        try:
            return request.make_array(name)
        finally:
            request.release()

    def image(self, stream: dict[str, Any], crop: tuple[int, int, int, int]) -> np.ndarray:
        """The array `stream` gets when the ISP scales `crop` of the sensor into it."""
        width, height = stream["size"]
        left, top, sensor_width, sensor_height = self.sensor()
        pixels = stretched(left + sensor_width, top + sensor_height)
        x, y, w, h = crop
        image = cv2.resize(pixels[y:y + h, x:x + w], (width, height), interpolation=cv2.INTER_AREA)
        stride = stream["stride"]
        if stream["format"] in CHANNELS:
            order = CHANNELS[stream["format"]]
            padded = np.zeros((height, stride // len(order), len(order)), np.uint8)
            padded[:, :width, :3] = image[:, :, ["BGR".index(channel) for channel in order[:3]]]
            return padded
        i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)  # Y rows, then U, then V, each packed
        out = np.zeros((height * 3 // 2, stride), np.uint8)
        out[:height, :width] = i420[:height]
        chroma = i420[height:].reshape(2, height // 2, width // 2)
        for plane, start in zip(chroma, (height, height + height // 4), strict=True):
            padded = np.zeros((height // 2, stride // 2), np.uint8)
            padded[:, : width // 2] = plane
            out[start:start + height // 4] = padded.reshape(height // 4, stride)
        return out

    def unplugged(self) -> bool:
        after = settings().get("unplugged_after")
        return after is not None and self.frames >= after

    def stop(self) -> None:
        if self.started and self.unplugged():
            # The camera's device is gone with requests still queued to it, which it never returns: libcamera 0.4's
            # PipelineHandler::stop asserts there are none (pipeline_handler.cpp:375), and its failed ASSERT logs
            # FATAL and aborts (base/log.cpp). Seen in the system stage with vimc unbound mid-run.
            os.write(2, b'[0:00:10.000000000] [1] FATAL default pipeline_handler.cpp:375 assertion '
                        b'"data->queuedRequests_.empty()" failed in stop()\n')
            os.abort()
        if self.started:
            self.stop_count += 1
        self.started = False
        if self.imx500 is not None:
            self.imx500.stream_off()

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        self.closed = True
        if settings().get("log"):
            with open(settings()["log"], "a") as log:
                lores = self.camera_config["lores"] if self.camera_config else None
                log.write(json.dumps({"controls": {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in self.controls.items()},
                                      "lores": list(lores["size"]) if lores else None, "aligned": self.aligned,
                                      "allocator": type(self.allocator).__name__}) + "\n")
        # The camera is released (:717); then upstream makes a DmaAllocator again (:731-733), which raises
        # without a DMA heap.
        self.allocator = DmaAllocator()

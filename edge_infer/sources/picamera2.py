"""Raspberry Pi CSI cameras through Picamera2 (libcamera).

The ISP scales in hardware: we ask it for a second, low-resolution ("lores") stream at the model's
input size, so the CPU never resizes a full frame. Picamera2 comes from apt (python3-picamera2),
not PyPI, and is imported only when this source is opened.

Written against raspberrypi/picamera2 at 3e6dff0 (0.3.36) and raspberrypi/libcamera at 26bfadc;
the upstream lines each step relies on are cited where it happens. Not run on a Pi here: the tests
use a stand-in module that mirrors those lines (tests/fake_picamera2).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from ..errors import SourceError
from ..values import Frame, center_window
from .base import BufferPool, SourceHints

log = logging.getLogger(__name__)

INSTALL_HINT = ("install it with 'sudo apt install python3-picamera2' and create the venv with "
                "'python3 -m venv --system-site-packages' so the apt package is visible")
# Importing picamera2 imports simplejpeg, built against apt's numpy (picamera2/request.py:10-15); a
# numpy 2 from pip in the venv breaks it (raspberrypi/picamera2#1088, #1211).
NUMPY_HINT = ("the venv's numpy is not the one apt's python3-picamera2 was built against: "
              "pip install 'numpy==<the version of apt's python3-numpy>' in the venv (deploy.sh does this)")
# picamera2's DmaAllocator opens the first of these that exists (picamera2/dma_heap.py:9, DmaHeap.__init__).
DMA_HEAPS = ("/dev/dma_heap/vidbuf_cached", "/dev/dma_heap/linux,cma")
BUSY_HINT = "camera in use by another process (rpicam-*, libcamera-*, another edge-infer?)"
CAPTURE_TIMEOUT_S = 5.0  # a camera that sends no frame for this long beyond its frame intervals has stopped
# After a start, libcamera's Pi IPA marks frames as startup frames while AGC and AWB converge: the larger of
# AGC's convergence_frames (6 by default) and AWB's (3), each plus the one frame most sensors' helpers mistrust
# (libcamera src/ipa/rpi/common/ipa_base.cpp, IpaBase::start; rpi/agc_channel.cpp, rpi/awb.cpp;
# cam_helper/cam_helper.cpp, mistrustFramesStartup), and Picamera2 drops them (picamera2.py:1417-1421,
# process_requests), so the first frame comes that many intervals later than the next ones.
STARTUP_FRAMES = 7
# The main-stream formats this source reads, and OpenCV's conversion of each to B, G, R (None: it is that already).
# Picamera2 names formats as libcamera and DRM do, from the most significant byte of a little-endian word: RGB888 is
# B, G, R in memory, XBGR8888 R, G, B, X (picamera2/request.py:350, the PIL mode of each; :303-311 shape them).
MAIN_TO_BGR = {"RGB888": None, "BGR888": cv2.COLOR_RGB2BGR, "XRGB8888": cv2.COLOR_BGRA2BGR,
               "XBGR8888": cv2.COLOR_RGBA2BGR}
SILENT_FRAMES = 300  # of the AI Camera's, without its network's outputs, before saying so (10 s at 30 fps)


@dataclass(frozen=True)
class Picamera2Config:
    camera: int = field(default=0, metadata={"min": 0})  # index among the Pi (CSI) cameras libcamera lists
    width: int = field(default=640, metadata={"min": 64})  # main stream; the lores stream must fit inside it
    height: int = field(default=480, metadata={"min": 64})
    fps: float | None = field(default=None, metadata={"min": 0.1})
    hflip: bool = False
    vflip: bool = False
    # auto: continuous autofocus on a camera that has it (Camera Module 3); a number: focus fixed at that many
    # metres. A camera without autofocus ignores it.
    focus: Literal["auto"] | float = field(default="auto", metadata={"min": 0.01})


def capture_timeout_s(fps: float | None, first: bool) -> float:
    """How long to wait for a frame: CAPTURE_TIMEOUT_S beyond three frame intervals at the configured rate (at
    0.1 fps a frame comes every 10 s), and beyond the startup frames Picamera2 drops, for the first one."""
    if not fps:  # the video configuration's 30 fps (FrameDurationLimits 33333 us, picamera2.py:917-921)
        return CAPTURE_TIMEOUT_S
    return CAPTURE_TIMEOUT_S + (3 + (STARTUP_FRAMES if first else 0)) / fps


def focus_controls(available: Mapping[str, Any], focus: str | float, libcamera: Any) -> dict[str, Any]:
    """The autofocus controls for `focus`, where the camera offers them (AfMode in camera_controls); else none.

    libcamera's Pi AF algorithm starts in manual mode (src/ipa/rpi/controller/rpi/af.cpp, Af::Af: mode_
    AfModeManual) with the lens at the tuning file's default position (IpaBase::start, getDefaultLensPosition:
    1 dioptre, i.e. 1 m, for the IMX708), so without this a Camera Module 3 never focuses. libcamera declares the
    AF controls only for a sensor with a lens (ipa_base.cpp, ipaAfControls, lensPresent_), and Picamera2 refuses
    a control the camera does not advertise (picamera2/controls.py, Controls.__setattr__). LensPosition is in
    dioptres, 1 / metres (control_ids_core.yaml), and obeyed only in manual mode; libcamera clamps it to the
    lens's range (af.cpp, Af::setLensPosition).
    """
    if "AfMode" not in available:
        return {}
    modes = libcamera.controls.AfModeEnum  # as picamera2's own examples set it (tests/autofocus_test.py)
    if focus == "auto":
        return {"AfMode": modes.Continuous}
    return {"AfMode": modes.Manual, "LensPosition": 1.0 / float(focus)}


def import_picamera2() -> tuple[Any, Any]:
    """(Picamera2, libcamera). Any import failure (not only ImportError) is a SourceError saying how to fix it."""
    try:
        import libcamera  # type: ignore[import-not-found]
        from picamera2 import Picamera2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SourceError(f"picamera2 is not available ({exc}): {INSTALL_HINT}") from exc
    except Exception as exc:  # e.g. ValueError: numpy.dtype size changed, from an extension built on numpy 1
        hint = NUMPY_HINT if "numpy" in str(exc) else INSTALL_HINT
        raise SourceError(f"picamera2 cannot be imported ({type(exc).__name__}: {exc}): {hint}") from exc
    return Picamera2, libcamera


def csi_cameras(cameras: list[dict[str, Any]]) -> list[int]:
    """Positions in global_camera_info() of the Pi cameras: libcamera lists USB (UVC) webcams too, with
    "/usb" in their Id (picamera2/picamera2.py:312 sorts them last); those are the opencv source's."""
    return [i for i, camera in enumerate(cameras) if "/usb" not in str(camera.get("Id", ""))]


def describe_open_failure(exc: BaseException) -> str:
    """Picamera2's "Camera __init__ sequence did not complete." hides the cause in its chain
    (picamera2/picamera2.py:367-368); acquire() fails with EBUSY when another process has the camera
    (libcamera src/py/libcamera/py_main.cpp:153-158, src/libcamera/camera.cpp:1007-1029)."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for link in chain:
        if getattr(link, "errno", None) == errno.EBUSY or "busy" in str(link).lower():
            return BUSY_HINT
    return "; ".join(str(link) for link in chain if str(link)) or type(exc).__name__


def centred_crop(limits: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """The ScalerCrop for crop: center: the largest window of the sensor's crop limits with the model's
    aspect ratio, centred, offset by where those limits start (their x and y)."""
    x, y, limit_width, limit_height = limits
    window = center_window(limit_width, limit_height, width, height)
    return x + window.x, y + window.y, window.width, window.height


class Picamera2Source:
    live = True

    def __init__(self, config: Picamera2Config, hints: SourceHints) -> None:
        picamera2_class, libcamera = import_picamera2()
        cameras = picamera2_class.global_camera_info()
        self._network = hints.network  # the AI Camera's: the sensor classifies, each request brings its outputs
        index, number = self._find(cameras, config.camera)
        self.skipped = 0
        self._seq = 0
        self._fps = config.fps or (self._network.inference_rate if self._network is not None else None)
        self._pool = BufferPool()
        self._silent = 0  # frames in a row without the network's outputs
        self._to_bgr: int | None = None  # OpenCV's conversion of the stream read to B, G, R, once configured
        self.description = f"picamera2 camera {number} ({cameras[index].get('Model', '?')})"
        if self._network is not None:  # the network goes to the sensor before Picamera2 opens it (imx500.py)
            try:
                self._network.hand_over()
            except Exception as exc:  # IMX500's RuntimeError: the sensor is gone, or refuses the network
                raise SourceError(f"the AI Camera cannot take its network again: {exc}") from exc
        try:
            camera, libcamera_buffers = open_camera(picamera2_class, index)
        except Exception as exc:
            raise SourceError(f"cannot open Pi camera {number}: {describe_open_failure(exc)}") from exc
        if libcamera_buffers:
            log.info("%s: no DMA heap (/dev/dma_heap): frame buffers from libcamera's allocator instead",
                     self.description)
        # letterbox needs the whole field of view: the main stream, scaled and padded by the CPU.
        # center and stretch let the ISP scale to the model's size on the lores stream, where the camera has a
        # second stream (a Pi camera's ISP does; vimc and a USB camera libcamera drives offer one: libcamera's
        # pipeline/vimc/vimc.cpp, generateConfiguration and validate, and uvcvideo's likewise). The AI Camera's
        # network crops and scales on the sensor: its frames are only to be seen, or for regions with CPU models of
        # their own.
        self._one_stream = len(getattr(camera.camera, "streams", ())) < 2  # Camera.streams (libcamera py_main.cpp)
        self._stream = ("main" if hints.crop == "letterbox" or self._network is not None or self._one_stream
                        else "lores")
        try:
            self._start(camera, libcamera, config, hints)
        except Exception as exc:  # libcamera raises RuntimeError/OSError/ValueError with its own text
            close_camera(camera, self.description)
            raise SourceError(f"cannot start Pi camera {number}: {describe_open_failure(exc)}") from exc
        self._camera = camera
        self._width, self._height = camera.camera_configuration()[self._stream]["size"]
        log.info("%s: %dx%d frames from its %s stream%s", self.description, self._width, self._height, self._stream,
                 " (its only one: cropped and scaled on the CPU)" if self._one_stream and self._network is None else "")

    def _find(self, cameras: list[dict[str, Any]], wanted: int) -> tuple[int, int | str]:
        """(Picamera2's index of the camera, its number as messages say it).

        Picamera2(n) opens the n-th camera of global_camera_info()'s sorted list (picamera2.py:344, camera_num =
        global_camera_info()[n]['Num']), while IMX500.camera_num is the libcamera 'Num' itself (imx500.py,
        IMX500.__init__): the demo's Picamera2(imx500.camera_num) opens another camera wherever the orders differ,
        so the AI Camera is found here by its Num."""
        if self._network is not None:
            num = self._network.camera_num
            index = next((i for i, camera in enumerate(cameras) if camera.get("Num") == num), None)
            if index is None:
                raise SourceError(f"libcamera does not list the AI Camera (camera {num}) whose sensor took the "
                                  "network: check 'rpicam-hello --list-cameras'")
            return index, f"{num}, the AI Camera"
        pi_cameras = csi_cameras(cameras)
        if wanted >= len(pi_cameras):
            webcams = len(cameras) - len(pi_cameras)
            extra = f" and {webcams} USB webcam(s), which the opencv source reads" if webcams else ""
            raise SourceError(f"no Pi camera {wanted}: libcamera lists {len(pi_cameras)} Pi camera(s){extra} "
                              "(check the ribbon cable and 'rpicam-hello --list-cameras')")
        return pi_cameras[wanted], wanted

    def _start(self, camera: Any, libcamera: Any, config: Picamera2Config, hints: SourceHints) -> None:
        controls: dict[str, Any] = {}
        if self._fps and "FrameDurationLimits" in camera.camera_controls:  # FrameRate sets it (controls.py:18)
            controls["FrameRate"] = self._fps
        elif self._fps:  # vimc has none (pipeline/vimc/vimc.cpp, its control list); Picamera2 would refuse it
            log.warning("%s has no frame rate control: fps: %g is ignored", self.description, self._fps)
        # camera_controls lists the camera's controls from the moment it is open (picamera2.py:541-543).
        focus = focus_controls(camera.camera_controls, config.focus, libcamera)
        if config.focus != "auto" and not focus:
            log.warning("%s has no focus control (AfMode): focus: %g is ignored", self.description, config.focus)
        controls.update(focus)
        # Even sizes, as the ISP needs; no align_configuration(): it rounds a YUV420 width down to a
        # multiple of 64 (VC4) or 128 (PiSP) (picamera2.py:1086-1099), so 224 would become 192 or 128.
        lores: dict[str, Any] | None = {"size": (hints.width - hints.width % 2, hints.height - hints.height % 2),
                                        "format": "YUV420"}
        if self._stream == "main":  # one stream, or the whole view scaled on the CPU
            lores = None
        elif hints.crop == "center" and camera.platform.name == "PISP":
            # Pi 5: picamera2 >= 0.3.23 sets one crop per stream (rpi::ScalerCrops) and ignores ScalerCrop;
            # preserve_ar gives lores a crop with its own aspect ratio, centred (picamera2.py:1274-1280,
            # libcamera pipeline/rpi/pisp/pisp.cpp:1573-1574).
            lores["preserve_ar"] = True
        main: dict[str, Any] = {"size": (config.width, config.height)}
        if not self._one_stream:  # RGB888 is B, G, R in memory: OpenCV's order, straight from a Pi's ISP
            main["format"] = "RGB888"
        # else the camera's own: Picamera2 asks XBGR8888 (picamera2.py:903), which libcamera keeps or adjusts to the
        # pipeline's choice, and reads back (:1137-1150). vimc lists RGB888 too but cannot stream it on Linux 6.x:
        # libcamera asks its debayer for MEDIA_BUS_FMT_BGR888_1X24 (pipeline/vimc/vimc.cpp, pixelformats), whose
        # source pad always gives RGB888_1X24 (vimc-debayer.c, vimc_debayer_set_fmt), and the start fails with EPIPE
        # (vimc-common.c, vimc_vdev_link_validate; seen in the system stage). It adjusts XBGR8888 to BGR888.

        def configuration() -> Any:
            return camera.create_video_configuration(
                main=main,
                lores=lores,
                # The I420 -> BGR conversion below is BT.601's; without this, main streams of 1280x720 and
                # up get Rec709 (picamera2.py:911-916), and lores shares main's colour space.
                colour_space=libcamera.ColorSpace.Smpte170m(),
                transform=libcamera.Transform(hflip=config.hflip, vflip=config.vflip),
                # The AI Camera's demo keeps 12 requests in flight (examples/imx500/imx500_classification_demo.py).
                buffer_count=3 if self._network is None else 12, controls=controls)

        try:
            video = configuration()
        except ValueError:  # "Bad key": picamera2 < 0.3.23 has no preserve_ar, and obeys ScalerCrop instead
            if lores is None or not lores.pop("preserve_ar", False):
                raise
            video = configuration()
        camera.configure(video)
        main_format = camera.camera_configuration()["main"]["format"]
        if main_format not in MAIN_TO_BGR:
            raise ValueError(f"it gives {main_format} frames, which this source cannot read; "
                             "read it through OpenCV instead (source: opencv)")
        # lores is I420 with rows padded to the stride, shaped (height * 3 / 2, stride) (picamera2/request.py:319-324)
        self._to_bgr = cv2.COLOR_YUV420p2BGR if self._stream == "lores" else MAIN_TO_BGR[main_format]
        if (hints.crop == "center" and lores is not None and "preserve_ar" not in lores
                and "ScalerCrop" in camera.camera_controls):
            # The ScalerCrop limits are known only once a sensor mode is chosen, i.e. after configure():
            # ScalerCropMaximum is a zero rectangle before (libcamera pipeline_base.cpp:864-868), and a
            # zero crop is the smallest crop at the sensor's top-left corner. camera_controls is re-read
            # after configure (picamera2.py:1226-1230): ScalerCrop is (min, max, default).
            limits = camera.camera_controls["ScalerCrop"][1]
            camera.set_controls({"ScalerCrop": centred_crop(limits, hints.width, hints.height)})
        if self._network is None:
            camera.start()
            return
        window = self._network.aim(hints.box, hints.crop, (config.width, config.height))
        log.info("%s: the network looks at %s of the sensor (full-sensor pixels x, y, width, height)",
                 self.description, window)
        with self._network.uploading(hints.extend_start):  # streaming starts once the firmware is on the sensor
            camera.start()

    def read(self) -> Frame | None:
        if self._network is not None:
            return self._read_classified()
        try:
            # A number is a timeout in seconds (picamera2.py:1508-1537, since 0.3.20); without it a camera
            # that stops sending frames blocks here for ever.
            timeout = capture_timeout_s(self._fps, first=self._seq == 0)
            image = self._camera.capture_array(self._stream, wait=timeout)
        except TimeoutError as exc:
            raise SourceError(f"{self.description} stopped delivering frames (none in {timeout:g} s)") from exc
        except Exception as exc:
            raise SourceError(f"{self.description} stopped delivering frames: {exc}") from exc
        self._seq += 1
        if self._to_bgr is None:
            return Frame(seq=self._seq, image=image[:, : self._width, :3], ts=time.time())
        buffer = self._pool.take()
        if buffer is None or buffer.shape[:2] != (self._height, image.shape[1]):
            buffer = np.empty((self._height, image.shape[1], 3), np.uint8)
        cv2.cvtColor(image, self._to_bgr, dst=buffer)
        pool = self._pool
        # The view drops the padding columns.
        return Frame(seq=self._seq, image=buffer[:, : self._width], ts=time.time(),
                     release=lambda: pool.give_back(buffer))

    def _read_classified(self) -> Frame:
        """The AI Camera: the picture and, in the same request's metadata, what the sensor's network said about it
        (picamera2's capture_request, then the demo's get_outputs on request.get_metadata())."""
        timeout = capture_timeout_s(self._fps, first=self._seq == 0)
        try:
            request = self._camera.capture_request(wait=timeout)
        except TimeoutError as exc:
            raise SourceError(f"{self.description} stopped delivering frames (none in {timeout:g} s)") from exc
        except Exception as exc:
            raise SourceError(f"{self.description} stopped delivering frames: {exc}") from exc
        try:  # the request goes back to the camera whatever happens: it holds one of its buffers
            image = request.make_array("main")
            sensor = self._network.read(request.get_metadata())
        except Exception as exc:
            raise SourceError(f"{self.description} delivered a frame that cannot be read: {exc}") from exc
        finally:
            request.release()
        self._seq += 1
        self._silent = 0 if sensor is not None else self._silent + 1
        if self._silent == SILENT_FRAMES:
            log.warning("%s: the network on its sensor has given no output for %d frames; the pictures come, the "
                        "results do not (a network that is not a classifier, or firmware that did not load: restart, "
                        "and see 'edge-infer doctor')", self.description, SILENT_FRAMES)
        return Frame(seq=self._seq, image=image[:, : self._width, :3], ts=time.time(), sensor=sensor)

    def retarget(self, hints: SourceHints) -> bool:
        """The main stream is model-independent, and a lores stream serves any input no larger than itself;
        a larger input needs the camera configured again: opened again."""
        return self._stream == "main" or (hints.width <= self._width and hints.height <= self._height)

    def close(self) -> None:
        close_camera(self._camera, self.description)


def open_camera(picamera2_class: Any, index: int) -> tuple[Any, bool]:
    """(Picamera2(index), whether its frame buffers are libcamera's): libcamera's where the kernel has no DMA heap.

    Picamera2 allocates from a DMA heap unless given an allocator (picamera2.py:376, DmaAllocator), and raises
    "Could not open any dmaHeap device" without one (dma_heap.py:71-82): Raspberry Pi OS's kernels have them,
    Debian's do not (CONFIG_DMABUF_HEAPS unset). LibcameraAllocator needs the open camera, so Picamera2 gets a
    placeholder first and the real one once the camera is acquired, as upstream's tests/allocator_test.py does
    (the buffers are allocated at configure, libcameraallocator.py:20-21)."""
    if any(os.path.exists(heap) for heap in DMA_HEAPS):
        return picamera2_class(index), False
    from picamera2.allocators import LibcameraAllocator  # type: ignore[import-not-found]

    camera = picamera2_class(index, allocator=LibcameraAllocator(None))
    camera.allocator = LibcameraAllocator(camera.camera)
    return camera, True


def close_camera(camera: Any, description: str) -> None:
    """Stop and close; safe twice (picamera2.py:704-734). Closing must not hide the first error, nor fail: without a
    DMA heap Picamera2's close ends by making a DmaAllocator again (:731-733), which raises after the camera is
    released."""
    try:
        camera.close()
    except Exception as exc:
        log.debug("closing %s: %s", description, exc)


def open_picamera2(config: Picamera2Config, hints: SourceHints) -> Picamera2Source:
    return Picamera2Source(config, hints)

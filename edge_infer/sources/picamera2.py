"""Raspberry Pi CSI cameras through Picamera2 (libcamera).

The ISP scales in hardware: we ask it for a second, low-resolution ("lores") stream at the model's
input size, so the CPU never resizes a full frame. Picamera2 comes from apt (python3-picamera2),
not PyPI, and is imported only when this source is opened.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import cv2

from ..errors import SourceError
from ..pipeline.preprocess import center_window
from ..values import Frame
from .base import SourceHints

log = logging.getLogger(__name__)

INSTALL_HINT = ("install it with 'sudo apt install python3-picamera2' and create the venv with "
                "'python3 -m venv --system-site-packages' so the apt package is visible")


@dataclass(frozen=True)
class Picamera2Config:
    camera: int = field(default=0, metadata={"min": 0})  # index in Picamera2.global_camera_info()
    width: int = field(default=640, metadata={"min": 64})  # main stream; the lores stream must fit inside it
    height: int = field(default=480, metadata={"min": 64})
    fps: float | None = field(default=None, metadata={"min": 0.1})
    hflip: bool = False
    vflip: bool = False


def import_picamera2() -> Any:
    try:
        from picamera2 import Picamera2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SourceError(f"picamera2 is not available ({exc}): {INSTALL_HINT}") from exc
    return Picamera2


class Picamera2Source:
    live = True

    def __init__(self, config: Picamera2Config, hints: SourceHints) -> None:
        picamera2_class = import_picamera2()
        cameras = picamera2_class.global_camera_info()
        if config.camera >= len(cameras):
            raise SourceError(f"no Pi camera {config.camera}: libcamera lists {len(cameras)} "
                              "(check the ribbon cable and 'rpicam-hello --list-cameras')")
        self.skipped = 0
        self._seq = 0
        self._size = (hints.width, hints.height)
        self.description = f"picamera2 camera {config.camera} ({cameras[config.camera].get('Model', '?')})"
        try:
            from libcamera import Transform  # type: ignore[import-not-found]

            camera = picamera2_class(config.camera)
            controls: dict[str, Any] = {}
            if config.fps:
                controls["FrameRate"] = config.fps
            if hints.crop == "center":
                # Crop on the sensor to the model's aspect ratio, so the ISP's scaling does not stretch.
                _, _, sensor_w, sensor_h = camera.camera_properties["ScalerCropMaximum"]
                window = center_window(sensor_w, sensor_h, hints.width, hints.height)
                controls["ScalerCrop"] = (window.x, window.y, window.width, window.height)
            # YUV420 is the lores format every Pi supports (Pi 4's ISP cannot give RGB there).
            video = camera.create_video_configuration(
                main={"size": (config.width, config.height), "format": "RGB888"},
                lores={"size": self._size, "format": "YUV420"},
                transform=Transform(hflip=config.hflip, vflip=config.vflip),
                buffer_count=3, controls=controls)
            camera.align_configuration(video)
            camera.configure(video)
            camera.start()
        except Exception as exc:  # libcamera raises RuntimeError/OSError with its own text
            raise SourceError(f"cannot start Pi camera {config.camera}: {exc}") from exc
        self._camera = camera
        self._lores_width = camera.camera_configuration()["lores"]["size"][0]

    def read(self) -> Frame | None:
        try:
            yuv = self._camera.capture_array("lores")
        except Exception as exc:
            raise SourceError(f"{self.description} stopped delivering frames: {exc}") from exc
        # The array is I420 with rows padded to the stride; convert, then drop the padding columns.
        image = cv2.cvtColor(yuv, cv2.COLOR_YUV420p2BGR)[:, : self._lores_width]
        self._seq += 1
        return Frame(seq=self._seq, image=image, ts=time.time())

    def close(self) -> None:
        try:
            self._camera.stop()
            self._camera.close()
        except Exception as exc:  # closing a camera that failed must not hide the first error
            log.debug("closing %s: %s", self.description, exc)


def open_picamera2(config: Picamera2Config, hints: SourceHints) -> Picamera2Source:
    return Picamera2Source(config, hints)

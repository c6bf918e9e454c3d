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
$FAKE_PICAMERA2 is JSON: cameras (list of {"Model", "Id"}), platform ("vc4" or "pisp"), version,
busy, stall_after (frames before the camera stops sending), import_error, log (a file where closing
appends the camera's state as one JSON line).
"""

from __future__ import annotations

import enum
import json
import os
import threading
import time
from typing import Any

import cv2
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


class Platform(enum.Enum):  # picamera2/platform.py:8-12
    VC4 = 0
    PISP = 1


def sensor() -> tuple[int, int, int, int]:
    """The analogue crop of the sensor mode: (x, y, width, height); IMX477's 2028x1520 binned mode by default."""
    return tuple(settings().get("sensor", (0, 0, 2028, 1520)))  # type: ignore[return-value]


def centre(limits: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """What the ISP does for preserve_ar: the limits bounded to width:height, centred (pisp.cpp:1573)."""
    x, y, w, h = limits
    if w * height > width * h:
        kept = h * width // height
        return x + (w - kept) // 2, y, kept, h
    kept = w * height // width
    return x, y + (h - kept) // 2, w, kept


class Picamera2:
    platform = Platform.VC4

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        cameras = [{**camera, "Num": num} for num, camera in enumerate(settings().get("cameras", []))]
        return sorted(cameras, key=lambda cam: ("/usb" not in cam["Id"], cam["Id"]), reverse=True)

    def __init__(self, camera_num: int = 0) -> None:
        self.is_open = False
        self.started = False
        self.closed = False
        self.controls: dict[str, Any] = {}
        self.camera_config: dict[str, Any] | None = None
        self.aligned = False
        self.version = tuple(int(p) for p in settings().get("version", "0.3.36").split("."))
        self.platform = Platform.PISP if settings().get("platform") == "pisp" else Platform.VC4
        self.frames = 0
        self.info = self.global_camera_info()[camera_num]
        instances.append(self)
        try:
            if settings().get("busy"):
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
        except Exception as e:
            raise RuntimeError("Camera __init__ sequence did not complete.") from e
        self.is_open = True

    @property
    def camera_properties(self) -> dict[str, Any]:
        return {"Model": self.info.get("Model"),
                "ScalerCropMaximum": sensor() if self.camera_config else (0, 0, 0, 0)}

    @property
    def camera_controls(self) -> dict[str, Any]:
        controls: dict[str, Any] = {"FrameDurationLimits": FRAME_DURATION_LIMITS}
        if self.info.get("Model") in LENS_MODELS:
            controls.update(LENS_CONTROLS)
        if not self.camera_config:
            return {**controls, "ScalerCrop": ((0, 0, 0, 0), (65535, 65535, 65535, 65535), (0, 0, 0, 0))}
        controls["ScalerCrop"] = (MIN_CROP, sensor(), sensor())
        if self.platform is Platform.PISP and self.version >= (0, 3, 23):
            main, lores = self.camera_config["main"]["size"], self.camera_config["lores"]["size"]
            controls["ScalerCrops"] = (centre(sensor(), *main), centre(sensor(), *lores), sensor())
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
        if lores is not None and (lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]):
            raise RuntimeError("lores stream dimensions may not exceed main stream")
        for stream in (main, lores):
            if stream is not None:
                width = stream["size"][0]
                pixel_bytes = 1 if stream["format"].startswith("YUV") else 3
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

    def start(self) -> None:
        self.started = True

    def crop(self, stream: str) -> tuple[int, int, int, int]:
        """The part of the sensor the ISP scales into `stream`."""
        assert self.camera_config is not None
        if self.platform is Platform.PISP and self.version >= (0, 3, 23):
            main_crop, lores_crop, full = self.camera_controls["ScalerCrops"]
            if stream == "lores":
                return lores_crop if self.camera_config["lores"]["preserve_ar"] else main_crop
            return main_crop if self.camera_config["main"]["preserve_ar"] else full
        crop = self.controls.get("ScalerCrop", sensor())
        return MIN_CROP if crop[2] == 0 or crop[3] == 0 else crop

    def capture_array(self, name: str = "main", wait: float | None = None) -> np.ndarray:
        stall_after = settings().get("stall_after")
        if not self.started or (stall_after is not None and self.frames >= stall_after):
            if wait is None:  # upstream waits for ever
                threading.Event().wait()
            time.sleep(wait)
            raise TimeoutError()
        if wait is not None and wait < self.frame_interval_s() * (1 + (STARTUP_FRAMES if self.frames == 0 else 0)):
            raise TimeoutError()  # the frame would come later than that
        self.frames += 1
        assert self.camera_config is not None
        stream = self.camera_config[name]
        width, height = stream["size"]
        scene = cv2.imread(settings()["scene"])
        left, top, sensor_width, sensor_height = sensor()
        pixels = cv2.resize(scene, (left + sensor_width, top + sensor_height), interpolation=cv2.INTER_AREA)
        x, y, w, h = self.crop(name)
        image = cv2.resize(pixels[y:y + h, x:x + w], (width, height), interpolation=cv2.INTER_AREA)
        stride = stream["stride"]
        if stream["format"] == "RGB888":
            padded = np.zeros((height, stride // 3, 3), np.uint8)
            padded[:, :width] = image
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

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        self.closed = True
        if settings().get("log"):
            with open(settings()["log"], "a") as log:
                log.write(json.dumps({"controls": {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in self.controls.items()},
                                      "lores": list(self.camera_config["lores"]["size"]) if self.camera_config
                                      else None, "aligned": self.aligned}) + "\n")

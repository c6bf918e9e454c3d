"""Several cameras, each with named regions: the `cameras:` section of the configuration.

```yaml
cameras:
  porch:
    source: {type: opencv, device: "rtsp://192.168.1.20/stream1"}
    regions:
      door: {box: [0.55, 0.10, 0.30, 0.60]}   # x, y, width, height: fractions of the frame
      path: {box: [0.0, 0.5, 0.5, 0.5], model: mobilenet_v1_0.5_160_quant, top_k: 3}
  garden:
    source: {type: picamera2}                  # no regions: the whole frame
```

A region takes `box` and may override `model`, `top_k`, `threshold`, `smoothing`, `unknown_below` and
`preprocess.crop`; everything else comes from the top-level sections. A configuration with a plain
`source:` is one camera without a name (`cameras_of`), and its results carry no camera or region.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..schema import Origin, Path, build, describe_value, fail
from ..sources.registry import SourceSpec, build_source_spec
from ..values import Box
from .stages import MIN_REGION_PIXELS

if TYPE_CHECKING:
    from ..config import Config

# A camera's or region's name goes into MQTT topics, URLs, file names and Prometheus labels as it is.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
NAME_HELP = "1 to 32 letters, digits, - or _ (it goes into MQTT topics and URLs), starting with a letter or digit"
MAX_CAMERAS = 16
MAX_REGIONS = 16


@dataclass(frozen=True)
class RegionPreprocess:
    crop: Literal["center", "stretch", "letterbox"] | None = None  # None: preprocess.crop


def build_box(data: Any, origin: Origin, path: Path) -> Box:
    """[x, y, width, height] in fractions of the frame, inside it, with an area."""
    if not isinstance(data, list) or len(data) != 4:
        fail(origin, path, f"expected [x, y, width, height] in fractions of the frame (0 to 1), got "
                           f"{describe_value(data)}")
    for i, value in enumerate(data):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail(origin, path + (i,), f"expected a number from 0 to 1, got {describe_value(value)}")
    x, y, width, height = (float(v) for v in data)
    if min(x, y) < 0 or max(x, y) > 1:
        fail(origin, path, f"x and y must be fractions of the frame from 0 to 1, got {x:g}, {y:g}")
    if width <= 0 or height <= 0:
        fail(origin, path, f"width and height must be more than 0 (the region needs an area), got {width:g}, "
                           f"{height:g}")
    # A little slack for fractions written with few digits (0.33 + 0.67).
    if x + width > 1 + 1e-6 or y + height > 1 + 1e-6:
        fail(origin, path, f"the box reaches outside the frame (x + width = {x + width:g}, y + height = "
                           f"{y + height:g}; both must be at most 1)")
    return Box(x, y, min(width, 1 - x), min(height, 1 - y))


@dataclass(frozen=True)
class RegionConfig:
    box: Box = field(metadata={"build": build_box})
    name: str = ""  # its key under `regions:`
    model: str | None = field(default=None, metadata={"min_length": 1})  # None: model.path
    top_k: int | None = field(default=None, metadata={"min": 1, "max": 1000})  # None: postprocess.top_k
    threshold: float | None = field(default=None, metadata={"min": 0.0, "max": 1.0})
    smoothing: int | None = field(default=None, metadata={"min": 1, "max": 1000})
    unknown_below: float | None = field(default=None, metadata={"min": 0.0, "max": 1.0})
    preprocess: RegionPreprocess = RegionPreprocess()


@dataclass(frozen=True)
class CameraConfig:
    source: SourceSpec = field(metadata={"build": build_source_spec})
    name: str = ""  # its key under `cameras:`
    regions: tuple[RegionConfig, ...] = field(default=(), metadata={"build": lambda data, origin, path: build_named(
        RegionConfig, data, origin, path, "region", MAX_REGIONS)})


def frame_size(options: Any) -> tuple[int, int] | None:
    """The frame size a source's options ask for, where they say (Picamera2 always does; OpenCV may)."""
    width, height = getattr(options, "width", None), getattr(options, "height", None)
    return (width, height) if isinstance(width, int) and isinstance(height, int) else None


def build_named(cls: type, data: Any, origin: Origin, path: Path, what: str, most: int) -> tuple[Any, ...]:
    """A mapping of names to sections of `cls`; each built section gets its key as its `name`."""
    if not isinstance(data, dict) or not data:
        fail(origin, path, f"expected a mapping of {what} names to their settings, got "
                           f"{describe_value(data) if data != {} else 'none'}")
    if len(data) > most:
        fail(origin, path, f"at most {most} {what}s, got {len(data)}")
    built = []
    for name, section in data.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            fail(origin, path + (str(name),), f"{name!r} is not a usable {what} name: {NAME_HELP}")
        if isinstance(section, dict) and "name" in section:
            fail(origin, path + (name, "name"), f"unknown key; the {what}'s name is its key ({name})")
        built.append(dataclasses.replace(build(cls, section, origin, path + (name,)), name=name))
    return tuple(built)


def build_cameras(data: Any, origin: Origin, path: Path) -> tuple[CameraConfig, ...]:
    cameras: tuple[CameraConfig, ...] = build_named(CameraConfig, data, origin, path, "camera", MAX_CAMERAS)
    for camera in cameras:  # where the source says its frame size, a region too small for it is refused now
        size = frame_size(camera.source.options)
        for region in camera.regions if size is not None else ():
            _, _, width, height = region.box.pixels(*size)
            if min(width, height) < MIN_REGION_PIXELS:
                fail(origin, path + (camera.name, "regions", region.name, "box"),
                     f"{width}x{height} pixels at the camera's {size[0]}x{size[1]}: too small to classify (at "
                     f"least {MIN_REGION_PIXELS} pixels each way)")
    return cameras


def check_sensor_network(config: Config, origin: Origin) -> None:
    """With model.delegate: imx500 the configured model runs on one AI Camera's sensor, which classifies one window
    of each frame: every region that runs it (one without a model of its own) must be on that one camera, a
    picamera2 one, and there can be only one such region; a region's own model runs on the CPU, never an .rpk."""
    on_sensor: CameraConfig | None = None
    for camera in config.cameras:
        for region in camera.regions:
            if region.model is not None and region.model.endswith(".rpk"):
                fail(origin, ("cameras", camera.name, "regions", region.name, "model"),
                     "an AI Camera network (.rpk) runs only as model.path with model.delegate: imx500; a region's "
                     "own model runs on the CPU (a .tflite)")
    if config.model.delegate != "imx500":
        return
    for camera in cameras_of(config):
        where: Path = ("cameras", camera.name) if camera.name else ()
        sensor_regions = [region for region in regions_of(camera) if region.model is None]
        if not sensor_regions:
            continue
        if on_sensor is not None:
            fail(origin, where, f"runs model.path, which is on the AI Camera's sensor (model.delegate: imx500) as "
                                f"camera {on_sensor.name} does: only one camera has it; give this camera's regions a "
                                "model of their own")
        on_sensor = camera
        if camera.source.type not in ("picamera2", "auto"):
            fail(origin, (*where, "source", "type"), f"the AI Camera's network (model.delegate: imx500) needs the "
                                                     f"picamera2 source, not {camera.source.type}")
        if len(sensor_regions) > 1:
            fail(origin, (*where, "regions", sensor_regions[1].name),
                 f"the AI Camera's sensor classifies one window per frame, and region {sensor_regions[0].name} has it: "
                 "give this region a model of its own (it runs on the CPU)")


def cameras_of(config: Config) -> tuple[CameraConfig, ...]:
    """The configured cameras; a plain `source:` is one camera with no name and no regions."""
    return config.cameras or (CameraConfig(config.source),)


def regions_of(camera: CameraConfig) -> tuple[RegionConfig, ...]:
    """A camera's regions; a camera without any classifies its whole frame as one region with no name."""
    return camera.regions or (RegionConfig(Box.WHOLE),)

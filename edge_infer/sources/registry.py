"""Frame sources keyed by the config's `source.type`, and what `--source` means."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..schema import Origin, Path, build, describe_value, fail
from .auto import AutoConfig, open_auto
from .base import Source, SourceHints
from .images import IMAGE_SUFFIXES, ImagesConfig, open_images
from .opencv import URL_PATTERN, OpenCVConfig, open_opencv
from .picamera2 import Picamera2Config, open_picamera2


@dataclass(frozen=True)
class SourceType:
    config: type
    open: Callable[[Any, SourceHints], Source]


SOURCE_TYPES: dict[str, SourceType] = {
    "auto": SourceType(AutoConfig, open_auto),
    "picamera2": SourceType(Picamera2Config, open_picamera2),
    "opencv": SourceType(OpenCVConfig, open_opencv),
    "images": SourceType(ImagesConfig, open_images),
}


@dataclass(frozen=True)
class SourceSpec:
    type: str
    options: Any  # the backend's own frozen config, an instance of SOURCE_TYPES[type].config


def build_source_spec(data: Any, origin: Origin, path: Path) -> SourceSpec:
    """Validate a `source:` mapping against the config class of the backend its `type` names."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail(origin, path, "expected a mapping with a 'type' key")
    kind = data.get("type", "auto")
    if not isinstance(kind, str) or kind not in SOURCE_TYPES:
        named = repr(kind) if isinstance(kind, str) else describe_value(kind)
        fail(origin, path + ("type",), f"unknown source type {named}; expected one of {', '.join(SOURCE_TYPES)}")
    options = {k: v for k, v in data.items() if k != "type"}
    return SourceSpec(kind, build(SOURCE_TYPES[kind].config, options, origin, path))


def open_source(spec: SourceSpec, hints: SourceHints) -> Source:
    return SOURCE_TYPES[spec.type].open(spec.options, hints)


def source_from_argument(argument: str) -> dict[str, Any]:
    """What `--source` means: auto, picamera2, a camera, a URL, or a path told apart by what it is."""
    if argument in ("auto", "picamera2"):
        return {"type": argument}
    if argument.isdigit():
        return {"type": "opencv", "device": int(argument)}
    if re.match(r"^/dev/video\d+$", argument) or URL_PATTERN.match(argument):
        return {"type": "opencv", "device": argument}
    path = os.path.expanduser(argument)
    if os.path.isdir(path) or glob.has_magic(argument):
        return {"type": "images", "path": argument}
    if os.path.isfile(path):
        if os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES:
            return {"type": "images", "path": argument}
        return {"type": "opencv", "device": argument}
    raise ConfigError(f"--source: '{argument}' is not auto, picamera2, a camera index, /dev/videoN, a URL, "
                      "or an existing image, directory, glob or video file")

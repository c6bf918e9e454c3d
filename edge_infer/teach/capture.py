"""`edge-infer teach capture`: samples of a class from a configured camera, each the region's crop at full size.

The crop is saved as the camera delivers it, not scaled: `teach train` scales it through the same
preprocessing the run uses, for whichever base model it is taught on.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2

from ..config import Config
from ..errors import ConfigError
from ..pipeline.cameras import cameras_of, regions_of
from ..sources.base import SourceHints
from ..sources.registry import open_source
from ..values import Box

log = logging.getLogger(__name__)

# A class is a folder's name and a label in MQTT payloads and on the page: plain words.
CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,63}")
JPEG_QUALITY = 95
FULL_FRAME = SourceHints(224, 224, "letterbox")  # letterbox: Picamera2 delivers its main stream, uncropped


@dataclass(frozen=True)
class CaptureRequest:
    dataset: str
    label: str
    count: int = 20
    interval_s: float = 0.5  # between two samples: moments, not copies of one frame
    camera: str | None = None
    region: str | None = None


def where(config: Config, camera: str | None, region: str | None) -> tuple[object, Box]:
    """The camera's source spec and the region's box, named as in the config."""
    cameras = cameras_of(config)
    if camera is None:
        if len(cameras) > 1:
            names = ", ".join(c.name for c in cameras)
            raise ConfigError(f"--camera: the config has {len(cameras)} cameras ({names}): say which")
        chosen = cameras[0]
    else:
        named = [c for c in cameras if c.name == camera]
        if not named:
            raise ConfigError(f"--camera: no camera {camera!r} in the config (it has "
                              f"{', '.join(c.name for c in cameras if c.name) or 'one source: no names'})")
        chosen = named[0]
    regions = {r.name: r for r in regions_of(chosen)}
    if region is None:
        return chosen.source, Box.WHOLE
    if region not in regions:
        raise ConfigError(f"--region: camera {chosen.name or 'source'} has no region {region!r} "
                          f"(it has {', '.join(n for n in regions if n) or 'none'})")
    return chosen.source, regions[region].box


def capture(request: CaptureRequest, config: Config, stop: threading.Event,
            saved: Callable[[Path], None] = lambda _path: None,
            clock: Callable[[], float] = time.monotonic) -> list[Path]:
    """Save `count` crops, one every `interval_s`, until done, the source ends, or `stop` is set."""
    if not CLASS_NAME.fullmatch(request.label):
        raise ConfigError(f"--class: {request.label!r} is not a class name: 1 to 64 letters, digits, spaces, - or _")
    spec, box = where(config, request.camera, request.region)
    folder = Path(request.dataset).expanduser() / request.label
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {folder}: {exc.strerror}") from exc
    source = open_source(spec, FULL_FRAME)  # type: ignore[arg-type]
    written: list[Path] = []
    next_at = float("-inf")
    try:
        while len(written) < request.count and not stop.is_set():
            frame = source.read()
            if frame is None:
                break
            try:
                if clock() < next_at:
                    continue
                next_at = clock() + request.interval_s
                height, width = frame.image.shape[:2]
                x, y, w, h = box.pixels(width, height)
                path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{frame.seq:06d}.jpg"
                partial = path.with_name(f".{path.stem}.part.jpg")  # hidden until whole: datasets skip dot files
                if not cv2.imwrite(str(partial), frame.image[y: y + h, x: x + w], [cv2.IMWRITE_JPEG_QUALITY,
                                                                                    JPEG_QUALITY]):
                    raise ConfigError(f"cannot write {path}")
                os.replace(partial, path)  # a sample appears whole or not at all
                written.append(path)
                saved(path)
            finally:
                frame.release()
    finally:
        source.close()
    return written

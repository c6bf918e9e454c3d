"""`auto`: the Pi camera if there is one, else the first V4L2 camera that delivers a frame."""

from __future__ import annotations

import glob
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from .base import Source, SourceHints
from .opencv import OpenCVConfig, OpenCVSource
from .picamera2 import Picamera2Config, Picamera2Source

log = logging.getLogger(__name__)

# Video nodes of the Pi's codecs, ISP and CSI receivers: not cameras to open with V4L2, and slow to probe.
# unicam-image / unicam-embedded (Pi 4) and rp1-cfe (Pi 5) carry a CSI sensor's raw Bayer data, which
# libcamera (the picamera2 source) turns into pictures.
NOT_CAMERAS = re.compile(r"bcm2835-(codec|isp)|rpivid|pispbe|rp1-cfe|unicam|hevc", re.IGNORECASE)


@dataclass(frozen=True)
class AutoConfig:
    pass


def v4l2_devices(dev: str = "/dev", sysfs: str = "/sys/class/video4linux") -> list[str]:
    """Candidate capture devices, lowest number first, skipping the Pi's codec and ISP nodes."""
    found = []
    for node in sorted(glob.glob(f"{dev}/video*"), key=lambda p: int(re.sub(r"\D", "", Path(p).name) or 0)):
        name_file = Path(sysfs) / Path(node).name / "name"
        name = name_file.read_text().strip() if name_file.exists() else ""
        if not NOT_CAMERAS.search(name):
            found.append(node)
    return found


def open_auto(config: AutoConfig, hints: SourceHints) -> Source:
    tried = []
    try:
        return Picamera2Source(Picamera2Config(), hints)
    except SourceError as exc:
        tried.append(f"picamera2 ({exc})")
    devices = v4l2_devices()
    for device in devices:
        try:
            source = OpenCVSource(OpenCVConfig(device=device))
        except SourceError as exc:
            tried.append(f"{device} ({exc})")
            continue
        try:  # a node that opens may still give no pictures (metadata nodes, a camera in use)
            probe = source.read()
        except SourceError as exc:
            probe = None
            tried.append(f"{device} ({exc})")
        if probe is None:
            source.close()
            continue
        probe.release()
        log.info("auto source: using %s", device)
        return source
    if not devices:
        tried.append("V4L2 cameras (no /dev/video* device)")
    raise SourceError("no camera found; tried " + "; ".join(tried)
                      + ". Pass --source with a camera, URL, video or image path")

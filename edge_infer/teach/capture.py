"""`edge-infer teach capture`: samples of a class from a configured camera, each the region's crop at full size.

The camera is opened by the run assembly like any run's (its reconnects, its errors), with only the chosen
camera in the configuration and `SampleWriter` as the run's one output: a frame watcher that copies the
region's crop on the capture thread at most every `interval_s`, and writes it on its own thread. The crop
is saved as the camera delivers it, not scaled: `teach train` scales it through the same preprocessing the
run uses, for whichever base model it is taught on.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from ..errors import ConfigError
from ..outputs.snapshots import encode_jpeg, write_atomically
from ..pipeline.cameras import cameras_of, regions_of
from ..values import Box, Classification, Frame

log = logging.getLogger(__name__)

# A class is a folder's name and a label in MQTT payloads and on the page: plain words.
CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,63}")
JPEG_QUALITY = 95
QUEUE_SIZE = 4  # crops waiting for the writer; a slow card skips frames rather than holding the camera


@dataclass(frozen=True)
class CaptureRequest:
    dataset: str
    label: str
    count: int = 20
    interval_s: float = 0.5  # between two samples: moments, not copies of one frame
    camera: str | None = None
    region: str | None = None


def capture_config(config: Config, camera: str | None, region: str | None) -> tuple[Config, Box]:
    """`config` with only the chosen camera (nothing else is opened), and the region's box."""
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
    if region is not None and region not in regions:
        raise ConfigError(f"--region: camera {chosen.name or 'source'} has no region {region!r} "
                          f"(it has {', '.join(n for n in regions if n) or 'none'})")
    only = dataclasses.replace(config, cameras=(chosen,)) if config.cameras else config
    return only, Box.WHOLE if region is None else regions[region].box


class SampleWriter:
    """The capture run's output: every `interval_s`, the box of a frame, until `count` are written."""

    name = "samples"

    def __init__(self, folder: Path, box: Box, count: int, interval_s: float, done: threading.Event,
                 saved: Callable[[Path], None] = lambda _path: None, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._folder = folder
        self._box = box
        self._interval_s = interval_s
        self._done = done
        self._saved = saved
        self._clock = clock
        self._queue: queue.Queue[tuple[np.ndarray, int] | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._wanted = count
        self._taken = 0
        self._next_at = float("-inf")
        self.written: list[Path] = []
        self._writer = threading.Thread(target=self._write, name="teach-capture", daemon=True)
        self._writer.start()

    def see_frame(self, frame: Frame, camera: str | None = None) -> None:
        """Capture thread: copy the box (only the box), never encode or wait here."""
        now = self._clock()
        if self._taken >= self._wanted or now < self._next_at or self._queue.full():
            return
        self._next_at = now + self._interval_s
        height, width = frame.image.shape[:2]
        x, y, w, h = self._box.pixels(width, height)
        self._queue.put((frame.image[y: y + h, x: x + w].copy(), frame.seq))
        self._taken += 1

    def publish(self, result: Classification) -> None:
        pass  # the run classifies its frames too; a sample is a picture, not a result

    def _write(self) -> None:
        while (item := self._queue.get()) is not None:
            crop, seq = item
            path = self._folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{seq:06d}.jpg"
            try:
                write_atomically(path, encode_jpeg(crop, JPEG_QUALITY))
            except (OSError, RuntimeError) as exc:
                log.error("cannot write %s: %s", path, exc)
                self._done.set()
                return
            self.written.append(path)
            self._saved(path)
            if len(self.written) >= self._wanted:
                self._done.set()  # the run ends after its current frame

    def close(self) -> None:
        """After what is queued (every taken crop is written); the writer is joined."""
        while self._writer.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:  # the writer is busy with a full queue, or has just stopped on an error
                continue
        self._writer.join()


def sample_folder(dataset: str, label: str) -> Path:
    if not CLASS_NAME.fullmatch(label):
        raise ConfigError(f"--class: {label!r} is not a class name: 1 to 64 letters, digits, spaces, - or _")
    folder = Path(dataset).expanduser() / label
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {folder}: {exc.strerror}") from exc
    return folder

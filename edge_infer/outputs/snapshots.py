"""Snapshots on change: a JPEG of the frame (with its label drawn on it) each time the top label changes.

`outputs: [..., snapshots]` turns it on, like every other output, and the `snapshots:` section
configures it (an output's own switch is its name in `outputs:`; a `directory: null` meaning "off"
would be a second switch, and one that `--check-config` could not tell from a forgotten key).

Three threads touch a snapshot, and only one of them does the expensive part:
- the capture thread (`see_frame`) copies each frame into a small ring of reused buffers, so the
  frame a result was computed from is still at hand when the result arrives;
- the inference thread (`publish`) notices a change and copies that one frame out of the ring into
  a bounded queue of 2 (a full queue drops the snapshot and counts it: never a wait);
- the snapshot thread draws the label, encodes the JPEG, writes it atomically into the bounded
  directory (oldest files removed first) and hands it to the optional publisher (MQTT).

The drawing and JPEG helpers here are shared with the live view (web.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..values import Box, Classification, Frame
from .base import OutputContext, Peers, SnapshotPublisher

log = logging.getLogger(__name__)

SNAPSHOT_JPEG_QUALITY = 90
# Frames kept for looking back: with files (every frame) the capture thread runs up to 3 frames ahead of
# the result being published (2 in the hand-off, 1 being prepared), so 4 still hold the result's own frame.
RING_FRAMES = 4
QUEUE_SIZE = 2  # snapshots waiting to be encoded; more in a burst are dropped and counted
CLOSE_TIMEOUT_S = 0.5  # finish what is queued at shutdown, within the 2 s SIGTERM budget
# Our own files only: 20250102-030405.678_000123_macaw.jpg, or ..._000123_porch_door_macaw.jpg for a camera's
# region (the time first, so names sort by age).
SNAPSHOT_NAME = re.compile(r"\d{8}-\d{6}\.\d{3}_\d+_[^/]*\.jpg")


@dataclass(frozen=True)
class SnapshotsConfig:
    # null: $STATE_DIRECTORY/snapshots under systemd (/var/lib/edge-infer/snapshots), else
    # ~/.local/share/edge-infer/snapshots
    directory: str | None = field(default=None, metadata={"min_length": 1})
    min_score: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # ignore less confident labels
    max_files: int = field(default=100, metadata={"min": 1, "max": 100000})
    max_megabytes: float = field(default=50.0, metadata={"min": 0.1, "max": 1000000.0})


def default_directory(environ: Mapping[str, str] = os.environ) -> Path:
    state = environ.get("STATE_DIRECTORY")  # systemd's StateDirectory= (the only writable place in the unit)
    if state:
        return Path(state.split(":")[0]) / "snapshots"
    data = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "edge-infer" / "snapshots"


# --- pictures of results (also used by the live view) -------------------------------------------

def caption(result: Classification | None) -> str:
    if result is None or not result.top:
        return "no result yet" if result is None else "nothing above the threshold"
    top = result.top[0]
    return f"{top.label} {top.score:.0%}"


def annotate(image: np.ndarray, result: Classification | None, box: Box | None = None) -> np.ndarray:
    """Draw the top label and score onto `image` (the caller's own copy) and return it; for a region
    (`box`), its outline too, with the label at its top-left corner."""
    height, width = image.shape[:2]
    # Hershey fonts draw ASCII only; ImageNet's labels are ASCII, anything else shows as '?'.
    text = caption(result).encode("ascii", "replace").decode()
    if box is not None and result is not None and result.region:
        text = f"{result.region}: {text}"
    scale = max(0.4, width / 800)
    thickness = max(1, round(scale * 2))
    left = top = 0
    if box is not None:
        left, top, box_w, box_h = box.pixels(width, height)
        cv2.rectangle(image, (left, top), (left + box_w - 1, top + box_h - 1), (0, 200, 255), thickness)
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(4, round(8 * scale))
    corner = (min(width, left + text_w + 2 * pad), min(height, top + text_h + baseline + 2 * pad))
    cv2.rectangle(image, (left, top), corner, (0, 0, 0), cv2.FILLED)  # a dark box: readable on any picture
    cv2.putText(image, text, (left + pad, top + pad + text_h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness, cv2.LINE_AA)
    return image


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for a {image.shape} image")
    return data.tobytes()


class FrameRing:
    """The last few frames, copied on the capture thread into buffers that are reused (no allocation
    per frame once the frame size is known), so a result can find the frame it was computed from."""

    def __init__(self, size: int = RING_FRAMES) -> None:
        self._buffers: list[np.ndarray | None] = [None] * size
        self._seqs = [-1] * size
        self._next = 0
        self._lock = threading.Lock()

    def put(self, frame: Frame) -> None:
        image = frame.image
        with self._lock:
            slot = self._next
            buffer = self._buffers[slot]
            if buffer is None or buffer.shape != image.shape or buffer.dtype != image.dtype:
                buffer = self._buffers[slot] = np.empty_like(image)  # the first frames, or a new size
            np.copyto(buffer, image)
            self._seqs[slot] = frame.seq
            self._next = (slot + 1) % len(self._buffers)

    def copy_of(self, seq: int) -> tuple[np.ndarray, int] | None:
        """A copy of frame `seq`; if it was overwritten already (a camera far faster than inference), the
        first frame after it (tens of ms later); None before any frame came."""
        with self._lock:
            held = [(s, slot) for slot, s in enumerate(self._seqs) if s >= 0]
            if not held:
                return None
            later = [item for item in held if item[0] >= seq]
            found, slot = min(later) if later else max(held)  # a reopened source restarts its numbering
            buffer = self._buffers[slot]
            assert buffer is not None
            return buffer.copy(), found


# --- the output --------------------------------------------------------------------------------

class SnapshotOutput:
    """Saves a JPEG when the confident top label changes; see the module docstring for the threads."""

    name = "snapshots"

    def __init__(self, config: SnapshotsConfig, context: OutputContext,
                 publisher: Callable[[bytes, Classification], None] | None = None,
                 environ: Mapping[str, str] = os.environ) -> None:
        self._config = config
        self._context = context
        self._publisher = publisher  # e.g. MQTT's snapshot topic of the result's camera and region; None: files only
        self.directory = Path(config.directory).expanduser() if config.directory else default_directory(environ)
        prepare_directory(self.directory)
        self._max_bytes = int(config.max_megabytes * 1_000_000)
        # One ring per camera (None: the plain run's one source), made before any frame comes: no locking.
        self._rings: dict[str | None, FrameRing] = {camera.name: FrameRing() for camera in context.cameras} or {
            None: FrameRing()}
        self._boxes = {(camera.name, region): box for camera in context.cameras
                       for region, box in camera.regions.items()}
        self._queue: queue.Queue[tuple[np.ndarray, Classification]] = queue.Queue(maxsize=QUEUE_SIZE)
        self._last_label: dict[tuple[str | None, str | None], str] = {}  # per camera and region
        self.saved = 0
        self.dropped = 0  # changes not saved because the queue was full
        self.errors = 0
        self._watch_failed = False
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="snapshots", daemon=True)
        self._worker.start()
        log.info("snapshots: on label changes scoring %.2f or more, into %s (at most %d files, %g MB)",
                 config.min_score, self.directory, config.max_files, config.max_megabytes)

    def see_frame(self, frame: Frame, camera: str | None = None) -> None:
        """Capture thread: keep a copy in the camera's ring. Never raises: an exception here would end the capture."""
        try:
            self._rings[camera].put(frame)
        except Exception as exc:  # e.g. out of memory for a huge frame: the run goes on without snapshots
            if not self._watch_failed:
                self._watch_failed = True
                log.warning("snapshots: cannot keep frames (%s: %s); no snapshots until they fit",
                            type(exc).__name__, exc)

    def publish(self, result: Classification) -> None:
        """Inference thread: a new confident label queues its frame; nothing here waits."""
        if not result.top:
            return
        top = result.top[0]
        place = (result.camera, result.region)
        # Results below min_score neither save nor count as a change: A, then a doubtful B, then A is no change.
        if top.score < self._config.min_score or top.label == self._last_label.get(place):
            return
        self._last_label[place] = top.label
        if self._queue.full():  # checked first, so a burst of changes does not even copy the frame
            self.dropped += 1
            return
        ring = self._rings.get(result.camera)
        found = ring.copy_of(result.frame) if ring is not None else None
        if found is None:
            return
        try:
            self._queue.put_nowait((found[0], result))
        except queue.Full:
            self.dropped += 1

    def _work(self) -> None:
        while True:
            try:
                image, result = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                box = self._boxes.get((result.camera, result.region))
                jpeg = encode_jpeg(annotate(image, result, box), SNAPSHOT_JPEG_QUALITY)
                path = self._save(jpeg, result)
                self.saved += 1
                log.debug("snapshots: saved %s", path.name)
                if self._publisher is not None:
                    self._publisher(jpeg, result)
            except Exception as exc:  # a full disk or a failing publisher: logged, counted, never fatal
                self.errors += 1
                if self.errors == 1 or self.errors % 100 == 0:
                    log.warning("snapshots: could not save or publish a snapshot (%d so far): %s", self.errors, exc)

    def _save(self, jpeg: bytes, result: Classification) -> Path:
        """Write atomically (a temporary name, fsync, rename); the oldest files make room first, so the directory
        never holds more than its bounds, not even for a moment."""
        stamp = time.localtime(result.ts)
        millis = int(result.ts * 1000) % 1000
        label = re.sub(r"[^A-Za-z0-9_-]+", "-", result.top[0].label).strip("-")[:40] or "label"
        # Camera and region names are safe in file names (cameras.py); a plain run's names carry neither.
        where = "".join(f"{part}_" for part in (result.camera, result.region) if part)
        name = f"{time.strftime('%Y%m%d-%H%M%S', stamp)}.{millis:03d}_{result.frame:06d}_{where}{label}.jpg"
        path = self.directory / name
        write_atomically(path, jpeg, lambda: prune(self.directory, self._config.max_files - 1,
                                                   self._max_bytes - len(jpeg)))
        return path

    def close(self) -> None:
        """Finish the queued snapshots (briefly), then stop the thread."""
        self._stop.set()
        self._worker.join(CLOSE_TIMEOUT_S)
        log.debug("snapshots: %d saved, %d dropped (queue full), %d failed", self.saved, self.dropped, self.errors)


def open_snapshots(config: SnapshotsConfig, context: OutputContext, peers: Peers) -> SnapshotOutput:
    def publish(jpeg: bytes, result: Classification) -> None:
        publisher = peers.find(SnapshotPublisher)  # MQTT, if the run has it
        if publisher is not None:
            publisher.publish_snapshot(jpeg, result.camera, result.region)

    return SnapshotOutput(config, context, publish)


def write_atomically(path: Path, data: bytes, before_rename: Callable[[], object] = lambda: None) -> None:
    """A temporary name (.NAME.tmp, which directory listings skip), fsync, rename: on an SD card, a power cut
    leaves the old file or the new one, never a part."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        before_rename()
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def prepare_directory(directory: Path) -> None:
    """Create it and check it is writable now, so a wrong path stops the run before it starts (exit 2)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"snapshots.directory: cannot create '{directory}': {exc.strerror}") from exc
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"snapshots.directory: '{directory}' is not a writable directory")
    for stale in directory.glob(".*.jpg.tmp"):  # left by a power cut in the middle of a write
        stale.unlink(missing_ok=True)


def prune(directory: Path, max_files: int, max_bytes: int) -> list[str]:
    """Remove our oldest snapshots until at most `max_files` and `max_bytes` remain; other files are not ours."""
    files: list[tuple[str, int]] = []
    for entry in os.scandir(directory):
        if SNAPSHOT_NAME.fullmatch(entry.name) and entry.is_file():
            files.append((entry.name, entry.stat().st_size))
    files.sort()
    total = sum(size for _, size in files)
    removed: list[str] = []
    for name, size in files:
        if len(files) - len(removed) <= max_files and total <= max_bytes:
            break
        with contextlib.suppress(FileNotFoundError):  # removed by someone else meanwhile
            os.unlink(directory / name)
        removed.append(name)
        total -= size
    return removed

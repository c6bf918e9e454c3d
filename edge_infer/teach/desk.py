"""The live page's Teach panel, the service's side: samples per camera region, one training at a time, and the
taught model put in use without a restart.

    TEACH/porch/door/samples/open/20261130-120000-000042.jpg   the region's crops, a folder per class
    TEACH/porch/door/candidate.tflite, candidate.json          the last training's model and report
    TEACH/porch/door/model-20261130-120102.tflite              the model put in use ("Use this model")
    TEACH/in-use.json                                          which place runs which taught model (in_use.py)

A plain `source:` run has one place, `_/_` (camera and region names never start with `_`). The training runs
`teach train`'s own code on a thread of the service with half the cores, so the live pipeline goes on; the
memory it takes (the base cut at its embedding, the embeddings) is given back when it ends.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ..config import Config
from ..errors import ConfigError, EdgeInferError
from ..models.files import resolve_model
from ..models.runtime import usable_cores
from ..models.zoo import build_manifest, find_entry
from ..outputs.snapshots import encode_jpeg, write_atomically
from ..security.redact import redact
from ..values import Box
from .capture import CLASS_NAME, JPEG_QUALITY
from .config import TeachConfig
from .in_use import IN_USE_FILE, InUse, choose, configured_model, read_in_use, region_at, without, write_in_use

log = logging.getLogger(__name__)

Place = tuple[str | None, str | None]  # (camera, region); None: a plain run's, the whole frame
SAMPLE_NAME = "{time}-{seq:06d}.jpg"
THUMBNAIL_PX = 160
CLOSE_TIMEOUT_S = 1.0  # within the 2 s SIGTERM budget  # the longer side of a sample's picture on the page


class TeachRefused(EdgeInferError):
    """A request the panel cannot do now (a training already runs, a class is full): the page says why."""


class Cancelled(EdgeInferError):
    pass


@dataclass(frozen=True)
class Job:
    """The training the page shows: what it is at, and how it ended."""

    place: Place | None = None
    state: str = "idle"  # idle, embedding, learning, done, failed
    done: int = 0  # images embedded
    total: int = 0
    started: float = 0.0  # time.time()
    finished: float = 0.0
    error: str = ""

    def to_json_dict(self) -> dict[str, object]:
        return {"camera": self.place[0] if self.place else None, "region": self.place[1] if self.place else None,
                "state": self.state, "done": self.done, "total": self.total, "error": self.error or None,
                "seconds": round((self.finished or time.time()) - self.started, 1) if self.started else None}


def places_of(config: Config) -> dict[Place, Box]:
    """The places a class can be taught for: every named region, or a plain run's whole frame. A camera of a
    `cameras:` run without regions shares model.path with the others: it needs a region of its own first."""
    if not config.cameras:
        return {(None, None): Box.WHOLE}
    return {(camera.name, region.name): region.box for camera in config.cameras for region in camera.regions}


def place_key(place: Place) -> str:
    return "/".join(name or "_" for name in place)


class TeachDesk:
    """A run component (closed by the run): `current()` is the configuration in effect (taught models laid over),
    `changed()` applies the in-use file now (the run's config watch)."""

    def __init__(self, directory: Path, config: TeachConfig, places: Mapping[Place, Box],
                 current: Callable[[], Config], changed: Callable[[], object]) -> None:
        self.directory = directory
        self.config = config
        self.places = dict(places)
        self._current = current
        self._changed = changed
        self._lock = threading.Lock()  # the sample folders and the in-use file: one writer at a time
        self._job = Job()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0

    # -- where things are --

    def place_dir(self, place: Place) -> Path:
        if place not in self.places:
            known = ", ".join(place_key(p) for p in self.places) or "none (give a camera a region)"
            raise ConfigError(f"no region {place_key(place)} to teach (the regions: {known})")
        return self.directory / place_key(place)

    def class_dir(self, place: Place, label: str) -> Path:
        if not CLASS_NAME.fullmatch(label):
            raise ConfigError(f"{label!r} is not a class name: 1 to 64 letters, digits, spaces, - or _")
        return self.place_dir(place) / "samples" / label

    @property
    def in_use_path(self) -> Path:
        return self.directory / IN_USE_FILE

    # -- what the page shows --

    def state(self) -> dict[str, object]:
        config = self._current()
        entries = read_in_use(self.in_use_path)
        places = []
        for place in self.places:
            folder = self.directory / place_key(place)
            samples = folder / "samples"
            classes = [] if not samples.is_dir() else [
                {"name": child.name, "samples": sample_names(child)}
                for child in sorted(samples.iterdir()) if child.is_dir() and not child.name.startswith(".")]
            report = folder / "candidate.json"
            candidate = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else None
            entry = next((e for e in entries if (e.camera, e.region) == place), None)
            running = configured_model(config, *place)
            places.append({"camera": place[0], "region": place[1], "classes": classes, "candidate": candidate,
                           "model": running, "taught_in_use": entry is not None and running == entry.model,
                           "base": self.base(place, config, entries)})
        return {"places": places, "job": self._job.to_json_dict(),
                "limits": {"samples_per_class": self.config.max_samples_per_class,
                           "classes": self.config.max_classes,
                           "upload_bytes": int(self.config.max_upload_megabytes * 1e6)}}

    def base(self, place: Place, config: Config, entries: tuple[InUse, ...]) -> str:
        """What a place's classes are taught on: the model the configuration gives it (the one a taught model
        in use replaced)."""
        running = configured_model(config, *place) or config.model.path
        entry = next((e for e in entries if (e.camera, e.region) == place and e.model == running), None)
        return entry.replaces if entry is not None else running

    def thumbnail(self, place: Place, label: str, name: str) -> bytes:
        path = self.sample_path(place, label, name)
        image = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_4)  # our own JPEGs: the DCT scales them cheaply
        if image is None:
            raise ConfigError(f"sample {name} cannot be read")
        scale = THUMBNAIL_PX / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return encode_jpeg(image, 80)

    def sample_path(self, place: Place, label: str, name: str) -> Path:
        path = self.class_dir(place, label) / name
        if path.name != name or name.startswith(".") or not path.is_file():  # a bare file name of ours, nothing else
            raise ConfigError(f"no sample {name!r} in class {label}")
        return path

    # -- what the page changes --

    def add_sample(self, place: Place, label: str, image: np.ndarray, whole_frame: bool = True) -> str:
        """Save `image` as a sample of `label`: a camera's frame is cropped to the place's box first, an uploaded
        photo (`whole_frame=False`) is saved as it is. The sample's file name."""
        folder = self.class_dir(place, label)  # the place and the class name checked first
        if whole_frame:
            height, width = image.shape[:2]
            x, y, w, h = self.places[place].pixels(width, height)
            image = image[y: y + h, x: x + w]
        data = encode_jpeg(np.ascontiguousarray(image), JPEG_QUALITY)
        with self._lock:
            samples = folder.parent
            existing = [c.name for c in samples.iterdir() if c.is_dir()] if samples.is_dir() else []
            if label not in existing and len(existing) >= self.config.max_classes:
                raise TeachRefused(f"{place_key(place)} has {len(existing)} classes, the most teach.max_classes "
                                   "allows: delete one first")
            count = len(sample_names(folder)) if folder.is_dir() else 0
            if count >= self.config.max_samples_per_class:
                raise TeachRefused(f"class {label} has {count} samples, the most teach.max_samples_per_class "
                                   "allows: delete some first")
            folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = SAMPLE_NAME.format(time=time.strftime("%Y%m%d-%H%M%S"), seq=self._seq)
            while (folder / name).exists():
                self._seq += 1
                name = SAMPLE_NAME.format(time=time.strftime("%Y%m%d-%H%M%S"), seq=self._seq)
            write_atomically(folder / name, data)
        return name

    def delete(self, place: Place, label: str, name: str | None) -> int:
        """Delete a sample, or (name None) the whole class; the number of samples deleted."""
        with self._lock:
            folder = self.class_dir(place, label)
            if name is None:
                if not folder.is_dir():
                    raise ConfigError(f"no class {label} in {place_key(place)}")
                count = len(sample_names(folder))
                shutil.rmtree(folder)
                return count
            self.sample_path(place, label, name).unlink()
            if not sample_names(folder):
                shutil.rmtree(folder)  # an empty class folder would stop the next training
            return 1

    def start_training(self, place: Place, base: str | None = None) -> None:
        """Train the place's classes on a thread; `base` a zoo name, else the place's own base."""
        folder = self.place_dir(place)
        if base is not None and find_entry(build_manifest(), base) is None:  # never a path from the network
            raise ConfigError(f"base {base!r} is not a model name of the zoo (edge-infer models list)")
        config = self._current()
        base = base or self.base(place, config, read_in_use(self.in_use_path))
        try:
            base_path = resolve_model(base, config.model.models_dir)
        except EdgeInferError as exc:
            raise TeachRefused(f"the base model: {exc}") from exc
        crop = crop_of(config, place)
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise TeachRefused(f"a training of {place_key(self._job.place or place)} is running: wait for it")
            self._job = Job(place, "embedding", started=time.time())
            self._thread = threading.Thread(target=self._training, args=(place, folder, str(base_path), crop),
                                            name="teach-train", daemon=True)
            self._thread.start()

    def _training(self, place: Place, folder: Path, base: str, crop: str) -> None:
        from ..pipeline.preprocess import PreprocessConfig
        from .train import TeachRequest, train

        def embedded(done: int, total: int) -> None:
            if self._stop.is_set():
                raise Cancelled("the run is stopping")
            self._job = replace(self._job, done=done, total=total, state="learning" if done == total else "embedding")

        candidate = folder / "candidate.tflite"
        request = TeachRequest(str(folder / "samples"), base, str(candidate), PreprocessConfig(crop=crop),
                               threads=max(1, usable_cores() // 2), progress=False, embedded=embedded)
        try:
            result = train(request)
            report = {**result.to_json_dict(), "base": Path(base).name, "finished": time.time()}
            write_atomically(folder / "candidate.json", (json.dumps(report, indent=2) + "\n").encode())
        except Cancelled:
            self._job = replace(self._job, state="failed", error="stopped with the run", finished=time.time())
        except EdgeInferError as exc:
            log.warning("teach: training %s failed: %s", place_key(place), exc)
            # On the page: a base pulled from a mirror names its URL, which may carry a password.
            self._job = replace(self._job, state="failed", error=redact(str(exc)), finished=time.time())
        except Exception as exc:  # a bug: one failed training, never a failed run
            log.warning("teach: training %s failed: %s: %s", place_key(place), type(exc).__name__, exc)
            log.debug("teach training failed", exc_info=True)
            self._job = replace(self._job, state="failed", error=redact(f"{type(exc).__name__}: {exc}"),
                                finished=time.time())
        else:
            log.info("teach: %s trained: %s held-out accuracy over %d images", place_key(place),
                     "no" if report["held_out_accuracy"] is None else f"{report['held_out_accuracy']:.0%}",
                     sum(result.images))
            self._job = replace(self._job, state="done", finished=time.time())

    def use(self, place: Place) -> str:
        """Put the place's last trained model in use, now and after restarts; the model file."""
        folder = self.place_dir(place)
        candidate = folder / "candidate.tflite"
        if not candidate.is_file():
            raise TeachRefused(f"{place_key(place)} has no trained model yet: train it first")
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._job.place == place:
                raise TeachRefused("its training is running: wait for it")
            config = self._current()
            entries = read_in_use(self.in_use_path)
            model = folder / f"model-{time.strftime('%Y%m%d-%H%M%S')}.tflite"
            shutil.copyfile(candidate, model.with_name(f".{model.name}.part"))
            model.with_name(f".{model.name}.part").replace(model)
            entry = InUse(place[0], place[1], str(model), self.base(place, config, entries))
            write_in_use(self.in_use_path, choose(entries, entry))
            for old in folder.glob("model-*.tflite"):  # the one in use now is the only one kept
                if old != model:
                    old.unlink(missing_ok=True)
        self._changed()
        return str(model)

    def revert(self, place: Place) -> None:
        """The configuration's model for the place again."""
        self.place_dir(place)
        with self._lock:
            write_in_use(self.in_use_path, without(read_in_use(self.in_use_path), *place))
        self._changed()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # The embedding stops after its current image; the learning that may follow takes a second or
            # two. A training cut short by the exit leaves its old candidate (written whole or not at all).
            self._thread.join(CLOSE_TIMEOUT_S)


def sample_names(folder: Path) -> list[str]:
    return sorted(child.name for child in folder.iterdir() if child.suffix == ".jpg" and not child.name.startswith("."))


def crop_of(config: Config, place: Place) -> str:
    """The preprocess.crop the place runs with: training sees its samples as the run will."""
    region = region_at(config, *place)
    return (region.preprocess.crop if region is not None else None) or config.preprocess.crop

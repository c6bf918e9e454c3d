"""Taught models in use: what the live page's "Use this model" chose for a camera's region.

The service cannot write its own configuration (/etc/edge-infer/config.yaml is root's), so the choice is
kept in the teach directory (`in-use.json`) and laid over the configuration at start and at each reload
(service/reload.py watches both files). An entry names the model the configuration gave the place when it
was chosen: once the configuration names another model there (edited by hand, or `teach train --apply`),
the configuration wins and the entry is ignored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..outputs.snapshots import write_atomically
from ..pipeline.cameras import RegionConfig, cameras_of, regions_of

log = logging.getLogger(__name__)

IN_USE_FILE = "in-use.json"


@dataclass(frozen=True)
class InUse:
    camera: str | None  # None: a plain `source:` run
    region: str | None  # None: the whole frame
    model: str  # the taught .tflite
    replaces: str  # the configuration's model for the place when this was chosen


def region_at(config: Config, camera: str | None, region: str | None) -> RegionConfig | None:
    """The configuration's region at a place (a camera without regions: its whole frame, None); None: no such."""
    for each in cameras_of(config):
        if (each.name or None) == camera:
            return next((place for place in regions_of(each) if (place.name or None) == region), None)
    return None


def configured_model(config: Config, camera: str | None, region: str | None) -> str | None:
    """The model the configuration runs at a place (a region's own, else model.path); None: no such place."""
    found = region_at(config, camera, region)
    return None if found is None else found.model or config.model.path


def with_in_use(config: Config, entries: tuple[InUse, ...]) -> Config:
    """`config` with each entry's model at its place, where the configuration still names what it replaced."""
    current = {(e.camera, e.region): e for e in entries
               if configured_model(config, e.camera, e.region) == e.replaces}
    if not current:
        return config
    if not config.cameras:  # a plain run: its one place is model.path
        entry = current.get((None, None))
        return config if entry is None else dataclasses.replace(
            config, model=dataclasses.replace(config.model, path=entry.model))
    # Only named regions: a camera without regions runs model.path, which the other cameras share.
    cameras = tuple(dataclasses.replace(camera, regions=tuple(
        region if (entry := current.get((camera.name, region.name))) is None else
        dataclasses.replace(region, model=entry.model) for region in camera.regions)) for camera in config.cameras)
    return dataclasses.replace(config, cameras=cameras)


def read_in_use(path: Path) -> tuple[InUse, ...]:
    """The entries of `path`; none when it is missing or not ours (said once in the log, never fatal)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return tuple(InUse(item.get("camera"), item.get("region"), str(item["model"]), str(item["replaces"]))
                     for item in data["in_use"])
    except FileNotFoundError:
        return ()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s cannot be read (%s): the configured models are used", path, exc)
        return ()


def write_in_use(path: Path, entries: tuple[InUse, ...]) -> None:
    data = {"in_use": [dataclasses.asdict(entry) for entry in entries]}
    write_atomically(path, (json.dumps(data, indent=2) + "\n").encode())


def choose(entries: tuple[InUse, ...], entry: InUse) -> tuple[InUse, ...]:
    """`entries` with `entry` at its place (replacing what was there)."""
    return (*without(entries, entry.camera, entry.region), entry)


def without(entries: tuple[InUse, ...], camera: str | None, region: str | None) -> tuple[InUse, ...]:
    return tuple(e for e in entries if (e.camera, e.region) != (camera, region))

"""Image files: one file, a directory, or a glob; sorted; optionally looped. Mostly for tests and batch runs."""

from __future__ import annotations

import glob
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from ..errors import SourceError
from ..values import Frame
from .base import SourceHints

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


@dataclass(frozen=True)
class ImagesConfig:
    path: str = field(metadata={"min_length": 1})  # a file, a directory (its images, sorted) or a glob pattern
    loop: bool = False  # start again after the last image


def list_images(pattern: str) -> list[str]:
    """The files a `path` names, in sorted order."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        return sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [str(path)]
    if glob.has_magic(pattern):
        return sorted(p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p))
    raise SourceError(f"image source '{pattern}' does not exist: give an image file, a directory or a glob")


class ImagesSource:
    live = False

    def __init__(self, config: ImagesConfig) -> None:
        self._paths = list_images(config.path)
        if not self._paths:
            raise SourceError(f"no image files in '{config.path}' (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        self._loop = config.loop
        self._next = 0
        self._seq = 0
        self.skipped = 0
        count = len(self._paths)
        self.description = f"images {config.path} ({count} file{'s' * (count != 1)}{', looped' * self._loop})"

    def read(self) -> Frame | None:
        while True:
            if self._next == len(self._paths):
                if not self._loop or self._seq == 0:  # a loop with no readable image would spin
                    return None
                self._next = 0
            path = self._paths[self._next]
            self._next += 1
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                if len(self._paths) == 1:
                    raise SourceError(f"cannot read image '{path}': not an image file, or corrupt")
                self.skipped += 1
                log.warning("cannot read image '%s': not an image file, or corrupt; skipped", path)
                continue
            self._seq += 1
            return Frame(seq=self._seq, image=image, ts=time.time(), path=path)

    def close(self) -> None:
        pass


def open_images(config: ImagesConfig, hints: SourceHints) -> ImagesSource:
    return ImagesSource(config)

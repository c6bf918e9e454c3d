"""Image files: one file, a directory, or a glob; sorted; optionally looped. Mostly for tests and batch runs."""

from __future__ import annotations

import glob
import logging
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import SourceError
from ..values import Frame, center_window
from .base import SourceHints

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
MAX_IMAGE_PIXELS = 100_000_000  # 10000 x 10000; decoding one takes 300 MB at least
# JPEG decodes at 1/2, 1/4 or 1/8 scale inside libjpeg (DCT scaling), far faster and smaller than whole.
REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers carry the size


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


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's, PNG's or BMP's header, without decoding; None for other formats."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:2] == b"\xff\xd8":
        at = 2
        while at + 9 <= len(data) and data[at] == 0xFF:
            marker, length = data[at + 1], int.from_bytes(data[at + 2: at + 4], "big")
            if marker in JPEG_SOF:
                height, width = struct.unpack(">HH", data[at + 5: at + 9])
                return width, height
            at += 2 + length
    return None


def largest_scale(width: int, height: int, least_width: int, least_height: int) -> int:
    """The largest of libjpeg's decode scales (1/8, 1/4, 1/2, 1) that keeps width x height at least
    least_width x least_height: the divisor (8, 4, 2 or 1)."""
    factor = 8
    while factor > 1 and (width // factor < least_width or height // factor < least_height):
        factor //= 2
    return factor


def reduced_flag(scale: int) -> int:
    """cv2.imdecode's flag for a JPEG that libjpeg decodes at 1/`scale` (1: whole)."""
    return REDUCED.get(scale, cv2.IMREAD_COLOR)


def reduction(size: tuple[int, int], hints: SourceHints) -> int:
    """The largest JPEG decode scale that keeps the image at least twice the model's input on each side
    (preprocessing then still halves it with a box filter, so nothing aliases)."""
    return largest_scale(*size, 2 * hints.width, 2 * hints.height)


def jpeg_scale(frame_width: int, frame_height: int, hints: SourceHints) -> int:
    """How much smaller (1, 2, 4 or 8) a video's JPEG frame can be decoded for the model, with nothing lost.

    libjpeg scales in the DCT: decoding at 1/2 keeps each 8x8 block's low frequencies, a 2x2 box filter's
    worth of detail, for less work than decoding it whole (0.65 against 0.94 ms for 640x480 here), and
    the preprocessor then skips the 2x2 halvings it would have done (pipeline/preprocess.py, `halvings`).
    So the factor is the one that keeps the part of the frame the model sees at least its input's size.
    """
    if hints.full_size:
        return 1
    if hints.crop == "center":
        kept = center_window(frame_width, frame_height, hints.width, hints.height)
        return largest_scale(kept.width, kept.height, hints.width, hints.height)
    if hints.crop == "letterbox":  # the whole frame shrinks into the input's window with the frame's aspect
        fitted = center_window(hints.width, hints.height, frame_width, frame_height)
        return largest_scale(frame_width, frame_height, fitted.width, fitted.height)
    return largest_scale(frame_width, frame_height, hints.width, hints.height)  # stretch: the whole frame


@dataclass(frozen=True)
class Decoded:
    image: np.ndarray | None  # BGR, or None when `problem` says why not
    problem: str = ""
    truncated: bool = False  # a JPEG that ends early: `image` is what could be decoded, the rest grey


def decode_image(path: str | Path, hints: SourceHints) -> Decoded:
    """One image file, checked before it is decoded: huge images (a damaged header, or an image bomb) are refused
    from their header, large JPEGs decoded at a reduced scale (still twice `hints`' size), truncated JPEGs decoded
    as far as they go. Every reader of image files (the images source, teach) goes through here."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return Decoded(None, exc.strerror or str(exc))
    return decode_data(data, hints)


def decode_data(data: bytes, hints: SourceHints) -> Decoded:
    """decode_image's checks and decoding of an image already in memory (a photo uploaded to the live page)."""
    size = image_size(data)
    flags = cv2.IMREAD_COLOR
    if size is not None:
        if size[0] * size[1] > MAX_IMAGE_PIXELS:
            return Decoded(None, f"{size[0]}x{size[1]} is more than the {MAX_IMAGE_PIXELS // 1_000_000} million "
                           "pixels edge-infer decodes (a damaged header, or scale it down)")
        if data[:2] == b"\xff\xd8":
            flags = reduced_flag(reduction(size, hints))
    # A JPEG ends with its EOI marker; entropy-coded data cannot contain it (0xFF is stuffed there).
    truncated = data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:]
    if truncated:  # decode what is there, as libjpeg's file reader does when a file ends early
        data += b"\xff\xd9"
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:  # e.g. a header claiming more pixels than OpenCV allows
        return Decoded(None, f"not decodable ({str(exc).strip().splitlines()[-1]})")
    if image is None:
        return Decoded(None, "not an image file, or corrupt")
    return Decoded(image, "", truncated)


class ImagesSource:
    live = False

    def __init__(self, config: ImagesConfig, hints: SourceHints) -> None:
        self._paths = list_images(config.path)
        if not self._paths:
            raise SourceError(f"no image files in '{config.path}' (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        self._loop = config.loop
        self._hints = hints
        self._next = 0
        self._seq = 0
        # Warned about once each, however often a loop comes back to them.
        self._unreadable: set[str] = set()
        self._truncated: set[str] = set()
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
            image, problem = self._decode(path)
            if image is None:
                if len(self._paths) == 1:
                    raise SourceError(f"cannot read image '{path}': {problem}")
                if path not in self._unreadable:
                    self._unreadable.add(path)
                    log.warning("cannot read image '%s': %s; skipped", path, problem)
                continue
            self._seq += 1
            return Frame(seq=self._seq, image=image, ts=time.time(), path=path)

    @property
    def skipped(self) -> int:
        """Unreadable files (each once, however often a loop passes it)."""
        return len(self._unreadable)

    def _decode(self, path: str) -> tuple[np.ndarray | None, str]:
        """The image, or None and why not; a truncated file is classified as far as it goes, warned about once."""
        decoded = decode_image(path, self._hints)
        if decoded.truncated and decoded.image is not None and path not in self._truncated:
            self._truncated.add(path)
            log.warning("image '%s' is truncated (damaged, or still being written): classified what could be "
                        "decoded", path)
        return decoded.image, decoded.problem

    def retarget(self, hints: SourceHints) -> bool:
        self._hints = hints  # each photo is decoded as it is read
        return True

    def close(self) -> None:
        pass


def open_images(config: ImagesConfig, hints: SourceHints) -> ImagesSource:
    return ImagesSource(config, hints)

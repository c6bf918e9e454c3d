"""A dataset of your own classes: a folder per class (the ImageFolder layout Keras and torchvision read).

    DATASET/open/0001.jpg
    DATASET/closed/0001.jpg

Hidden files and folders are ignored; a class is a folder's name, in sorted order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..sources.images import IMAGE_SUFFIXES

MAX_CLASSES = 1000


@dataclass(frozen=True)
class Dataset:
    root: Path
    classes: tuple[str, ...]
    files: tuple[tuple[Path, int], ...]  # (image, class index)


def read_dataset(root: str | Path) -> Dataset:
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"dataset '{root}' is not a directory: give a folder with a subfolder of images per class")
    classes = sorted(child.name for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))
    files: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        files += [(path, index) for path in sorted((folder / name).iterdir())
                  if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")]
    populated = [name for index, name in enumerate(classes) if any(i == index for _, i in files)]
    if len(populated) < 2:
        raise ConfigError(f"dataset '{root}' has {len(populated)} class(es) with images: teaching needs at least two "
                          f"folders of .jpg/.png/.bmp images, one per class ({folder}/CLASS/*.jpg)")
    if len(classes) > MAX_CLASSES:
        raise ConfigError(f"dataset '{root}' has {len(classes)} classes: at most {MAX_CLASSES}")
    empty = sorted(set(classes) - set(populated))
    if empty:
        raise ConfigError(f"dataset '{root}': class folder(s) {', '.join(empty)} hold no images: add some or remove "
                          "the folder")
    return Dataset(folder, tuple(classes), tuple(files))

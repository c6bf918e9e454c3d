"""Embeddings of a dataset's images: each image and its augmented variants through the base cut at its embedding.

The images are scaled into the model's input by the same Preprocessor a run uses (crop mode,
interpolation, normalization), so what the head learns from is what it will see.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..models.files import ModelFile
from ..models.metadata import packed_info
from ..models.runtime import Runtime, load_runtime, open_interpreter, usable_cores
from ..models.tensors import tensor_spec
from ..pipeline.preprocess import PreprocessConfig, Preprocessor, normalization
from .dataset import Dataset
from .graph import EmbeddingPoint, cut, embedding_point

log = logging.getLogger(__name__)

VARIANTS = 5  # an image and four variants of it: flipped, cropped, darker or brighter, and all of these


@dataclass(frozen=True)
class Samples:
    """Every embedding with its class, the image it came from, and whether it is the image itself."""

    embeddings: np.ndarray  # [N, size] float32, dequantized
    labels: np.ndarray  # [N] int
    images: np.ndarray  # [N] index of the source image in the dataset
    original: np.ndarray  # [N] bool: the unaugmented image (what held-out accuracy is measured on)

    def images_per_class(self, classes: int) -> np.ndarray:
        return np.bincount(self.labels[self.original], minlength=classes)


def variants(image: np.ndarray, rng: np.random.Generator, count: int = VARIANTS) -> Iterator[np.ndarray]:
    """The image, then augmented copies: what a camera sees of the same scene another time."""
    yield image
    height, width = image.shape[:2]
    for number in range(1, count):
        variant = image
        if number in (1, 4):
            variant = variant[:, ::-1]
        if number in (2, 4):  # 80-95 % of each side, anywhere
            scale = rng.uniform(0.80, 0.95)
            crop_h, crop_w = max(1, int(height * scale)), max(1, int(width * scale))
            y, x = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
            variant = variant[y: y + crop_h, x: x + crop_w]
        if number in (3, 4):  # the light of another hour
            variant = cv2.convertScaleAbs(np.ascontiguousarray(variant), alpha=rng.uniform(0.7, 1.3),
                                          beta=rng.uniform(-20, 20))
        yield np.ascontiguousarray(variant)


class Extractor:
    """The base model up to its embedding, on one interpreter, with the run's preprocessing."""

    def __init__(self, base: ModelFile, preprocess: PreprocessConfig,
                 runtime: Runtime | None = None, threads: int | None = None) -> None:
        self.base = base
        self.point: EmbeddingPoint = embedding_point(base.content)
        runtime = runtime or load_runtime()
        self._interpreter = open_interpreter(runtime, ModelFile(base.path, cut(base.content, self.point)),
                                             num_threads=threads or usable_cores())
        self._interpreter.allocate_tensors()
        spec = tensor_spec(self._interpreter.get_input_details()[0])
        self.mean, self.std = normalization(preprocess, packed_info(base))
        self.input = spec
        self.preprocess = Preprocessor(spec, crop=preprocess.crop, interpolation=preprocess.interpolation,
                                        mean=self.mean, std=self.std)
        self._tensor = self._interpreter.tensor(spec.index)
        self._output = self._interpreter.get_output_details()[0]["index"]

    def embed(self, image: np.ndarray) -> np.ndarray:
        """The dequantized embedding of one BGR image."""
        self.preprocess(image, self._tensor()[0])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output).reshape(-1)
        return self.point.quantization.dequantize(raw)


def embed_dataset(extractor: Extractor, dataset: Dataset, seed: int = 0, progress: bool = True) -> Samples:
    """Every image and its variants, embedded; an unreadable image is skipped with a warning."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = []
    labels, images, original = [], [], []
    skipped = []
    for number, (path, label) in enumerate(tqdm(dataset.files, desc="embedding", unit="image", disable=not progress,
                                                leave=False)):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            skipped.append(path)
            continue
        for variant_number, variant in enumerate(variants(image, rng)):
            rows.append(extractor.embed(variant))
            labels.append(label)
            images.append(number)
            original.append(variant_number == 0)
    for path in skipped:
        log.warning("skipped %s: not an image OpenCV can read", Path(path))
    if not rows:
        raise ConfigError(f"dataset '{dataset.root}': none of its images can be read")
    return Samples(np.stack(rows).astype(np.float32), np.array(labels), np.array(images), np.array(original))

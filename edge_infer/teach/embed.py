"""Embeddings of a dataset's images: each image and its augmented variants through the base cut at its embedding.

The images are scaled into the model's input by the same Preprocessor a run uses (crop mode,
interpolation, normalization), so what the head learns from is what it will see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..models.files import ModelFile
from ..models.metadata import packed_info
from ..models.runtime import Interpreter, Runtime, load_runtime, open_interpreter, usable_cores
from ..models.tensors import tensor_spec
from ..pipeline.preprocess import PreprocessConfig, Preprocessor, normalization
from ..sources.base import SourceHints
from ..sources.images import decode_image
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
        interpreter = open_interpreter(runtime, ModelFile(base.path, cut(base.content, self.point)),
                                       num_threads=threads or usable_cores())
        interpreter.allocate_tensors()
        spec = tensor_spec(interpreter.get_input_details()[0])
        self.mean, self.std = normalization(preprocess, packed_info(base))
        self.input = spec
        self.preprocess = Preprocessor(spec, crop=preprocess.crop, interpolation=preprocess.interpolation,
                                        mean=self.mean, std=self.std)
        self.hints = SourceHints(spec.width, spec.height, preprocess.crop)
        self._interpreter: Interpreter | None = interpreter
        self._tensor: Callable[[], np.ndarray] | None = interpreter.tensor(spec.index)
        self._output = interpreter.get_output_details()[0]["index"]

    def embed(self, image: np.ndarray) -> np.ndarray:
        """The dequantized embedding of one BGR image."""
        interpreter, tensor = self._interpreter, self._tensor
        if interpreter is None or tensor is None:
            raise RuntimeError("Extractor.embed after close()")
        self.preprocess(image, tensor()[0])
        interpreter.invoke()
        raw = interpreter.get_tensor(self._output).reshape(-1)
        return self.point.quantization.dequantize(raw)

    def close(self) -> None:
        """Frees the interpreter (its arena and packed weights: about 15 MB for V2 1.0 224) once every image is
        embedded, before the head is learnt, so the two never add up in a running service; `preprocess` and
        `hints` stay usable."""
        self._interpreter = None
        self._tensor = None  # it holds the interpreter too


def read_sample(path: Path, hints: SourceHints) -> tuple[np.ndarray | None, str]:
    """A dataset image through the media checks a run's images source uses (an image bomb refused from its header,
    a large JPEG decoded at a reduced scale), or None and why not. A truncated file is left out rather than taught
    with its missing part grey: a sample the camera will never show."""
    decoded = decode_image(path, hints)
    if decoded.truncated:
        return None, "truncated (damaged, or still being written)"
    return decoded.image, decoded.problem


def embed_dataset(extractor: Extractor, dataset: Dataset, seed: int = 0, progress: bool = True,
                  embedded: Callable[[int, int], None] | None = None) -> Samples:
    """Every image and its variants, embedded; an unreadable image is skipped with a warning naming it, and a class
    left without a readable image (or a dataset) is refused with what was wrong with its files.

    `embedded(done, total)` is called after each image (the page's progress bar); an exception it raises
    (a cancelled training) ends the embedding."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    # Filled in place, one row per embedding: the decoded images are dropped as soon as they are embedded,
    # and no list of small arrays is stacked at the end (that would hold the embeddings twice).
    rows = np.empty((len(dataset.files) * VARIANTS, extractor.point.size), np.float32)
    labels = np.empty(len(rows), np.int64)
    images = np.empty(len(rows), np.int64)
    original = np.zeros(len(rows), bool)
    filled = 0
    problems: dict[int, list[str]] = {}  # class -> "file: why", for the files skipped
    for number, (path, label) in enumerate(tqdm(dataset.files, desc="embedding", unit="image", disable=not progress,
                                                leave=False)):
        image, problem = read_sample(path, extractor.hints)
        if image is None:
            log.warning("skipped %s: %s", path, problem)
            problems.setdefault(label, []).append(f"{path.relative_to(dataset.root)}: {problem}")
        else:
            for variant_number, variant in enumerate(variants(image, rng)):
                rows[filled] = extractor.embed(variant)
                labels[filled], images[filled], original[filled] = label, number, variant_number == 0
                filled += 1
            del image, variant  # not kept while the next file is read
        if embedded is not None:
            embedded(number + 1, len(dataset.files))
    if not filled:
        raise ConfigError(f"dataset '{dataset.root}': none of its images can be read ({first_problems(problems)})")
    samples = Samples(rows[:filled].copy() if filled < len(rows) else rows, labels[:filled], images[:filled],
                      original[:filled])
    missing = [index for index, count in enumerate(samples.images_per_class(len(dataset.classes))) if count == 0]
    if missing:
        raise ConfigError(f"dataset '{dataset.root}': no readable image in class(es) "
                          f"{', '.join(dataset.classes[index] for index in missing)} "
                          f"({first_problems({index: problems[index] for index in missing})})")
    return samples


def first_problems(problems: dict[int, list[str]], shown: int = 3) -> str:
    """What was wrong with the first few files, for a one-line error."""
    said = [problem for per_class in problems.values() for problem in per_class]
    return "; ".join(said[:shown]) + (f"; and {len(said) - shown} more" if len(said) > shown else "")

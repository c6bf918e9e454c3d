"""`edge-infer teach train`: a dataset and a base MobileNet in, a TFLite classifier of your classes out."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from ..models.files import ModelFile, read_model, replacing, resolve_model
from ..models.metadata import packed_info, with_metadata
from ..models.pull import MIRROR_ENV, fetch_missing
from ..models.runtime import load_runtime, open_interpreter, usable_cores
from ..pipeline.preprocess import PreprocessConfig
from .dataset import Dataset, read_dataset
from .embed import Extractor, Samples, embed_dataset, read_sample
from .graph import with_head
from .learn import Evaluation, Trained, dataset_advice, evaluate, fit, predict

log = logging.getLogger(__name__)

AGREEMENT_MIN = 0.95  # the written model must rank the training images as the numpy head does


@dataclass(frozen=True)
class TeachRequest:
    dataset: str
    base: str
    output: str
    preprocess: PreprocessConfig = PreprocessConfig()
    folds: int = 5
    threads: int | None = None
    progress: bool = True  # a tqdm bar on stderr
    embedded: Callable[[int, int], None] | None = None  # (images done, images): progress for the page


@dataclass(frozen=True)
class TeachResult:
    output: Path
    classes: tuple[str, ...]
    images: tuple[int, ...]  # per class
    method: str
    evaluation: Evaluation | None
    warnings: tuple[str, ...]
    agreement: float  # the written model's top class = the numpy head's, over the dataset's images
    size: int

    def to_json_dict(self) -> dict[str, object]:
        evaluation = self.evaluation
        accuracy = [None] * len(self.classes) if evaluation is None else \
            [round(float(value), 4) for value in evaluation.class_accuracy()]
        return {"output": str(self.output), "method": self.method,
                "classes": [{"name": name, "images": count, "held_out_accuracy": held_out}
                            for name, count, held_out in zip(self.classes, self.images, accuracy, strict=True)],
                "held_out_accuracy": None if evaluation is None else round(evaluation.accuracy, 4),
                "confusion": None if evaluation is None else evaluation.confusion.tolist(),
                "warnings": list(self.warnings), "agreement": round(self.agreement, 4), "bytes": self.size}


def check_output(output: str) -> Path:
    path = Path(output).expanduser()
    if path.suffix != ".tflite":
        raise ConfigError(f"--output: '{output}' must end in .tflite")
    if not path.parent.is_dir():
        raise ConfigError(f"--output: directory '{path.parent}' does not exist")
    return path


def agreement(content: bytes, extractor: Extractor, trained: Trained, samples: Samples, dataset: Dataset,
              threads: int | None = None) -> float:
    """How often the TFLite model, run by the bare interpreter on the images, picks what the float head picks."""
    # On as many threads as the embedding had (LiteRT's default is one): a fifth of the embedding's invokes.
    interpreter = open_interpreter(load_runtime(), ModelFile(Path("taught.tflite"), content),
                                   num_threads=threads or usable_cores())
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    scores = interpreter.get_output_details()[0]["index"]
    matches = []
    for image_number, embedding in zip(samples.images[samples.original], samples.embeddings[samples.original],
                                       strict=True):
        image, _ = read_sample(dataset.files[image_number][0], extractor.hints)
        if image is None:  # changed since it was embedded: embed_dataset said so for the others
            continue
        extractor.preprocess(image, interpreter.tensor(source)()[0])
        interpreter.invoke()
        expected = int(predict(trained.head, embedding[None])[0].argmax())
        matches.append(int(np.argmax(interpreter.get_tensor(scores)[0])) == expected)
    return float(np.mean(matches)) if matches else 1.0  # nothing left to compare: no disagreement to report


def give_back_memory() -> None:
    """Hands the heap freed by a training back to the system (malloc_trim(3)). glibc keeps freed memory for the next
    allocations, so a service that taught once would otherwise hold that training's peak for good (64 MB after 500
    images with TF2 V2 1.0 224, measured by tests/bench_teach.py). malloc_trim(0) releases the free pages of every
    arena and the main heap's top; a worker thread's arena keeps its top (up to glibc's trim threshold), which the
    next training reuses."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the process runs on
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)


def train(request: TeachRequest) -> TeachResult:
    """The model of `request`; whether it succeeds or not, the memory it used is given back (the live page runs
    it inside the service)."""
    try:
        return train_and_write(request)  # its arrays and interpreters are freed when it returns, before the trim
    finally:
        give_back_memory()


def train_and_write(request: TeachRequest) -> TeachResult:
    output = check_output(request.output)
    dataset = read_dataset(request.dataset)
    fetch_missing(request.base, None, os.environ.get(MIRROR_ENV))  # a zoo name: pulled, as run does
    base = read_model(resolve_model(request.base, None))
    extractor = Extractor(base, request.preprocess, threads=request.threads)
    samples = embed_dataset(extractor, dataset, progress=request.progress, embedded=request.embedded)
    extractor.close()  # its interpreter is not needed any more: not held while the head is learnt
    classes = len(dataset.classes)
    counts = samples.images_per_class(classes)
    evaluation = evaluate(samples, classes, request.folds)
    trained = fit(samples, classes)
    content = with_head(base.content, extractor.point, trained.head)
    info = {**{k: v for k, v in packed_info(base).items() if k in ("arch", "alpha", "resolution")},
            "taught": True, "base": base.name, "classes": classes, "method": trained.method,
            "embedding": extractor.point.size, "mean": extractor.mean, "std": extractor.std,
            "crop": request.preprocess.crop,
            "held_out_accuracy": None if evaluation is None else round(evaluation.accuracy, 4)}
    content = with_metadata(content, list(dataset.classes), info)
    agreed = agreement(content, extractor, trained, samples, dataset, request.threads)
    if agreed < AGREEMENT_MIN:  # quantizing the head lost what it learnt: say so rather than write it
        raise ModelError(f"the quantized head agrees with the float one on only {agreed:.0%} of the images: "
                         "try a float base, or more images per class")
    with replacing(output) as temp:
        temp.write_bytes(content)
    return TeachResult(output, dataset.classes, tuple(int(n) for n in counts), trained.method, evaluation,
                       tuple(dataset_advice(samples, dataset.classes, evaluation)), agreed, len(content))

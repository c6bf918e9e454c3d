"""`edge-infer teach train DATASET --compare [BASE ...]`: one dataset on several bases, so a user picks the width
(alpha) and resolution for their own classes, the trade-off the MobileNet papers measured on ImageNet.

For each base: the dataset embedded as `teach train` embeds it (embed.py), the held-out accuracy of the k-fold test
train reports (learn.evaluate: the only heads fitted are the folds'), and the speed and size of the model `teach`
would write from it (the base cut at its embedding plus a head; the head's weights do not change its speed or size,
so zeros stand in for them). Speed is invoke() on this board with XNNPACK and all cores, timed by the bench's own
loop (bench.worker.time_invokes, bench.results.latency). Nothing is written: the output names the base to train.

A base that is not here and cannot be downloaded, or cannot be a base (an Edge TPU build, not a MobileNet), is
skipped with a one-line note; an unknown name, or no usable base at all, is refused (exit 2).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelError, RuntimeUnavailableError
from ..models.files import ModelFile, read_model, resolve_model
from ..models.metadata import packed_info
from ..models.pull import MIRROR_ENV, fetch_missing
from ..models.runtime import load_runtime, open_interpreter, usable_cores
from ..models.zoo import DEFAULT_MODEL, V1_TABLE, alpha_text, build_manifest, close_matches, find_entry
from ..pipeline.preprocess import PreprocessConfig
from ..security.redact import redact
from .dataset import Dataset, read_dataset
from .embed import Extractor, embed_dataset
from .graph import HeadWeights, with_head
from .learn import evaluate

# The V1 grid (alpha 0.25-1.0 x 128-224, quantized: what runs fastest on a Pi's CPU) and train's default base
# (the V2 the issue asks for, and the base a user gets without --base).
DEFAULT_BASES: tuple[str, ...] = (*(f"mobilenet_v1_{alpha_text(alpha)}_{resolution}_quant"
                                    for alpha, resolution in sorted(V1_TABLE)), DEFAULT_MODEL)
# "Within a point": on a few dozen images one image is several points, so a point below the best is the same
# accuracy measured with other noise, and the faster base is the better pick.
WITHIN = 0.01
SPEED_SECONDS = 2.0  # per base: long enough for a stable median, short enough for 17 bases
SPEED_WARMUP = 5  # invokes before timing: XNNPACK packs its weights on the first one
SPEED_RUNS = 20  # at least, however long they take


@dataclass(frozen=True)
class CompareRequest:
    dataset: str
    bases: tuple[str, ...] = ()  # names or paths; () is DEFAULT_BASES
    preprocess: PreprocessConfig = PreprocessConfig()
    folds: int = 5
    seconds: float = SPEED_SECONDS
    threads: int | None = None  # None: every usable core, as a run uses
    progress: bool = True  # a tqdm bar per base on stderr
    note: Callable[[str], None] | None = None  # one line per base started or skipped


@dataclass(frozen=True)
class BaseRow:
    """One base, measured on the dataset and on this board."""

    base: str  # as given: a name (train's --base takes it as it is) or a path
    model: str  # the file's name, without .tflite
    arch: str | None
    alpha: float | None  # None when neither the zoo nor the file's metadata says
    resolution: int  # the input's side
    embedding: int  # the embedding's size
    held_out_accuracy: float | None  # k-fold over the images; None when a class has a single image
    folds: int | None
    inferences_per_s: float  # 1000 / median invoke latency
    latency_ms: float  # median invoke latency
    model_mb: float  # the model teach would write
    embed_s: float  # embedding the dataset and its variants: the bulk of a train's time

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Skipped:
    base: str
    reason: str


@dataclass(frozen=True)
class Comparison:
    dataset: Path
    classes: tuple[str, ...]
    images: int
    threads: int
    rows: tuple[BaseRow, ...]
    skipped: tuple[Skipped, ...]

    @property
    def suggested(self) -> BaseRow | None:
        return suggest(self.rows)

    def to_json_dict(self) -> dict[str, Any]:
        suggested = self.suggested
        return {"dataset": str(self.dataset), "classes": list(self.classes), "images": self.images,
                "threads": self.threads, "bases": [row.to_json_dict() for row in self.rows],
                "skipped": [asdict(skip) for skip in self.skipped], "within": WITHIN,
                "suggested": None if suggested is None else suggested.base}


def suggest(rows: Sequence[BaseRow], within: float = WITHIN) -> BaseRow | None:
    """The fastest base whose held-out accuracy is within `within` of the best; None without held-out accuracy."""
    scored = [(row, row.held_out_accuracy) for row in rows if row.held_out_accuracy is not None]
    if not scored:
        return None
    best = max(accuracy for _, accuracy in scored)
    close = [row for row, accuracy in scored if accuracy >= best - within - 1e-9]  # 1e-9: 0.99 is within 0.01 of 1.0
    return max(close, key=lambda row: row.inferences_per_s)


def check_bases(bases: Sequence[str]) -> None:
    """Refuse a base that is neither a file, nor a model in the model directories, nor a zoo name: a typo should
    end the command now, not after minutes of embedding on the other bases."""
    manifest = build_manifest()
    for base in bases:
        try:
            resolve_model(base, None)
            continue
        except ModelError:
            pass
        if os.sep in base:
            raise ConfigError(f"--compare: base '{base}' does not exist")
        if find_entry(manifest, base) is None:
            close = close_matches(manifest, base)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"--compare: unknown base '{base}' (a .tflite path, or a name from edge-infer models "
                              f"list){hint}")


def model_bytes(base: ModelFile, extractor: Extractor, classes: int) -> bytes:
    """What teach would write from this base, with zeros for the head's weights (its speed and size are theirs)."""
    size = extractor.point.size
    head = HeadWeights(np.zeros((classes, size), np.float32), np.zeros(classes, np.float32), (0.0, 1.0))
    return with_head(base.content, extractor.point, head)


def invoke_latency(model: ModelFile, threads: int, seconds: float) -> float:
    """The median ms of invoke() on `model`, with the bench's loop and statistics. The median, not the bench's
    1000 / mean: the bases are ranked by it, and a neighbour's burst on a shared board moves a mean, not a median."""
    from ..bench.results import latency
    from ..bench.worker import time_invokes

    interpreter = open_interpreter(load_runtime(), model, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    # As the bench does: a fixed random image (0..127 fits uint8, int8 and float inputs alike).
    interpreter.set_tensor(detail["index"],
                           np.random.default_rng(1).integers(0, 128, detail["shape"]).astype(detail["dtype"]))
    time_invokes(interpreter.invoke, SPEED_WARMUP)
    return latency(time_invokes(interpreter.invoke, SPEED_RUNS, seconds)).p50_ms


def measure_base(given: str, dataset: Dataset, request: CompareRequest, threads: int) -> BaseRow:
    """One base: embed the dataset, the k-fold held-out test, then the speed of the model teach would write."""
    try:
        fetch_missing(given, None, os.environ.get(MIRROR_ENV))  # a zoo name: pulled, as train does
    except ModelError as exc:
        if exc.__cause__ is None:
            raise
        # fetch_missing's advice (pull it where there is internet) fits one model; for a skipped base, the cause.
        raise ModelError(f"not here, and not downloaded: {exc.__cause__}") from exc
    base = read_model(resolve_model(given, None))
    extractor = Extractor(base, request.preprocess, threads=threads)
    started = time.perf_counter()
    samples = embed_dataset(extractor, dataset, progress=request.progress)
    embed_s = time.perf_counter() - started
    classes = len(dataset.classes)
    evaluation = evaluate(samples, classes, request.folds)
    content = model_bytes(base, extractor, classes)
    median_ms = invoke_latency(ModelFile(base.path, content), threads, request.seconds)
    entry = find_entry(build_manifest(), base.name)
    packed = packed_info(base)  # what a model from `models build` (an extractor among them) says of itself
    return BaseRow(
        base=given, model=base.name, arch=entry.arch if entry else packed.get("arch"),
        alpha=entry.alpha if entry else packed.get("alpha"), resolution=extractor.input.width,
        embedding=extractor.point.size,
        held_out_accuracy=None if evaluation is None else round(evaluation.accuracy, 4),
        folds=None if evaluation is None else evaluation.folds, inferences_per_s=round(1000 / median_ms, 1),
        latency_ms=round(median_ms, 3), model_mb=round(len(content) / 1e6, 3), embed_s=round(embed_s, 2))


def compare(request: CompareRequest) -> Comparison:
    """Every base on the dataset, in the order given; one that cannot be used is skipped with a note."""
    dataset = read_dataset(request.dataset)
    bases = tuple(dict.fromkeys(request.bases or DEFAULT_BASES))
    check_bases(request.bases)  # the defaults are zoo names: known, if not necessarily here
    threads = request.threads or usable_cores()
    note = request.note or (lambda line: None)
    rows: list[BaseRow] = []
    skipped: list[Skipped] = []
    for number, given in enumerate(bases, start=1):
        note(f"[{number}/{len(bases)}] {given}")
        try:
            rows.append(measure_base(given, dataset, request, threads))
        except (ModelError, RuntimeUnavailableError) as exc:  # this base's problem: the others still compare
            reason = redact(" ".join(str(exc).split()))  # a mirror's URL may carry a password
            skipped.append(Skipped(given, reason))
            note(f"skipped {given}: {reason}")
    if not rows:
        first = skipped[0]
        raise ConfigError(f"--compare: none of the {len(bases)} base(s) could be used ({first.base}: {first.reason}"
                          f"{'; and the others likewise' if len(skipped) > 1 else ''})")
    images = len(dataset.files)
    return Comparison(dataset.root, dataset.classes, images, threads, tuple(rows), tuple(skipped))


def format_comparison(comparison: Comparison) -> str:
    """The table `teach train --compare` prints, then the base it suggests and the command that trains it."""
    rows = comparison.rows
    width = max(len("base"), *(len(row.model) for row in rows))
    folds = {row.folds for row in rows if row.folds is not None}
    held_out = f"{folds.pop()}-fold held-out accuracy" if len(folds) == 1 else "held-out accuracy (k-fold)"
    lines = [f"{len(comparison.classes)} classes, {comparison.images} images; {held_out}; speed: the model teach "
             f"writes, invoke() with XNNPACK on {comparison.threads} thread(s), 1000 / median", "",
             f"{'base':<{width}}  alpha  input  held-out  inferences/s  model MB"]
    for row in rows:
        alpha = "-" if row.alpha is None else f"{row.alpha:.1f}" if row.alpha == int(row.alpha) else f"{row.alpha:g}"
        accuracy = "-" if row.held_out_accuracy is None else f"{row.held_out_accuracy:.1%}"
        lines.append(f"{row.model:<{width}}  {alpha:>5}  {row.resolution:>5}  {accuracy:>8}  "
                     f"{row.inferences_per_s:>12.1f}  {row.model_mb:>8.2f}")
    best = comparison.suggested
    lines.append("")
    if best is None:
        lines.append("no held-out accuracy (a class has a single image): add images to compare the bases")
    else:
        lines.append(f"suggested: {best.model}, the fastest within {WITHIN * 100:g} point of the best held-out "
                     "accuracy; train it with:")
        lines.append(f"  edge-infer teach train {comparison.dataset} --base {best.base} --output FILE.tflite")
    if comparison.skipped:
        lines.append(f"not compared (see the notes on stderr): {', '.join(skip.base for skip in comparison.skipped)}")
    return "\n".join(lines) + "\n"

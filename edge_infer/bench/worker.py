"""The bench's worker process: `python -m edge_infer.bench.worker TASK_JSON` measures one setting.

It times invoke() alone, the bare LiteRT loop if asked (LiteRT as its own examples use it), and
the real pipeline, built by the run assembly like `edge-infer run` builds it. It prints one JSON
result (a Measurement, or a Failure) on stdout for the parent (runner.py).
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..config import Config
from ..errors import EdgeInferError
from ..models.runtime import Interpreter, load_runtime
from ..models.zoo import build_manifest, find_entry
from ..outputs.stdout import StdoutOutput
from ..pipeline.classifier import ModelConfig
from ..pipeline.stats import RunStats
from ..run import Run, open_run
from ..schema import Origin
from ..sources.base import SourceHints
from ..sources.registry import build_source_spec
from ..values import Classification, Frame
from .plan import Task
from .results import Failure, Measurement, PipelineLatency, Result, latency

ROUNDS = 6  # measurements alternate in this many rounds, so a machine's drift hits each alike


class SyntheticSource:
    """A 640x480 frame that costs nothing to produce: the same buffer, again and again."""

    live = False
    skipped = 0
    description = "synthetic 640x480"

    def __init__(self, width: int = 640, height: int = 480) -> None:
        self._image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        self._seq = 0

    def read(self) -> Frame | None:
        self._seq += 1
        return Frame(self._seq, self._image, 0.0)

    def retarget(self, hints: SourceHints) -> bool:
        return True  # whole frames serve any model

    def close(self) -> None:
        pass


def time_invokes(invoke: Callable[[], None], runs: int, seconds: float = 0.0) -> list[float]:
    """Latency of `runs` calls, continuing until `seconds` have passed: short models need many runs."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        invoke()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


class FrameRecorder:
    """An output that notes when each frame finished, and ends the run once enough were measured."""

    name = "recorder"

    def __init__(self, warmup: int, frames: int, seconds: float, stop: threading.Event) -> None:
        self.finished_at: list[float] = []
        self.total_ms: list[float] = []
        self.inference_ms: list[float] = []
        self._warmup, self._frames, self._seconds, self._stop = warmup, frames, seconds, stop
        self._started: float | None = None

    def publish(self, result: Classification) -> None:
        now = time.perf_counter()
        if self._warmup > 0:
            self._warmup -= 1
            return
        self._started = self._started or now
        self.finished_at.append(now)
        self.total_ms.append(result.timing.total_ms)
        self.inference_ms.append(result.timing.inference_ms)
        if len(self.finished_at) >= self._frames and now - self._started >= self._seconds:
            self._stop.set()

    def close(self) -> None:
        pass


def bare_interpreter(path: str, threads: int) -> Interpreter:
    """The reference: LiteRT as its own examples use it, nothing of ours in the loop."""
    runtime = load_runtime()
    interpreter = runtime.interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return interpreter


class PipelineTally:
    """The pipeline's numbers, summed over rounds."""

    def __init__(self) -> None:
        self.interval_ms: list[float] = []  # between consecutive measured frames
        self.total_ms: list[float] = []
        self.inference_ms: list[float] = []
        self.dropped = 0
        self.cpu = 0.0
        self.wall = 0.0

    def measure(self, run: Run, warmup: int, frames: int, seconds: float) -> None:
        stop = threading.Event()
        recorder = FrameRecorder(warmup, frames, seconds, stop)
        stats = RunStats()
        cpu_before, wall_before = os.times(), time.monotonic()
        run.execute(outputs=[recorder], stop=stop, stats=stats)
        cpu_after, wall_after = os.times(), time.monotonic()
        self.cpu += (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
        self.wall += wall_after - wall_before
        self.interval_ms += (np.diff(recorder.finished_at) * 1e3).tolist()
        self.total_ms += recorder.total_ms
        self.inference_ms += recorder.inference_ms
        self.dropped += stats.dropped

    @property
    def fps(self) -> float:
        span_ms = sum(self.interval_ms)
        return 1000.0 * len(self.interval_ms) / span_ms if span_ms > 0 else 0.0


def measure(task: Task) -> Measurement:
    """One setting: invoke-only latency, the bare reference if asked, and the real pipeline.

    With the synthetic source the three alternate in rounds; a real source (camera, video) runs
    once at the end, after the invoke rounds. Requested counts are minimums: each round takes
    its share rounded up.
    """
    config = Config(model=ModelConfig(path=task.model, num_threads=task.threads, delegate=task.delegate))
    if task.source:
        config = Config(model=config.model, source=build_source_spec(task.source, Origin(), ("source",)))
    synthetic = None if task.source else SyntheticSource()
    runs, frames = max(1, math.ceil(task.runs / ROUNDS)), max(2, math.ceil(task.frames / ROUNDS))
    seconds = task.seconds / ROUNDS
    # The JSON is built and written, as in a real run, to a sink; no systemd notifier in a worker.
    with open(os.devnull, "w") as sink, \
            open_run(config, source=synthetic, outputs=[StdoutOutput(sink)], environ={}) as run:
        classifier = run.classifier
        info = classifier.info
        reference = bare_interpreter(info.path, info.threads) if task.reference else None
        view = classifier.input_tensor()
        view[...] = np.random.default_rng(1).integers(0, 128, view.shape)
        del view  # the interpreter refuses to invoke while we hold a view of its buffers
        time_invokes(classifier.invoke, task.warmup)
        if reference is not None:
            time_invokes(reference.invoke, task.warmup)
        ours: list[float] = []
        theirs: list[float] = []
        pipeline = PipelineTally()
        for round_number in range(ROUNDS):
            ours += time_invokes(classifier.invoke, runs, seconds)
            if reference is not None:
                theirs += time_invokes(reference.invoke, runs, seconds)
            if synthetic is not None:
                pipeline.measure(run, task.warmup if round_number == 0 else 3, frames, seconds)
        if synthetic is None:
            pipeline.measure(run, task.warmup, task.frames, task.seconds)
    invoke = latency(ours)
    bare = latency(theirs) if theirs else None
    cost = classifier.cost()
    fps = pipeline.fps
    entry = find_entry(build_manifest(), info.name)
    packed = info.packed  # facts a model built by `edge-infer models build` carries
    return Measurement(
        model=info.name, path=info.path, threads=info.threads, delegate=info.backend, runtime=info.runtime,
        input=f"{info.input.width}x{info.input.height} {info.input.dtype.__name__}",
        invoke=invoke, reference=bare,
        # Ratios compare medians: a neighbour's burst on a shared machine moves a mean, not a median.
        reference_ratio=round(bare.p50_ms / invoke.p50_ms, 3) if bare else None,
        pipeline=PipelineLatency(**{**asdict(latency(pipeline.total_ms)), "fps": round(fps, 2)},
                                 frames=len(pipeline.total_ms), dropped=pipeline.dropped),
        pipeline_ratio=round(invoke.p50_ms / float(np.median(pipeline.interval_ms)), 3)
        if pipeline.interval_ms else None,
        # Per frame, everything but invoke(): frame interval minus the invoke time of the same frames,
        # so a machine that slows down between measurements does not show up as overhead.
        overhead_ms=round(1000.0 / fps - float(np.mean(pipeline.inference_ms)), 4) if fps else None,
        cpu_percent=round(100.0 * pipeline.cpu / pipeline.wall, 1) if pipeline.wall > 0 else None,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        size_mb=round(Path(info.path).stat().st_size / 1e6, 3),
        macs_m=cost.macs_m, params_m=cost.params_m,
        arch=entry.arch if entry else packed.get("arch"),
        alpha=entry.alpha if entry else packed.get("alpha"),
        resolution=entry.resolution if entry else packed.get("resolution"),
        published_top1=entry.top1 if entry else None)


def main() -> int:
    task = Task.from_json(sys.argv[1])
    result: Result
    try:
        result = measure(task)
    except EdgeInferError as exc:
        result = Failure(task.name, " ".join(str(exc).split()))
    print(json.dumps(result.to_json_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

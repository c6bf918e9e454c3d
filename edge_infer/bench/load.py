"""A whole configuration's load: every camera and region run as `edge-infer run` runs them, measured.

`python -m edge_infer.bench.load CONFIG SECONDS` (the worker, in a fresh process so its peak RSS is the
run's own) opens the configured run, lets it warm up, then counts for SECONDS what each camera and
region delivers, and prints one JSON object. `edge-infer bench --config` starts it and prints the table.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from ..config import load_config
from ..errors import EdgeInferError, SourceError
from ..run import open_run
from ..values import Classification

WARMUP_S = 2.0  # cameras connect, interpreters warm up: not counted


@dataclass(frozen=True)
class PlaceLoad:
    """One camera's region (or whole frame) over the measurement."""

    camera: str | None
    region: str | None
    model: str
    results_per_s: float
    inference_p50_ms: float


@dataclass(frozen=True)
class ConfigLoad:
    config: str
    seconds: float
    results_per_s: float  # every region of every camera
    frames_per_s: dict[str, float]  # camera frames classified, per camera ("" for a plain source: run)
    places: tuple[PlaceLoad, ...]
    models: int  # interpreters loaded: one per distinct model
    cpu_percent: float
    peak_rss_mb: float

    @property
    def slowest_camera_fps(self) -> float:
        """The frame rate of the camera that got the fewest frames classified: what a target must hold for."""
        return min(self.frames_per_s.values(), default=0.0)

    def to_json_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json_dict(cls, data: dict[str, object]) -> ConfigLoad:
        places = tuple(PlaceLoad(**place) for place in data.pop("places"))  # type: ignore[union-attr]
        return cls(places=places, **data)  # type: ignore[arg-type]


class LoadRecorder:
    """An output that counts results per camera and region once the warm-up is over."""

    name = "load"

    def __init__(self, counting: threading.Event) -> None:
        self._counting = counting
        self.inference_ms: dict[tuple[str | None, str | None], list[float]] = defaultdict(list)
        self.models: dict[tuple[str | None, str | None], str] = {}
        self.frames: dict[str | None, set[int]] = defaultdict(set)

    def publish(self, result: Classification) -> None:
        if self._counting.is_set():
            place = (result.camera, result.region)
            self.inference_ms[place].append(result.timing.inference_ms)
            self.models[place] = result.model
            self.frames[result.camera].add(result.frame)

    def close(self) -> None:
        pass


def measure_load(config_file: str, seconds: float, warmup_s: float = WARMUP_S, model: str | None = None,
                 threads: int | None = None) -> ConfigLoad:
    """`model` and `threads` replace model.path and model.num_threads (tune's candidates)."""
    overrides = {("model", "path"): (model, "--model")} if model else {}
    if threads:
        overrides[("model", "num_threads")] = (threads, "--threads")
    config = load_config(config_file, overrides)
    stop, counting = threading.Event(), threading.Event()
    recorder = LoadRecorder(counting)
    with open_run(config, stop=stop, outputs=[recorder], environ={}) as run:
        models = len({id(region.slot) for camera in run.cameras for region in camera.stages.regions})
        runner = threading.Thread(target=run.execute, name="load-run", daemon=True)
        runner.start()
        runner.join(warmup_s)
        counting.set()
        cpu_before, started = os.times(), time.monotonic()
        runner.join(seconds)  # a run of files may end sooner
        elapsed = time.monotonic() - started
        counting.clear()
        cpu_after = os.times()
        stop.set()
        runner.join()
    places = tuple(PlaceLoad(camera, region, recorder.models[(camera, region)], round(len(times) / elapsed, 2),
                             round(float(np.median(times)), 3))
                   for (camera, region), times in recorder.inference_ms.items())
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return ConfigLoad(config_file, round(elapsed, 2), round(sum(p.results_per_s for p in places), 2),
                      {camera or "": round(len(frames) / elapsed, 2) for camera, frames in recorder.frames.items()},
                      places, models, round(100 * cpu / elapsed, 1),
                      round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


def run_load_worker(config_file: str, seconds: float, model: str | None = None,
                    threads: int | None = None) -> ConfigLoad:
    """`measure_load` in a fresh process; its error (one line) becomes an EdgeInferError here."""
    candidate = [model or "", str(threads or 0)]
    done = subprocess.run([sys.executable, "-m", "edge_infer.bench.load", config_file, str(seconds), *candidate],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=seconds + 300)
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeInferError(f"the load measurement failed (status {done.returncode}): {last}") from None
    if "error" in answer:
        raise SourceError(answer["error"]) if answer.get("kind") == "source" else EdgeInferError(answer["error"])
    return ConfigLoad.from_json_dict(answer)


def format_load(load: ConfigLoad) -> str:
    lines = [f"{load.config}: {load.results_per_s:.1f} results/s in {load.seconds:.1f} s, {load.models} "
             f"interpreter(s), CPU {load.cpu_percent:.0f} %, peak RSS {load.peak_rss_mb:.0f} MB",
             f"{'camera':<16} {'region':<16} {'model':<34} {'results/s':>9} {'invoke p50 ms':>13}"]
    for place in sorted(load.places, key=lambda p: (p.camera or "", p.region or "")):
        lines.append(f"{place.camera or '-':<16} {place.region or '-':<16} {place.model:<34} "
                     f"{place.results_per_s:>9.1f} {place.inference_p50_ms:>13.2f}")
    if len(load.frames_per_s) > 1:
        rates = load.frames_per_s.values()
        lines.append("frames/s per camera: " + ", ".join(f"{name} {rate:.1f}" for name, rate in
                                                        load.frames_per_s.items())
                     + f" (slowest / fastest {min(rates) / max(rates):.2f})" if max(rates) > 0 else "")
    return "\n".join(lines)


def main() -> int:
    try:
        model, threads = (sys.argv[3] or None, int(sys.argv[4]) or None) if len(sys.argv) > 4 else (None, None)
        load = measure_load(sys.argv[1], float(sys.argv[2]), model=model, threads=threads)
    except EdgeInferError as exc:
        print(json.dumps({"error": " ".join(str(exc).split()),
                          "kind": "source" if isinstance(exc, SourceError) else "other"}))
        return 0
    print(json.dumps(load.to_json_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

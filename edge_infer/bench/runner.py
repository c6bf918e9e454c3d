"""Runs a bench plan: one worker process per task, in turn, with the board's conditions before and after.

A process per setting keeps one interpreter per process, gives each its own peak RSS, and lets a
model that crashes or hangs the runtime fail alone.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Callable

import cv2
import numpy

from ..models.runtime import usable_cores
from ..service.board import board_model, cpu_governor, cpu_temperature_c, throttled_flags
from .plan import BenchPlan, Task, tasks
from .results import Conditions, Failure, Report, Result, Settings, result_from_json_dict

WORKER_TIMEOUT_S = 600


def run_worker(task: Task, timeout: float = WORKER_TIMEOUT_S) -> Result:
    try:
        done = subprocess.run([sys.executable, "-m", "edge_infer.bench.worker", task.to_json()], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # a hung runtime or camera must not stop the other models
        return Failure(task.name, f"the benchmark process did not finish within {timeout:g} s")
    try:
        return result_from_json_dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (IndexError, json.JSONDecodeError, KeyError, TypeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Failure(task.name, f"the benchmark process failed (status {done.returncode}): {last}")


def run_bench(plan: BenchPlan, progress: Callable[[str], None]) -> Report:
    board, governor, temperature, throttled = board_model(), cpu_governor(), cpu_temperature_c(), throttled_flags()
    work = tasks(plan)
    results: list[Result] = []
    failed: set[str] = set()
    for number, task in enumerate(work, start=1):
        if task.model in failed:  # a model that cannot load fails the same way at any thread count
            continue
        progress(f"[{number}/{len(work)}] {task.name}, {task.threads} thread(s), {task.delegate}")
        result = run_worker(task)
        if isinstance(result, Failure):
            progress(f"  skipped: {result.error}")
            failed.add(task.model)
        results.append(result)
    runtime = next((r.runtime for r in results if not isinstance(r, Failure)), None)
    conditions = Conditions(board, platform.machine(), usable_cores(), governor, platform.python_version(),
                            numpy.__version__, cv2.__version__, temperature, throttled, runtime,
                            cpu_temperature_c(), throttled_flags())
    settings = Settings(plan.warmup, plan.runs, plan.frames, plan.seconds, plan.source or "synthetic 640x480")
    return Report(conditions, settings, results)

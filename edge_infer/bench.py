"""`edge-infer bench`: what each MobileNet setting costs on this board, and the conditions it ran under."""

from __future__ import annotations

import csv
import io
import json
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .board import board_model, cpu_governor, cpu_temperature_c, throttled_flags
from .errors import ConfigError
from .model import model_dirs, resolve_model
from .runtime import edgetpu_library_present, usable_cores
from .zoo import build_manifest, find_entry

WORKER_TIMEOUT_S = 600


@dataclass(frozen=True)
class BenchPlan:
    models: tuple[str, ...]  # paths
    threads: tuple[int, ...]
    warmup: int
    runs: int
    frames: int
    seconds: float  # each measurement goes on at least this long
    reference: bool
    source: dict[str, Any] | None  # a source mapping, or None for the synthetic 640x480 frame


def conditions() -> dict[str, Any]:
    import cv2
    import numpy

    return {
        "board": board_model(),
        "machine": platform.machine(),
        "cores": usable_cores(),
        "governor": cpu_governor(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "temperature_c": cpu_temperature_c(),
        "throttled": throttled_flags(),
    }


def find_models(arguments: list[str], models_dir: str | None) -> list[str]:
    """Names, paths or directories; none given: every MobileNet in the model directories."""
    if not arguments:
        arguments = [str(d) for d in model_dirs(models_dir) if d.is_dir()]
    found: list[str] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            found += sorted(str(p) for p in path.glob("*mobilenet*.tflite"))
        else:
            found.append(str(resolve_model(argument, models_dir)))
    if not found:
        raise ConfigError("no models to benchmark: name them, or put mobilenet*.tflite files in "
                          f"{', '.join(map(str, model_dirs(models_dir)))} (edge-infer models pull NAME)")
    return list(dict.fromkeys(found))


def tasks(plan: BenchPlan) -> list[dict[str, Any]]:
    """Every (model, threads, delegate) to measure; Edge TPU models only where the Edge TPU library is."""
    has_edgetpu = edgetpu_library_present()
    out = []
    for model in plan.models:
        compiled = model.endswith("_edgetpu.tflite")
        if compiled and not has_edgetpu:
            continue
        for threads in (plan.threads if not compiled else plan.threads[:1]):
            out.append({"model": model, "threads": threads, "delegate": "edgetpu" if compiled else "cpu",
                        "reference": plan.reference and not compiled, "warmup": plan.warmup, "runs": plan.runs,
                        "frames": plan.frames, "seconds": plan.seconds, "source": plan.source})
    return out


def run_worker(task: dict[str, Any], timeout: float = WORKER_TIMEOUT_S) -> dict[str, Any]:
    name = Path(task["model"]).name.removesuffix(".tflite")
    try:
        done = subprocess.run([sys.executable, "-m", "edge_infer.benchmark", json.dumps(task)], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # a hung runtime or camera must not stop the other models
        return {"model": name, "error": f"the benchmark process did not finish within {timeout:g} s"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": name, "error": f"the benchmark process failed (status {done.returncode}): {last}"}


def enrich(result: dict[str, Any]) -> dict[str, Any]:
    """Add what the zoo (or the model itself) knows: width multiplier, resolution, published top-1."""
    entry = find_entry(build_manifest(), result["model"])
    packed = result.pop("packed", None) or {}  # facts a model built by `edge-infer models build` carries
    result["arch"] = entry.arch if entry else packed.get("arch")
    result["alpha"] = entry.alpha if entry else packed.get("alpha")
    result["resolution"] = entry.resolution if entry else packed.get("resolution")
    result["published_top1"] = entry.top1 if entry else None
    return result


def run_bench(plan: BenchPlan, progress: Callable[[str], None]) -> dict[str, Any]:
    before = conditions()
    work = tasks(plan)
    results = []
    failed: set[str] = set()
    for number, task in enumerate(work, start=1):
        name = Path(task["model"]).name.removesuffix(".tflite")
        if task["model"] in failed:  # a model that cannot load fails the same way at any thread count
            continue
        progress(f"[{number}/{len(work)}] {name}, {task['threads']} thread(s), {task['delegate']}")
        result = enrich(run_worker(task))
        if "error" in result:
            progress(f"  skipped: {result['error']}")
            failed.add(task["model"])
        results.append(result)
    after = {"temperature_c": cpu_temperature_c(), "throttled": throttled_flags()}
    runtime = next((r["runtime"] for r in results if "runtime" in r), None)
    return {"conditions": {**before, "runtime": runtime, "temperature_after_c": after["temperature_c"],
                           "throttled_after": after["throttled"]},
            "settings": {"warmup": plan.warmup, "runs": plan.runs, "frames": plan.frames, "seconds": plan.seconds,
                         "source": plan.source or "synthetic 640x480"},
            "results": results}


def warnings_for(report: dict[str, Any]) -> list[str]:
    conditions_ = report["conditions"]
    found = []
    if conditions_["governor"] not in (None, "performance"):
        found.append(f"CPU governor is '{conditions_['governor']}', not 'performance': numbers vary with the clock "
                     "(echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)")
    throttled = conditions_.get("throttled_after") or {}
    if any(throttled.get(k) for k in ("throttled", "frequency_capped", "under_voltage", "soft_temperature_limit")):
        found.append(f"the board throttled during the run ({', '.join(k for k, v in throttled.items() if v)}): "
                     "cool it or use a better power supply, then run again")
    return found


COLUMNS = ("model", "alpha", "resolution", "threads", "delegate", "invoke_p50_ms", "invoke_fps", "reference_fps",
           "reference_ratio", "pipeline_fps", "pipeline_ratio", "overhead_ms", "cpu_percent", "peak_rss_mb", "size_mb",
           "macs_m", "params_m", "published_top1")


def flat(result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        return {"model": result["model"], "error": result["error"]}
    return {
        "model": result["model"], "alpha": result["alpha"], "resolution": result["resolution"],
        "threads": result["threads"], "delegate": result["delegate"],
        "invoke_p50_ms": result["invoke"]["p50_ms"], "invoke_fps": result["invoke"]["fps"],
        "reference_fps": result["reference"]["fps"] if result["reference"] else None,
        "reference_ratio": result["reference_ratio"], "pipeline_fps": result["pipeline"]["fps"],
        "pipeline_ratio": result["pipeline_ratio"], "overhead_ms": result["overhead_ms"],
        "cpu_percent": result["cpu_percent"], "peak_rss_mb": result["peak_rss_mb"], "size_mb": result["size_mb"],
        "macs_m": result["macs_m"], "params_m": result["params_m"], "published_top1": result["published_top1"],
    }


def by_alpha(results: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows grouped by width multiplier (the "FPS per alpha" answer), smallest first; unknown models last."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in (flat(r) for r in results):
        key = f"alpha {row['alpha']}" if row.get("alpha") is not None else "other models"
        groups.setdefault(key, []).append(row)
    return sorted(groups.items(), key=lambda item: (item[0] == "other models", item[0]))


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_table(report: dict[str, Any], markdown: bool = False) -> str:
    headers = ("model", "res", "thr", "delegate", "invoke p50 ms", "invoke FPS", "vs bare", "pipeline FPS",
               "vs invoke", "overhead ms", "CPU %", "RSS MB", "MMACs", "top-1 %")
    keys = ("model", "resolution", "threads", "delegate", "invoke_p50_ms", "invoke_fps", "reference_ratio",
            "pipeline_fps", "pipeline_ratio", "overhead_ms", "cpu_percent", "peak_rss_mb", "macs_m", "published_top1")
    lines = []
    if markdown:
        lines += ["| alpha | " + " | ".join(headers) + " |", "|" + "---|" * (len(headers) + 1)]
    for group, rows in by_alpha(report["results"]):
        table = [[cell(row.get(k)) if "error" not in row else "" for k in keys] for row in rows]
        for row, cells in zip(rows, table, strict=False):
            if "error" in row:
                cells[0], cells[1] = row["model"], f"skipped: {row['error']}"
        if markdown:
            lines += ["| " + group.removeprefix("alpha ") + " | " + " | ".join(c.replace("|", "/") for c in cells)
                      + " |" for cells in table]
            continue
        widths = [max([len(h), *(len(c[i]) for c in table if "skipped" not in c[1])]) for i, h in enumerate(headers)]
        lines.append(f"== {group} ==")
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)))
        for cells in table:
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) if "skipped" not in cells[1]
                         else f"{cells[0]}  {cells[1]}")
        lines.append("")
    return "\n".join(lines)


def format_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*COLUMNS, "error"], extrasaction="ignore")
    writer.writeheader()
    for result in report["results"]:
        writer.writerow(flat(result))
    return out.getvalue()


def describe_conditions(report: dict[str, Any]) -> str:
    c = report["conditions"]
    temperature = (f", SoC {c['temperature_c']:.0f} -> {c['temperature_after_c']:.0f} C"
                   if c.get("temperature_c") is not None and c.get("temperature_after_c") is not None else "")
    return (f"{c['board']} ({c['machine']}, {c['cores']} cores, governor {c['governor'] or 'n/a'}{temperature}); "
            f"{c['runtime']}, Python {c['python']}, numpy {c['numpy']}, OpenCV {c['opencv']}")


def plot(report: dict[str, Any], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'edge-infer[plot]'") from exc
    rows = [flat(r) for r in report["results"] if "error" not in r and r.get("alpha") is not None]
    figure, (by_alpha_axis, tradeoff_axis) = plt.subplots(1, 2, figsize=(12, 5))
    for resolution in sorted({r["resolution"] for r in rows}):
        best: dict[float, float] = {}
        for r in rows:
            if r["resolution"] == resolution:
                best[r["alpha"]] = max(best.get(r["alpha"], 0), r["invoke_fps"])
        alphas = sorted(best)
        by_alpha_axis.plot(alphas, [best[a] for a in alphas], marker="o", label=f"{resolution}x{resolution}")
    by_alpha_axis.set(xlabel="width multiplier alpha", ylabel="invoke FPS (best thread count)", title="FPS per alpha")
    by_alpha_axis.legend()
    for r in rows:
        if r["published_top1"] is not None:
            tradeoff_axis.scatter(r["invoke_p50_ms"], r["published_top1"])
            tradeoff_axis.annotate(r["model"].removeprefix("mobilenet_"), (r["invoke_p50_ms"], r["published_top1"]),
                                   fontsize=7)
    tradeoff_axis.set(xlabel="invoke latency p50 (ms)", ylabel="published ImageNet top-1 (%)",
                      title="accuracy vs latency")
    figure.suptitle(describe_conditions(report), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_report(report: dict[str, Any], fmt: str, stream: TextIO) -> None:
    if fmt == "json":
        stream.write(json.dumps(report, indent=2) + "\n")
    elif fmt == "csv":
        stream.write(format_csv(report))
    else:
        stream.write(format_table(report, markdown=fmt == "markdown") + "\n")
        stream.write(("\n" if fmt == "markdown" else "") + f"Measured on {describe_conditions(report)}.\n")


def default_threads() -> tuple[int, ...]:
    return tuple(sorted({1, usable_cores()}))

"""The bench report for people and programs: a table grouped by width multiplier, CSV, markdown, JSON, a plot."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, TextIO

from ..errors import ConfigError
from .results import Conditions, Failure, Measurement, Report, Result


def warnings_for(conditions: Conditions) -> list[str]:
    found = []
    if conditions.governor not in (None, "performance"):
        found.append(f"CPU governor is '{conditions.governor}', not 'performance': numbers vary with the clock "
                     "(echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)")
    throttled = conditions.throttled_after or {}
    if any(throttled.get(k) for k in ("throttled", "frequency_capped", "under_voltage", "soft_temperature_limit")):
        found.append(f"the board throttled during the run ({', '.join(k for k, v in throttled.items() if v)}): "
                     "cool it or use a better power supply, then run again")
    return found


COLUMNS = ("model", "alpha", "resolution", "threads", "delegate", "invoke_p50_ms", "invoke_fps", "reference_fps",
           "reference_ratio", "pipeline_fps", "pipeline_ratio", "overhead_ms", "cpu_percent", "peak_rss_mb", "size_mb",
           "macs_m", "params_m", "published_top1")


def flat(result: Result) -> dict[str, Any]:
    """One row of the table and the CSV."""
    if isinstance(result, Failure):
        return {"model": result.model, "error": result.error}
    return {
        "model": result.model, "alpha": result.alpha, "resolution": result.resolution,
        "threads": result.threads, "delegate": result.delegate,
        "invoke_p50_ms": result.invoke.p50_ms, "invoke_fps": result.invoke.fps,
        "reference_fps": result.reference.fps if result.reference else None,
        "reference_ratio": result.reference_ratio, "pipeline_fps": result.pipeline.fps,
        "pipeline_ratio": result.pipeline_ratio, "overhead_ms": result.overhead_ms,
        "cpu_percent": result.cpu_percent, "peak_rss_mb": result.peak_rss_mb, "size_mb": result.size_mb,
        "macs_m": result.macs_m, "params_m": result.params_m, "published_top1": result.published_top1,
    }


def by_alpha(results: list[Result]) -> list[tuple[str, list[dict[str, Any]]]]:
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


def format_table(report: Report, markdown: bool = False) -> str:
    headers = ("model", "res", "thr", "delegate", "invoke p50 ms", "invoke FPS", "vs bare", "pipeline FPS",
               "vs invoke", "overhead ms", "CPU %", "RSS MB", "MMACs", "top-1 %")
    keys = ("model", "resolution", "threads", "delegate", "invoke_p50_ms", "invoke_fps", "reference_ratio",
            "pipeline_fps", "pipeline_ratio", "overhead_ms", "cpu_percent", "peak_rss_mb", "macs_m", "published_top1")
    lines = []
    if markdown:
        lines += ["| alpha | " + " | ".join(headers) + " |", "|" + "---|" * (len(headers) + 1)]
    for group, rows in by_alpha(report.results):
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


def format_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*COLUMNS, "error"], extrasaction="ignore")
    writer.writeheader()
    for result in report.results:
        writer.writerow(flat(result))
    return out.getvalue()


def describe_conditions(c: Conditions) -> str:
    temperature = (f", SoC {c.temperature_c:.0f} -> {c.temperature_after_c:.0f} C"
                   if c.temperature_c is not None and c.temperature_after_c is not None else "")
    return (f"{c.board} ({c.machine}, {c.cores} cores, governor {c.governor or 'n/a'}{temperature}); "
            f"{c.runtime}, Python {c.python}, numpy {c.numpy}, OpenCV {c.opencv}")


def plot(report: Report, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'edge-infer[plot]'") from exc
    rows = [flat(r) for r in report.results if isinstance(r, Measurement) and r.alpha is not None]
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
    figure.suptitle(describe_conditions(report.conditions), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_report(report: Report, fmt: str, stream: TextIO) -> None:
    if fmt == "json":
        stream.write(json.dumps(report.to_json_dict(), indent=2) + "\n")
    elif fmt == "csv":
        stream.write(format_csv(report))
    else:
        stream.write(format_table(report, markdown=fmt == "markdown") + "\n")
        stream.write(("\n" if fmt == "markdown" else "") + f"Measured on {describe_conditions(report.conditions)}.\n")

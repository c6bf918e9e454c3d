"""`edge-infer bench`: a real run on two models with small N, and the pure parts around it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from edge_infer.bench.plan import Task
from edge_infer.bench.report import by_alpha, format_table, warnings_for
from edge_infer.bench.results import (
    Conditions,
    Failure,
    Latency,
    Measurement,
    PipelineLatency,
    Report,
    Settings,
    latency,
    result_from_json_dict,
)

LATENCY_FIELDS = {"mean_ms", "std_ms", "p50_ms", "p90_ms", "p99_ms", "fps"}


@pytest.fixture(scope="module")
def report(models: Path, tmp_path_factory) -> dict:
    """One bench run: two classifiers, plus a non-classifier and a corrupt file that must be skipped."""
    from conftest import run_cli

    work = tmp_path_factory.mktemp("bench")
    corrupt = work / "mobilenet_corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    done = run_cli("bench", str(models / "mobilenet_v1_0.25_128_quant.tflite"),
                   str(models / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"), str(corrupt),
                   str(models / "mobilenet_v1_0.75_192_quant.tflite"), "--threads", "1,2", "--runs", "20",
                   "--warmup", "3", "--frames", "20", "--seconds", "0.1", "--reference", "--json", cwd=work,
                   json_lines=False)
    assert done.status == 0, done.stderr
    assert "[1/8]" in done.stderr  # progress while it runs
    return json.loads(done.stdout)


def measured(report: dict) -> list[dict]:
    return [r for r in report["results"] if "error" not in r]


def test_every_configuration_is_measured(report):
    got = sorted((r["model"], r["threads"]) for r in measured(report))
    assert got == [("mobilenet_v1_0.25_128_quant", 1), ("mobilenet_v1_0.25_128_quant", 2),
                   ("mobilenet_v1_0.75_192_quant", 1), ("mobilenet_v1_0.75_192_quant", 2)]


def test_bad_models_are_reported_and_skipped(report):
    errors = {r["model"]: r["error"] for r in report["results"] if "error" in r}
    assert "not an image classifier" in errors["mobilenet_v1_1.0_224_quant_embedding_extractor"]
    assert "not a TFLite model" in errors["mobilenet_corrupt"]


def test_latencies_are_sane(report):
    for result in measured(report):
        for key in ("invoke", "reference", "pipeline"):
            stats = result[key]
            assert set(stats) >= LATENCY_FIELDS
            assert 0 < stats["p50_ms"] <= stats["p99_ms"] and stats["mean_ms"] > 0 and stats["std_ms"] >= 0
        invoke = result["invoke"]
        assert invoke["fps"] == pytest.approx(1000 / invoke["mean_ms"], rel=0.01)
        assert result["pipeline"]["fps"] > 0 and result["pipeline"]["frames"] >= 20
        assert result["pipeline"]["mean_ms"] >= result["invoke"]["p50_ms"] * 0.5


def test_model_facts_come_with_the_numbers(report):
    for result in measured(report):
        assert result["alpha"] in (0.25, 0.75) and result["resolution"] in (128, 192)
        assert result["published_top1"] > 30 and result["macs_m"] > 10 and result["params_m"] > 0.4
        assert result["size_mb"] > 0.4 and result["peak_rss_mb"] > 10 and result["cpu_percent"] > 0
        assert result["delegate"] == "cpu" and result["runtime"].startswith("ai_edge_litert")


def test_conditions_are_recorded(report):
    conditions = report["conditions"]
    assert conditions["cores"] >= 1 and conditions["board"] and conditions["runtime"]
    assert {"governor", "temperature_c", "temperature_after_c", "throttled", "throttled_after"} <= set(conditions)


def typed(report: dict) -> Report:
    return Report(Conditions(**report["conditions"]), Settings(**report["settings"]),
                  [result_from_json_dict(r) for r in report["results"]])


def test_table_groups_by_alpha(report):
    text = format_table(typed(report))
    assert text.index("== alpha 0.25 ==") < text.index("== alpha 0.75 ==") < text.index("== other models ==")
    assert "skipped:" in text


def test_csv_and_markdown_outputs(models: Path, cli):
    args = ("bench", str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--threads", "1", "--runs", "5",
            "--warmup", "1", "--frames", "5", "--seconds", "0")
    as_csv = cli(*args, "--csv", json_lines=False)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == 1 and float(rows[0]["invoke_fps"]) > 0 and rows[0]["alpha"] == "0.25"
    as_markdown = cli(*args, "--markdown", json_lines=False)
    assert as_markdown.stdout.startswith("| alpha | model |") and "| 0.25 | mobilenet_v1_0.25_128_quant |" in \
        as_markdown.stdout


def test_plot_needs_matplotlib_or_writes_a_png(models: Path, cli, tmp_path: Path):
    target = tmp_path / "bench.png"
    done = cli("bench", str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--threads", "1", "--runs", "5",
               "--warmup", "1", "--frames", "5", "--seconds", "0", "--plot", str(target), json_lines=False)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert done.status == 2 and "--plot needs matplotlib: pip install 'edge-infer[plot]'" in done.stderr
    else:
        assert done.status == 0 and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_models_is_a_clear_error(cli, tmp_path: Path):
    done = cli("bench", str(tmp_path), json_lines=False)
    assert done.status == 2 and "no models to benchmark" in done.stderr


def test_latency_statistics():
    stats = latency([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats.p50_ms == 3.0 and stats.mean_ms == 22.0 and stats.fps == pytest.approx(1000 / 22, rel=1e-3)
    assert stats.p90_ms > stats.p50_ms and stats.p99_ms <= 100.0


def conditions(governor: str | None, throttled_after: dict[str, bool] | None) -> Conditions:
    return Conditions("board", "aarch64", 4, governor, "3.11", "1.24", "4.11", 50.0, None, "ai_edge_litert", 60.0,
                      throttled_after)


def test_warnings_for_governor_and_throttling():
    found = warnings_for(conditions("ondemand", {"throttled": True, "under_voltage": False}))
    assert any("governor is 'ondemand'" in w for w in found) and any("throttled during the run" in w for w in found)
    assert warnings_for(conditions("performance", None)) == []


def test_rows_group_smallest_alpha_first():
    one_ms = Latency(1, 0, 1, 1, 1, 1000)
    results = [Measurement(m, m, 1, "cpu", "ai_edge_litert", "224x224 uint8", one_ms, None, None,
                           PipelineLatency(1, 0, 1, 1, 1, 1000, 10, 0), 1, 0, 1, 1, 1, 1, 1, "mobilenet_v1", a, 224, 1)
               for m, a in (("b", 1.0), ("a", 0.25), ("c", None))]
    assert [group for group, _ in by_alpha(results)] == ["alpha 0.25", "alpha 1.0", "other models"]


def test_a_worker_that_does_not_finish_is_reported(models: Path):
    from edge_infer.bench.runner import run_worker

    task = Task(str(models / "mobilenet_v1_0.25_128_quant.tflite"), threads=1, delegate="cpu", reference=False,
                warmup=1, runs=10**9, frames=5, seconds=0, source=None)
    result = run_worker(task, timeout=2)
    assert result == Failure("mobilenet_v1_0.25_128_quant", "the benchmark process did not finish within 2 s")

"""`edge-infer tune` on the real models in ../shared: the choice, the written config, and the pure parts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import REPO

from edge_infer.bench.results import Latency, Measurement, PipelineLatency, Report
from edge_infer.bench.tune import Target, choose, write_choice
from edge_infer.config import load_config

CANDIDATES = ("mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.75_192_quant", "mobilenet_v2_1.0_224_quant")


def measurement(model: str, fps: float, top1: float | None, threads: int = 1) -> Measurement:
    ms = 1000 / fps
    return Measurement(model, f"/m/{model}.tflite", threads, "cpu", "ai_edge_litert", "224x224 uint8",
                       Latency(ms, 0, ms, ms, ms, fps), None, None, PipelineLatency(ms, 0, ms, ms, ms, fps, 100, 0),
                       1.0, 0, 100, 50, 1, 1, 1, "mobilenet_v1", 1.0, 224, top1)


def test_the_most_accurate_setting_that_meets_the_target_with_its_margin_wins():
    report = Report(None, None, [measurement("small", 400, 40.0), measurement("mid", 60, 66.0),  # type: ignore[arg-type]
                                 measurement("large", 25, 70.8), measurement("unknown", 500, None)])
    assert choose(report, Target(fps=20)).model == "large"
    assert choose(report, Target(fps=25)).model == "mid"  # 25 fps is not 25 + 15 %
    assert choose(report, Target(latency_ms=10)).model == "small"
    assert choose(report, Target(fps=20, min_top1=71)) is None
    assert choose(report, Target(fps=1000)) is None


def test_the_choice_is_written_keeping_comments_and_other_keys(tmp_path: Path):
    shipped = (REPO / "config.yaml").read_text()
    written = write_choice(shipped, measurement("mobilenet_v1_0.75_192_quant", 60, 66.2, threads=2))
    path = tmp_path / "config.yaml"
    path.write_text(written)
    config = load_config(str(path))
    assert config.model.path == "/m/mobilenet_v1_0.75_192_quant.tflite" and config.model.num_threads == 2
    assert config.mqtt == load_config(str(REPO / "config.yaml")).mqtt  # the rest as it was
    comments = [line for line in shipped.splitlines() if line.lstrip().startswith("#")]
    assert comments == [line for line in written.splitlines() if line.lstrip().startswith("#")]
    assert len(written.splitlines()) == len(shipped.splitlines())  # replaced in place, nothing added
    # A config without a model section gets one; one without the keys gets them.
    assert yaml.safe_load(write_choice("outputs: [stdout]\n", measurement("m", 9, 1)))["model"]["num_threads"] == 1
    assert yaml.safe_load(write_choice("model:\n  labels: null\n", measurement("m", 9, 1)))["model"] == {
        "path": "/m/m.tflite", "num_threads": 1, "delegate": "cpu", "labels": None}


def test_tune_picks_a_setting_that_meets_the_target_in_a_second_measurement(cli, models: Path, tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text((REPO / "config.yaml").read_text())
    paths = [str(models / f"{name}.tflite") for name in CANDIDATES]
    done = cli("tune", "--fps", "5", "--quick", "--threads", "1", *paths, "--write", str(config), json_lines=False)
    assert done.status == 0, done.stderr
    assert "chosen for 5 fps" in done.stderr and "== alpha 1.0 ==" in done.stdout
    chosen = load_config(str(config)).model
    # V2 1.0_224 has the highest published top-1 of the three, and any machine runs it at 5 fps.
    assert Path(chosen.path).name == "mobilenet_v2_1.0_224_quant.tflite" and chosen.num_threads == 1
    assert cli("run", "--config", str(config), "--check-config").status == 0
    again = cli("bench", chosen.path, "--threads", "1", "--quick", "--json", json_lines=False)
    assert json.loads(again.stdout)["results"][0]["pipeline"]["fps"] >= 5


def test_tune_says_when_no_setting_meets_the_target(cli, models: Path):
    done = cli("tune", "--fps", "1000000", "--quick", "--threads", "1", str(models / f"{CANDIDATES[0]}.tflite"),
               json_lines=False)
    assert done.status == 1
    assert "no setting meets 1e+06 fps" in done.stderr

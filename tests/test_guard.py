"""The thermal guard: a fake thermal zone the test heats and cools, a real run that steps between real models."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import LiveRun

from edge_infer.config import load_config
from edge_infer.errors import ConfigError
from edge_infer.service.guard import GuardConfig, Reading, ThermalGuard


def test_steps_down_when_hot_and_back_up_after_a_cool_down():
    guard = ThermalGuard(GuardConfig(hot_c=75, cool_c=65, cooldown_s=30), levels=3)
    assert guard.update(Reading(70, False), 0) == 0  # warm is not hot
    assert guard.update(Reading(76, False), 5) == 1
    assert guard.update(Reading(77, False), 10) == 2
    assert guard.update(Reading(80, False), 15) == 2  # no rung below the last
    assert guard.update(Reading(70, False), 20) == 2  # between cool and hot: stay (hysteresis)
    assert guard.update(Reading(64, False), 25) == 2  # cool, but not for long enough
    assert guard.update(Reading(64, False), 54) == 2
    assert guard.update(Reading(64, False), 55) == 1  # 30 s cool: one rung up
    assert guard.update(Reading(64, False), 70) == 1  # the next rung waits a whole cool-down again
    assert guard.update(Reading(64, False), 85) == 0
    assert guard.update(Reading(50, True), 90) == 1  # the firmware throttling counts as hot, whatever the reading


def test_cool_must_be_below_hot(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("run:\n  guard:\n    hot_c: 70\n    cool_c: 72\n")
    with pytest.raises(ConfigError, match=r"run.guard: cool_c \(72\) must be below hot_c \(70\)"):
        load_config(str(path))


def test_a_run_steps_down_and_back_up_as_the_board_heats_and_cools(tmp_path: Path, models: Path, images: Path):
    zone = tmp_path / "thermal_zone0_temp"
    zone.write_text("50000\n")  # millidegrees, as the kernel writes them
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  path: {models / 'mobilenet_v1_0.75_192_quant.tflite'}\n  num_threads: 1\n"
                      f"source:\n  type: images\n  path: {images / 'parrot.jpg'}\n  loop: true\n"
                      f"run:\n  guard:\n    enabled: true\n    hot_c: 70\n    cool_c: 60\n    cooldown_s: 1.0\n"
                      f"    interval_s: 0.1\n    ladder: [{models / 'mobilenet_v1_0.25_128_quant.tflite'}]\n"
                      f"    thermal_zone: {zone}\n")
    run = LiveRun(config, tmp_path)
    try:
        run.wait_for("model", "mobilenet_v1_0.75_192_quant")
        zone.write_text("80000\n")
        run.wait_for("model", "mobilenet_v1_0.25_128_quant")
        zone.write_text("55000\n")
        run.wait_for("model", "mobilenet_v1_0.75_192_quant")
    finally:
        stderr = run.stop()
    results = run.results
    assert run.process.returncode == 0, stderr
    models_seen = [r["model"] for r in results]
    switches = [b for a, b in zip(models_seen, models_seen[1:], strict=False) if a != b]
    assert switches == ["mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.75_192_quant"]
    frames = [r["frame"] for r in results]
    assert frames == sorted(frames)  # results kept flowing through both steps
    assert {r["top"][0]["label"] for r in results} == {"macaw"}
    assert "thermal guard (80.0 C): stepping down" in stderr and "cool again, stepping up" in stderr


def test_each_step_is_in_the_stats(tmp_path: Path, models: Path, images: Path):
    from edge_infer.run import open_run

    zone = tmp_path / "zone"
    zone.write_text("90000\n")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"model:\n  path: {models / 'mobilenet_v1_0.75_192_quant.tflite'}\n"
                           f"source:\n  type: images\n  path: {images / 'parrot.jpg'}\n  loop: true\n"
                           f"run:\n  max_frames: 40\n  guard:\n    enabled: true\n    interval_s: 0.05\n"
                           f"    ladder: [{models / 'mobilenet_v1_0.25_128_quant.tflite'}]\n    thermal_zone: {zone}\n")
    class Sink:
        name = "sink"

        def publish(self, result) -> None:
            pass

        def close(self) -> None:
            pass

    with open_run(load_config(str(config_file)), outputs=[Sink()], environ={}) as run:
        time.sleep(0.3)  # the guard sees 90 C
        run.execute()
        snapshot = run.status().to_json_dict()
    assert snapshot["guard"] == {"level": 1, "model": str(models / "mobilenet_v1_0.25_128_quant.tflite"),
                                 "temperature_c": 90.0}
    assert snapshot["model"] == "mobilenet_v1_0.25_128_quant"  # the stats name the model in use

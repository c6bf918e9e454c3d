"""Edge TPU -> CPU failover: the stand-in libedgetpu is unplugged and plugged back in while a real run goes on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from broker import Broker, Subscriber
from conftest import FakeClock, LiveRun, error_lines, need
from standin_edgetpu import build_standin_edgetpu

from edge_infer.errors import ModelError, RuntimeUnavailableError
from edge_infer.pipeline.failover import LONGEST_RETRY_S, Failover

MACAW = 89  # the stand-in Edge TPU's answer: what the CPU model says of the parrot too


class Factories:
    """Stages are plain strings here; the Edge TPU answers while `plugged`."""

    def __init__(self) -> None:
        self.plugged = False
        self.tries: list[float] = []
        self.fallback_broken = False

    def accelerated(self, clock: FakeClock):
        def make(model: str) -> str:
            self.tries.append(clock.now)
            if not self.plugged:
                raise RuntimeUnavailableError("no Edge TPU device could be opened")
            return f"{model} on the Edge TPU"
        return make

    def fallback(self) -> str:
        if self.fallback_broken:
            raise ModelError("fallback.tflite does not exist")
        return "fallback on the CPU"


def test_retries_with_backoff_until_the_edge_tpu_answers():
    clock, made = FakeClock(), Factories()
    failover = Failover(made.accelerated(clock), made.fallback, "fallback", clock=clock)
    assert failover.retry("m") is None and made.tries == []  # not lost: nothing to retry
    assert failover.fail_over(RuntimeUnavailableError("Failed to execute request")) == "fallback on the CPU"
    for clock.now in range(0, 400):
        assert failover.retry("m") is None
    gaps = [b - a for a, b in zip([0.0, *made.tries], made.tries, strict=False)]
    assert gaps[:7] == [1, 2, 4, 8, 16, 32, LONGEST_RETRY_S] and set(gaps[6:]) == {LONGEST_RETRY_S}
    assert failover.health().state == "lost" and failover.health().lost_s == 399
    made.plugged = True
    clock.now = made.tries[-1] + LONGEST_RETRY_S
    assert failover.retry("m") == "m on the Edge TPU"
    assert failover.health().to_json_dict() == {"state": "edgetpu", "failovers": 1, "lost_s": clock.now}
    made.plugged = False
    failover.fail_over(RuntimeUnavailableError("Failed to execute request"))
    made.tries.clear()
    start = clock.now
    for clock.now in range(int(start), int(start) + 4):
        failover.retry("m")
    assert made.tries == [start + 1, start + 3]  # a new outage starts again at 1 s


def test_a_run_that_started_on_the_fallback_is_lost_from_the_start():
    clock, made = FakeClock(), Factories()
    failover = Failover(made.accelerated(clock), made.fallback, "fallback", lost_at_start=True, clock=clock)
    made.plugged = True
    clock.now = 1.0
    assert failover.retry("m") == "m on the Edge TPU"
    assert failover.health().failovers == 1


def test_a_fallback_that_cannot_load_ends_the_run_with_the_edge_tpu_error():
    clock, made = FakeClock(), Factories()
    made.fallback_broken = True
    failover = Failover(made.accelerated(clock), made.fallback, "fallback", clock=clock)
    error = RuntimeUnavailableError("inference failed: Failed to execute request")
    with pytest.raises(RuntimeUnavailableError) as raised:
        failover.fail_over(error)
    assert raised.value is error and isinstance(raised.value.__cause__, ModelError)
    assert not failover.lost


# --- a real run with the stand-in libedgetpu ----------------------------------------------------

def test_a_run_moves_to_the_cpu_and_back_as_the_coral_goes_and_comes(tmp_path: Path, models: Path, images: Path,
                                                                      broker: Broker):
    need("gcc")
    env = build_standin_edgetpu(tmp_path, MACAW, bus="pci")  # its invokes fail; the USB one's abort: below
    unplugged = Path(env["EDGETPU_STANDIN_UNPLUGGED"])
    unplugged.touch()  # no Coral at start: the run starts on the fallback and picks the Coral up when it comes
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  path: {models / 'mobilenet_v1_0.5_160_quant_edgetpu.tflite'}\n"
                      f"  delegate: edgetpu\n  fallback_model: mobilenet_v1_0.5_160_quant\n  models_dir: {models}\n"
                      f"  num_threads: 1\n"
                      f"source:\n  type: images\n  path: {images / 'parrot.jpg'}\n  loop: true\n"
                      f"outputs: [stdout, mqtt]\n"
                      f"mqtt:\n  port: {broker.port}\n  device: coral\n  stats_interval: 600\n")
    subscriber = Subscriber(broker.port)
    run = LiveRun(config, tmp_path, env)

    def stats_say(state: str, failovers: int) -> None:
        def says(accelerator: dict) -> bool:
            return accelerator.get("state") == state and accelerator.get("failovers") == failovers
        subscriber.wait_for(lambda m: m.topic == "edge-infer/coral/stats" and says(m.json().get("accelerator", {})))

    try:
        run.wait_for("backend", "cpu")
        stats_say("lost", 1)
        unplugged.unlink()  # plugged in
        run.wait_for("backend", "edgetpu")
        stats_say("edgetpu", 1)
        unplugged.touch()  # pulled out mid-run
        run.wait_for("backend", "cpu")
        stats_say("lost", 2)
        unplugged.unlink()
        run.wait_for("backend", "edgetpu")
        stats_say("edgetpu", 2)
    finally:
        stderr = run.stop()
        subscriber.close()
    assert run.process.returncode == 0, stderr
    results = run.results
    backends = [r["backend"] for r in results]
    moves = [b for a, b in zip(backends, backends[1:], strict=False) if a != b]
    assert moves == ["edgetpu", "cpu", "edgetpu"]
    assert {r["model"] for r in results if r["backend"] == "cpu"} == {"mobilenet_v1_0.5_160_quant"}
    assert {r["model"] for r in results if r["backend"] == "edgetpu"} == {"mobilenet_v1_0.5_160_quant_edgetpu"}
    assert {r["top"][0]["label"] for r in results} == {"macaw"}  # the real CPU model, and the stand-in's answer
    frames = [r["frame"] for r in results]
    assert frames == sorted(frames)  # one run throughout
    # The classification topic shows each move although the label stays the same (publish: change).
    published = [m.json()["backend"] for m in subscriber.on("/classification")]
    assert [b for a, b in zip(["none", *published], published, strict=False) if a != b] == [
        "cpu", "edgetpu", "cpu", "edgetpu"]
    assert ("inference failed in mobilenet_v1_0.5_160_quant_edgetpu on the Edge TPU: Failed to execute request. "
            "Device not found: running mobilenet_v1_0.5_160_quant on the CPU") in stderr
    assert stderr.count("the Edge TPU is back") == 2 and "2 time(s) on the CPU fallback" in stderr
    assert "Traceback" not in stderr
    # Each pulled Coral's driver was closed before the next was opened; none was handed out dead.
    assert Path(env["EDGETPU_STANDIN_LOG"]).read_text().splitlines()[:3] == ["opened", "closed", "opened"]


# Fails over in-process while something still holds the dead classifier (as a traceback's frame or a log
# record can), then plugs the Coral back in and tries it again.
HELD_DEAD_CLASSIFIER = """
import sys
from pathlib import Path

from edge_infer.pipeline.classifier import ModelConfig, load_classifier
from edge_infer.pipeline.failover import Failover
from edge_infer.pipeline.stages import ModelSlot

models, unplugged = Path(sys.argv[1]), Path(sys.argv[2])
coral = ModelConfig(path=str(models / "mobilenet_v1_0.5_160_quant_edgetpu.tflite"), delegate="edgetpu", num_threads=1,
                    isolate=False)
cpu = ModelConfig(path=str(models / "mobilenet_v1_0.5_160_quant.tflite"), num_threads=1)
now = [0.0]
failover = Failover(lambda path: load_classifier(coral), lambda: load_classifier(cpu), "cpu", clock=lambda: now[0])
held = load_classifier(coral)
slot = ModelSlot(held, None, coral.path, failover)
unplugged.touch()
assert not slot.invoke(held) and slot.classifier.info.backend == "cpu"
unplugged.unlink()
now[0] = 10.0
slot.between_frames()
assert slot.classifier.info.backend == "edgetpu"
assert slot.invoke(slot.classifier)  # on a driver opened afresh, not the dead one handed back
print("classified on the Coral again")
"""


def test_the_dead_interpreter_and_delegate_are_released_before_the_coral_is_retried(tmp_path: Path, models: Path):
    need("gcc")
    env = build_standin_edgetpu(tmp_path, MACAW, bus="pci")  # in process: a USB Coral pulled out would abort it
    done = subprocess.run([sys.executable, "-c", HELD_DEAD_CLASSIFIER, str(models), env["EDGETPU_STANDIN_UNPLUGGED"]],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "classified on the Coral again\n"
    assert Path(env["EDGETPU_STANDIN_LOG"]).read_text().splitlines()[:3] == ["opened", "closed", "opened"]


def test_without_a_fallback_a_lost_coral_ends_the_run_with_the_accelerator_status(tmp_path: Path, models: Path,
                                                                                   images: Path):
    need("gcc")
    env = build_standin_edgetpu(tmp_path, MACAW, bus="pci")
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  path: {models / 'mobilenet_v1_0.5_160_quant_edgetpu.tflite'}\n  delegate: edgetpu\n"
                      f"source:\n  type: images\n  path: {images / 'parrot.jpg'}\n  loop: true\n")
    run = LiveRun(config, tmp_path, env)
    run.wait_for("backend", "edgetpu")
    Path(env["EDGETPU_STANDIN_UNPLUGGED"]).touch()
    stderr = run.finished(timeout=30)
    assert run.process.returncode == 5, stderr  # systemd restarts the service; the Coral may be back by then
    [line] = error_lines(stderr)
    assert "on the Edge TPU: Failed to execute request" in line and "model.fallback_model" in line
    assert "Traceback" not in stderr


def test_a_fallback_model_that_is_not_there_is_refused_at_start(cli, tmp_path: Path, models: Path, images: Path):
    """Not when the Coral fails, months later, when nobody is watching."""
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  path: {models / 'mobilenet_v1_0.5_160_quant_edgetpu.tflite'}\n  delegate: edgetpu\n"
                      f"  fallback_model: {tmp_path / 'gone.tflite'}\n")
    done = cli("run", "--config", str(config), "--source", str(images / "parrot.jpg"))
    assert done.status == 3, done.stderr
    [line] = error_lines(done.stderr)
    assert line.startswith("edge-infer: error: model.fallback_model: ") and "gone.tflite" in line

"""Inference in a supervised worker process (pipeline/worker.py): the same scores as in process, a worker that
dies by a signal is told with its last lines and started again, and a run goes on through it; with the stand-in
libedgetpu, a USB Coral pulled out aborts the worker as the real driver aborts its process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FakeClock, LiveRun, need
from standin_edgetpu import build_standin_edgetpu

from edge_infer.errors import ModelError, WorkerDown
from edge_infer.pipeline.classifier import ModelConfig, load_classifier
from edge_infer.pipeline.worker import IsolatedClassifier

MODEL = "mobilenet_v1_0.25_128_quant.tflite"
MACAW = 89


def scores_of(classifier, image: np.ndarray) -> np.ndarray:
    tensor = classifier.input_tensor()
    tensor[:] = cv2.resize(image, (tensor.shape[1], tensor.shape[0]))[..., ::-1]
    del tensor
    classifier.invoke()
    return classifier.read_scores(np.empty(classifier.info.output.shape[1], np.float32)).copy()


@pytest.fixture
def isolated(models: Path):
    classifier = load_classifier(ModelConfig(path=str(models / MODEL), num_threads=1, isolate=True))
    yield classifier
    classifier.close()


def test_the_worker_gives_the_scores_the_interpreter_gives_in_process(isolated, models: Path, images: Path):
    assert isinstance(isolated, IsolatedClassifier) and isolated.pid != os.getpid()
    local = load_classifier(ModelConfig(path=str(models / MODEL), num_threads=1, isolate=False))
    for name in ("parrot.jpg", "cat.bmp", "sunflower.bmp"):
        image = cv2.imread(str(images / name))
        assert np.array_equal(scores_of(isolated, image), scores_of(local, image)), name
    assert isolated.info == local.info and isolated.cost() == local.cost()


@pytest.mark.parametrize("sent", [signal.SIGABRT, signal.SIGKILL, signal.SIGSEGV])
def test_a_worker_killed_by_a_signal_is_told_and_started_again_at_once(isolated, images: Path, sent, caplog):
    image = cv2.imread(str(images / "parrot.jpg"))
    before = scores_of(isolated, image)
    first = isolated.pid
    os.kill(first, sent)
    with pytest.raises(WorkerDown, match=f"ended \\({sent.name}\\)"):
        scores_of(isolated, image)
    assert f"the inference worker ended ({sent.name})" in caplog.text
    assert np.array_equal(scores_of(isolated, image), before)  # started again at once, on the same shared memory
    assert isolated.pid not in (None, first)
    assert "runs again" in caplog.text


def test_a_worker_that_cannot_start_again_is_retried_with_backoff(models: Path, images: Path, tmp_path: Path):
    model = tmp_path / MODEL
    model.write_bytes((models / MODEL).read_bytes())
    clock = FakeClock()
    isolated = IsolatedClassifier(ModelConfig(path=str(model), num_threads=1, isolate=True), clock=clock)
    try:
        os.kill(isolated.pid, signal.SIGKILL)
        model.unlink()  # the next worker cannot load it
        image = cv2.imread(str(images / "parrot.jpg"))
        with pytest.raises(WorkerDown, match="SIGKILL"):
            scores_of(isolated, image)
        with pytest.raises(WorkerDown, match="does not exist"):
            scores_of(isolated, image)  # at once: fails, next try in 1 s
        with pytest.raises(WorkerDown, match="starts again in 1 s"):
            scores_of(isolated, image)
        model.write_bytes((models / MODEL).read_bytes())
        clock.now += 1.0
        assert scores_of(isolated, image).argmax() == MACAW
    finally:
        isolated.close()


def test_a_dropped_classifier_takes_its_worker_with_it(models: Path):
    """A region moved to another model drops its slot's classifier: its worker must not live on."""
    classifier = load_classifier(ModelConfig(path=str(models / MODEL), num_threads=1, isolate=True))
    pid = classifier.pid
    del classifier
    deadline = time.monotonic() + 10
    status = Path(f"/proc/{pid}/status")
    while status.exists() and "\nState:\tZ" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not status.exists() or "\nState:\tZ" in status.read_text()  # exited (a zombie until reaped)


def test_a_model_the_worker_cannot_load_is_the_same_error_as_in_process(tmp_path: Path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="is not a TFLite model"):
        load_classifier(ModelConfig(path=str(broken), isolate=True))


def test_a_usb_coral_pulled_out_aborts_its_worker_with_the_drivers_line(tmp_path: Path, models: Path, images: Path):
    need("gcc")
    env = build_standin_edgetpu(tmp_path, MACAW, bus="usb")
    os.environ.update(env)  # the worker inherits it
    try:
        coral = load_classifier(ModelConfig(path=str(models / "mobilenet_v1_0.5_160_quant_edgetpu.tflite"),
                                            delegate="edgetpu", num_threads=1))
        try:
            image = cv2.imread(str(images / "parrot.jpg"))
            assert coral.info.backend == "edgetpu" and scores_of(coral, image).argmax() == MACAW
            Path(env["EDGETPU_STANDIN_UNPLUGGED"]).touch()
            with pytest.raises(WorkerDown, match=r"ended \(SIGABRT\).*HandleEvent failed"):
                scores_of(coral, image)
            with pytest.raises(WorkerDown, match="no Edge TPU device"):  # started again: no Coral yet
                scores_of(coral, image)
        finally:
            coral.close()
    finally:
        for key in env:
            os.environ.pop(key, None)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_a_run_goes_on_through_a_worker_killed_mid_run(tmp_path: Path, models: Path, images: Path):
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  path: {models / MODEL}\n  num_threads: 1\n  isolate: true\n"
                      f"source:\n  type: images\n  path: {images / 'parrot.jpg'}\n  loop: true\n")
    run = LiveRun(config, tmp_path)
    try:
        run.wait_for("model", MODEL.removesuffix(".tflite"))
        [worker] = children(run.process.pid)
        os.kill(worker, signal.SIGABRT)
        seen = len(run.results)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(run.results) < seen + 20 or children(run.process.pid) == [worker]):
            time.sleep(0.05)
        assert children(run.process.pid) not in ([], [worker])
    finally:
        stderr = run.stop()
    assert run.process.returncode == 0, stderr
    assert "the inference worker ended (SIGABRT)" in stderr and "runs again" in stderr
    assert len(run.results) >= seen + 20 and {r["top"][0]["label"] for r in run.results} == {"macaw"}
    assert "Traceback" not in stderr


def test_a_usb_coral_pulled_out_mid_run_moves_to_the_fallback_and_back_on_a_new_worker(tmp_path: Path, models: Path,
                                                                                      images: Path):
    need("gcc")
    env = build_standin_edgetpu(tmp_path, MACAW, bus="usb")
    unplugged = Path(env["EDGETPU_STANDIN_UNPLUGGED"])
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  path: {models / 'mobilenet_v1_0.5_160_quant_edgetpu.tflite'}\n"
                      f"  delegate: edgetpu\n  fallback_model: mobilenet_v1_0.5_160_quant\n  models_dir: {models}\n"
                      f"  num_threads: 1\nsource:\n  type: images\n  path: {images / 'parrot.jpg'}\n  loop: true\n")
    run = LiveRun(config, tmp_path, env)
    try:
        run.wait_for("backend", "edgetpu")
        unplugged.touch()  # pulled out: the worker aborts
        run.wait_for("backend", "cpu")
        unplugged.unlink()
        run.wait_for("backend", "edgetpu")
    finally:
        stderr = run.stop()
    assert run.process.returncode == 0, stderr
    backends = [r["backend"] for r in run.results]
    assert [b for a, b in zip(backends, backends[1:], strict=False) if a != b] == ["cpu", "edgetpu"]
    assert "the inference worker ended (SIGABRT); its last lines: " in stderr and "HandleEvent failed" in stderr
    assert "Traceback" not in stderr

"""The Hailo backend against a stand-in HailoRT (tests/fake_hailo: hailo_platform as hailo-ai/hailort v4.23.0 defines
it, whose "network" runs a real TFLite MobileNet from ../shared on the pixels it is given): classification, the
failure modes HailoRT has (no device, a device in use, a driver of another version, a HEF for another chip, a device
lost mid-run), the worker process, the failover to a CPU model, the zoo, doctor, bench and tune.

No real Hailo or HailoRT runs here: what the stand-in cannot show is what the chip computes and how fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, LiveRun, error_lines

from edge_infer.bench.plan import BenchPlan, tasks
from edge_infer.errors import ModelError, RuntimeUnavailableError
from edge_infer.models.files import resolve_model
from edge_infer.models.pull import UnsafeDownload, pull, recorded
from edge_infer.models.zoo import HAILO, build_manifest, find_entry
from edge_infer.pipeline import hailo as hailo_module
from edge_infer.pipeline.classifier import Classifier, ModelConfig, load_classifier
from edge_infer.pipeline.failover import Failover
from edge_infer.pipeline.hailo import gives_probabilities
from edge_infer.pipeline.stages import ModelSlot
from edge_infer.service import doctor
from edge_infer.service.doctor import CommandResult, HailoState, check_hailo, read_hailo

FAKE_HAILO = REPO / "tests" / "fake_hailo"
V2 = "mobilenet_v2_1.0_224_quant"  # the CPU model the stand-in network runs (and the fallback)
MACAW = 89  # its output index for the parrot, background at 0


# --- the stand-in machine ----------------------------------------------------------------------------------------

def machine(tmp_path: Path, arch: str = "HAILO8L", driver: str = "4.23.0") -> Path:
    """A root laid out as /: dev/hailo0 names the chip; sys/module/hailo_pci/version the driver's version."""
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True, exist_ok=True)
    (root / "dev" / "hailo0").write_text(arch + "\n")
    (root / "sys/module/hailo_pci").mkdir(parents=True, exist_ok=True)
    (root / "sys/module/hailo_pci/version").write_text(driver + "\n")
    return root


def write_hef(path: Path, tflite: Path, arch: str = "HAILO8L", output: str = "softmax", classes: int = 1001) -> Path:
    path.write_bytes(b"\x01HEF" + json.dumps({"tflite": str(tflite), "arch": arch, "output": output,
                                               "classes": classes}).encode())
    return path


def standin_env(root: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(FAKE_HAILO), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "HAILO_STANDIN_ROOT": str(root)}


@pytest.fixture
def hailort(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The stand-in HailoRT, in this process and in every child (worker, bench) it starts; yields the machine's root."""
    root = machine(tmp_path)
    for key, value in standin_env(root).items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(FAKE_HAILO))
    yield root
    for name in [m for m in sys.modules if m == "hailo_platform" or m.startswith("hailo_platform.")]:
        del sys.modules[name]


def hailo_config(hef: Path, **changes: object) -> ModelConfig:
    return ModelConfig(**{"path": str(hef), "delegate": "hailo", "isolate": False, **changes})  # type: ignore[arg-type]


def parrot(width: int = 224, height: int = 224) -> np.ndarray:
    """parrot.jpg center-cropped and scaled, RGB: what the preprocessing writes into the input."""
    image = cv2.imread(str(images_dir() / "parrot.jpg"))
    side = min(image.shape[:2])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    square = image[top: top + side, left: left + side]
    return cv2.cvtColor(cv2.resize(square, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def images_dir() -> Path:
    return Path(os.environ.get("EDGE_INFER_TEST_DATA", REPO.parent / "shared")) / "images"


def scores_of(classifier: Classifier, pixels: np.ndarray) -> np.ndarray:
    classifier.input_tensor()[...] = pixels
    classifier.invoke()
    return classifier.read_scores(np.empty(classifier.info.output.shape[1], np.float32)).copy()


# --- classifying --------------------------------------------------------------------------------------------------

def test_a_hef_classifies_as_the_network_it_was_compiled_from(hailort: Path, models: Path, images: Path,
                                                             tmp_path: Path):
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    hailo = load_classifier(hailo_config(hef))
    cpu = load_classifier(ModelConfig(path=str(models / f"{V2}.tflite"), num_threads=1))
    try:
        info = hailo.info
        assert (info.backend, info.runtime, info.threads) == ("hailo", "hailort 4.23.0", 1)
        assert info.input.shape == (1, 224, 224, 3) and info.input.dtype is np.uint8
        assert info.output.shape == (1, 1001) and info.output.dtype is np.float32 and info.output.scale == 0
        assert info.labels[0] == "background" and info.labels[MACAW] == "macaw"
        assert "ImageNet labels" in info.labels_source
        assert info.packed == {"mean": 0.0, "std": 1.0}  # the pixels go in as they are
        theirs, ours = scores_of(cpu, parrot()), scores_of(hailo, parrot())
        assert int(ours.argmax()) == MACAW
        np.testing.assert_allclose(ours, theirs, atol=1e-6)  # softmax output: dequantized, nothing else
        assert hailo.raw_scores() is not None and np.allclose(hailo.raw_scores(), ours)
        assert hailo.cost().macs is None
    finally:
        hailo.close()
        cpu.close()


def test_logits_get_a_softmax_and_1000_outputs_line_up_with_the_labels(hailort: Path, models: Path, tmp_path: Path):
    hef = write_hef(tmp_path / "logits.hef", models / f"{V2}.tflite", output="logits", classes=1000)
    hailo = load_classifier(hailo_config(hef))
    cpu = load_classifier(ModelConfig(path=str(models / f"{V2}.tflite"), num_threads=1))
    try:
        assert hailo.info.output.shape == (1, 1000)
        assert hailo.info.labels[0] == "tench, Tinca tinca" and hailo.info.labels[MACAW - 1] == "macaw"
        ours, theirs = scores_of(hailo, parrot()), scores_of(cpu, parrot())
        assert int(ours.argmax()) == MACAW - 1
        assert abs(float(ours.sum()) - 1.0) < 1e-5 and ours.min() >= 0  # softmaxed
        # softmax(log p + c) is p again, up to the logits' uint8 steps and their floor at e^-24
        assert abs(float(ours[MACAW - 1]) - float(theirs[MACAW])) < 0.05
    finally:
        hailo.close()
        cpu.close()


def test_a_labels_file_of_1000_lines_lines_up_with_1001_outputs(hailort: Path, models: Path, tmp_path: Path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join((models / "imagenet_labels.txt").read_text().splitlines()[1:]) + "\n")
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    hailo = load_classifier(hailo_config(hef, labels=str(labels)))
    try:
        assert hailo.info.labels_source == str(labels)
        assert hailo.info.labels[0] == "background" and hailo.info.labels[MACAW] == "macaw"
    finally:
        hailo.close()


@pytest.mark.parametrize(("dtype", "scale", "zero_point", "expected"), [
    (np.uint8, 1 / 256, 0, True),  # a softmax quantized as TFLite does
    (np.uint8, 1 / 255, 0, True),
    (np.uint8, 24 / 255, 148.75, False),  # [-14, 10]: logits
    (np.uint8, 0.1, 0, False),  # [0, 25.5]: ReLU'd logits
    (np.uint16, 1 / 65535, 0, True),
    (np.float32, 0.0, 0, None),  # decided per frame
])
def test_probabilities_or_logits_is_read_off_the_output_quantization(dtype, scale, zero_point, expected):
    assert gives_probabilities(dtype, scale, zero_point) is expected


# --- what HailoRT refuses -----------------------------------------------------------------------------------------

def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_no_device_is_an_accelerator_error_saying_what_to_check(hailort: Path, models: Path, tmp_path: Path):
    (hailort / "dev" / "hailo0").unlink()
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    with pytest.raises(RuntimeUnavailableError) as raised:
        load_classifier(hailo_config(hef))
    text = one_line(raised.value)
    assert "no Hailo device found" in text and "HAILO_OUT_OF_PHYSICAL_DEVICES" in text and "hailo_pci" in text


def test_a_device_another_vdevice_holds_is_in_use(hailort: Path, models: Path, tmp_path: Path):
    import hailo_platform

    holder = hailo_platform.VDevice()  # as another process (or a VDevice never released) would hold it
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    try:
        with pytest.raises(RuntimeUnavailableError) as raised:
            load_classifier(hailo_config(hef))
        assert "in use by another process" in one_line(raised.value)
    finally:
        holder.release()
    load_classifier(hailo_config(hef)).close()  # free again


def test_a_driver_of_another_version_is_refused_naming_both(tmp_path: Path, models: Path, hailort: Path):
    (hailort / "sys/module/hailo_pci/version").write_text("4.20.0\n")
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    with pytest.raises(RuntimeUnavailableError) as raised:
        load_classifier(hailo_config(hef))
    text = one_line(raised.value)
    assert "different versions" in text and "HAILO_INVALID_DRIVER_VERSION" in text and "4.23.0" in text


def test_a_hef_for_the_hailo8_on_a_hailo8l_names_the_one_to_use(hailort: Path, models: Path, tmp_path: Path):
    wrong = write_hef(tmp_path / "mobilenet_v2_1.0_224_hailo8.hef", models / f"{V2}.tflite", arch="HAILO8")
    with pytest.raises(ModelError) as raised:  # exit 3: a restart cannot fix it, fallback model or not
        load_classifier(hailo_config(wrong))
    text = one_line(raised.value)
    assert "compiled for the HAILO8, not for the HAILO8L here" in text
    assert "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE" in text and "mobilenet_v2_1.0_224_hailo8l" in text
    right = write_hef(tmp_path / "mobilenet_v2_1.0_224_hailo8l.hef", models / f"{V2}.tflite")
    load_classifier(hailo_config(right)).close()  # the refused model released the device


def test_a_hailo8_runs_a_hef_for_the_hailo8l(tmp_path: Path, models: Path, hailort: Path):
    (hailort / "dev" / "hailo0").write_text("HAILO8\n")
    hailo = load_classifier(hailo_config(write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite", arch="HAILO8L")))
    try:
        assert int(scores_of(hailo, parrot()).argmax()) == MACAW
    finally:
        hailo.close()


def test_files_that_are_not_a_hef_it_can_read_are_model_errors(hailort: Path, models: Path, tmp_path: Path):
    with pytest.raises(ModelError, match="is a TFLite model: the Hailo runs HEF files"):
        load_classifier(hailo_config(models / f"{V2}.tflite"))
    broken = tmp_path / "broken.hef"
    broken.write_bytes(b"\x01HEF{not json")
    with pytest.raises(ModelError) as raised:
        load_classifier(hailo_config(broken))
    assert "HailoRT 4.23.0 cannot read" in one_line(raised.value) and "HAILO_INVALID_HEF" in str(raised.value)
    junk = tmp_path / "junk.hef"
    junk.write_bytes(b"GIF89a and more")
    with pytest.raises(ModelError, match="is not a Hailo HEF"):
        load_classifier(hailo_config(junk))
    with pytest.raises(ModelError, match="is a Hailo model .HEF.*model.delegate: hailo"):  # a HEF on the CPU
        load_classifier(ModelConfig(path=str(write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite"))))


def test_without_hailort_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, models: Path,
                                                          tmp_path: Path):
    monkeypatch.setitem(sys.modules, "hailo_platform", None)  # import hailo_platform raises ImportError
    with pytest.raises(RuntimeUnavailableError) as raised:
        load_classifier(hailo_config(write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")))
    assert "hailo_platform" in one_line(raised.value) and "hailo-all" in str(raised.value)


def test_a_device_lost_mid_run_fails_the_invoke_and_is_free_again_once_closed(hailort: Path, models: Path,
                                                                              tmp_path: Path):
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    hailo = load_classifier(hailo_config(hef))
    assert int(scores_of(hailo, parrot()).argmax()) == MACAW
    node = hailort / "dev" / "hailo0"
    node.unlink()
    with pytest.raises(RuntimeUnavailableError) as raised:
        scores_of(hailo, parrot())
    text = one_line(raised.value)
    assert text.startswith("inference failed in v2 on the Hailo:") and "HAILO_DRIVER_OPERATION_FAILED" in text
    hailo.close()
    hailo.close()  # twice is harmless
    node.write_text("HAILO8L\n")
    again = load_classifier(hailo_config(hef))  # a new VDevice: the old one was released
    try:
        assert int(scores_of(again, parrot()).argmax()) == MACAW
    finally:
        again.close()


def test_two_hefs_in_one_process_share_its_vdevice(hailort: Path, models: Path, tmp_path: Path):
    first = load_classifier(hailo_config(write_hef(tmp_path / "a.hef", models / f"{V2}.tflite")))
    second = load_classifier(hailo_config(write_hef(tmp_path / "b.hef", models / "mobilenet_v1_0.5_160_quant.tflite")))
    try:
        assert int(scores_of(first, parrot()).argmax()) == MACAW
        assert int(scores_of(second, parrot(160, 160)).argmax()) == MACAW
        first.close()
        assert int(scores_of(second, parrot(160, 160)).argmax()) == MACAW  # the VDevice lives on with its last user
    finally:
        first.close()
        second.close()
    import hailo_platform

    hailo_platform.VDevice().release()  # and goes with it: the device is free


# --- in a worker process (model.isolate: auto) --------------------------------------------------------------------

def test_isolated_it_classifies_in_the_worker_and_its_errors_keep_their_kind(hailort: Path, models: Path,
                                                                            tmp_path: Path):
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    isolated = load_classifier(hailo_config(hef, isolate="auto"))
    in_process = load_classifier(ModelConfig(path=str(models / f"{V2}.tflite"), num_threads=1))
    try:
        assert type(isolated).__name__ == "IsolatedClassifier" and isolated.pid != os.getpid()
        assert isolated.info.backend == "hailo" and isolated.info.labels[MACAW] == "macaw"
        np.testing.assert_allclose(scores_of(isolated, parrot()), scores_of(in_process, parrot()), atol=1e-6)
    finally:
        isolated.close()
        in_process.close()
    wrong = write_hef(tmp_path / "for_hailo8.hef", models / f"{V2}.tflite", arch="HAILO8")
    with pytest.raises(ModelError, match="compiled for another chip, not for the HAILO8L"):
        load_classifier(hailo_config(wrong, isolate="auto"))
    (hailort / "dev" / "hailo0").unlink()
    with pytest.raises(RuntimeUnavailableError, match="no Hailo device found"):
        load_classifier(hailo_config(hef, isolate="auto"))


# --- the failover to a CPU model ------------------------------------------------------------------------------------

def failover_slot(tmp_path: Path, models: Path) -> tuple[ModelSlot, Failover, list[float]]:
    """A slot on the Hailo that fails over to the same network on the CPU; its clock is the list's number."""
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    config = hailo_config(hef, fallback_model=f"{V2}", models_dir=str(models))
    cpu = ModelConfig(path=str(models / f"{V2}.tflite"), num_threads=1)
    now = [0.0]
    failover = Failover(lambda path: load_classifier(config), lambda: load_classifier(cpu), V2,
                        clock=lambda: now[0], accelerator="hailo")
    return ModelSlot(load_classifier(config), None, config.path, failover), failover, now


def test_a_hailo_lost_mid_run_fails_over_in_process_and_comes_back(hailort: Path, models: Path, tmp_path: Path):
    slot, failover, now = failover_slot(tmp_path, models)
    slot.classifier.input_tensor()[...] = parrot()
    assert slot.invoke(slot.classifier)
    (hailort / "dev" / "hailo0").unlink()
    dead = slot.classifier
    assert not slot.invoke(dead) and slot.classifier.info.backend == "cpu"
    assert failover.health().to_json_dict() == {"state": "lost", "failovers": 1, "lost_s": 0.0}
    (hailort / "dev" / "hailo0").write_text("HAILO8L\n")
    now[0] = 10.0
    slot.between_frames()  # the retry: a new VDevice, the dead one having been released at the failover
    assert slot.classifier.info.backend == "hailo" and failover.health().state == "hailo"
    assert int(scores_of(slot.classifier, parrot()).argmax()) == MACAW
    slot.classifier.close()


def test_a_hailo_that_stops_answering_times_out_and_fails_over(hailort: Path, models: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, caplog):
    # A hung device is there but never completes a job: each invoke would wait INVOKE_TIMEOUT_MS (10 s, well
    # inside the unit's WatchdogSec=30) before HAILO_TIMEOUT; 0.3 s here.
    monkeypatch.setattr(hailo_module, "INVOKE_TIMEOUT_MS", 300)
    slot, failover, now = failover_slot(tmp_path, models)
    (hailort / "dev" / "hailo0.hung").touch()
    hung = slot.classifier
    hung.input_tensor()[...] = parrot()
    started = time.monotonic()
    assert not slot.invoke(hung)
    assert time.monotonic() - started >= 0.3  # it waited for the device, as long as it was told
    assert slot.classifier.info.backend == "cpu" and failover.health().state == "lost"
    assert "(HailoRT: HAILO_TIMEOUT): running mobilenet_v2_1.0_224_quant on the CPU" in caplog.text
    assert int(scores_of(slot.classifier, parrot()).argmax()) == MACAW  # the fallback classifies
    (hailort / "dev" / "hailo0.hung").unlink()  # reset: the hung VDevice was released at the failover
    now[0] = 10.0
    slot.between_frames()
    assert slot.classifier.info.backend == "hailo" and int(scores_of(slot.classifier, parrot()).argmax()) == MACAW
    slot.classifier.close()


def run_config(tmp_path: Path, models: Path, images: Path, fallback: bool) -> Path:
    hef = write_hef(tmp_path / "mobilenet_v2_1.0_224_hailo8l.hef", models / f"{V2}.tflite")
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  path: {hef}\n  delegate: hailo\n  models_dir: {models}\n  num_threads: 1\n"
                      + (f"  fallback_model: {V2}\n" if fallback else "")
                      + f"source:\n  type: images\n  path: {images / 'parrot.jpg'}\n  loop: true\n")
    return config


def wait_for(run: LiveRun, backend: str, timeout: float = 30) -> None:
    """Until the newest result comes from `backend`; fails at once when the run ends instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.results and run.results[-1]["backend"] == backend:
            return
        if run.process.poll() is not None:
            raise AssertionError(f"the run ended ({run.process.returncode}) before results came from {backend}: "
                                 f"{run.finished()[-600:]}")
        time.sleep(0.05)
    raise AssertionError(f"no results from {backend}; last: {run.results[-1] if run.results else None}")


def test_edge_infer_run_classifies_the_parrot_on_the_hailo(cli, models: Path, images: Path, tmp_path: Path):
    root = machine(tmp_path)
    hef = write_hef(tmp_path / "mobilenet_v2_1.0_224_hailo8l.hef", models / f"{V2}.tflite")
    done = cli("run", "--model", str(hef), "--source", str(images / "parrot.jpg"), "--config",
               str(write_config(tmp_path)), env=standin_env(root))
    assert done.status == 0, done.stderr
    [result] = done.results
    assert result["label"] == "macaw" and result["backend"] == "hailo"
    assert result["model"] == "mobilenet_v2_1.0_224_hailo8l" and result["top"][0]["index"] == MACAW
    assert "HailoRT 4.23.0 on HAILO8L, probabilities from the network" in done.stderr
    assert "Traceback" not in done.stderr


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "hailo.yaml"
    config.write_text("model:\n  delegate: hailo\n")
    return config


def test_a_run_refused_by_the_hailo_says_so_in_one_line(cli, models: Path, images: Path, tmp_path: Path):
    root = machine(tmp_path, driver="4.20.0")
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    done = cli("run", "--model", str(hef), "--source", str(images / "parrot.jpg"), "--config",
               str(write_config(tmp_path)), env=standin_env(root))
    assert done.status == 5, done.stderr  # RuntimeUnavailableError; systemd restarts the service
    [line] = error_lines(done.stderr)
    assert "HAILO_INVALID_DRIVER_VERSION" in line and "set model.fallback_model" in line
    assert "Traceback" not in done.stderr
    root = machine(tmp_path / "8l")
    wrong = write_hef(tmp_path / "for8.hef", models / f"{V2}.tflite", arch="HAILO8")
    done = cli("run", "--model", str(wrong), "--source", str(images / "parrot.jpg"), "--config",
               str(write_config(tmp_path)), env=standin_env(root))
    assert done.status == 3, done.stderr  # ModelError: RestartPreventExitStatus keeps systemd from retrying
    [line] = error_lines(done.stderr)
    assert "compiled for another chip, not for the HAILO8L" in line


def test_a_hailo_missing_at_start_runs_the_fallback_with_the_same_labels(tmp_path: Path, models: Path,
                                                                         images: Path):
    root = machine(tmp_path)
    (root / "dev" / "hailo0").unlink()
    run = LiveRun(run_config(tmp_path, models, images, fallback=True), tmp_path, standin_env(root))
    try:
        wait_for(run, "cpu")
        assert run.results[-1]["model"] == V2 and run.results[-1]["label"] == "macaw"
    finally:
        stderr = run.stop()
    assert run.process.returncode == 0, stderr
    assert "no Hailo device found" in stderr and f"falling back to {V2} on the CPU" in stderr


def test_a_run_moves_to_the_cpu_and_back_as_the_hailo_goes_and_comes(tmp_path: Path, models: Path, images: Path):
    root = machine(tmp_path)
    node = root / "dev" / "hailo0"
    run = LiveRun(run_config(tmp_path, models, images, fallback=True), tmp_path, standin_env(root))
    try:
        wait_for(run, "hailo")
        node.unlink()  # the device drops off mid-run
        wait_for(run, "cpu")
        node.write_text("HAILO8L\n")
        wait_for(run, "hailo")
    finally:
        stderr = run.stop()
    assert run.process.returncode == 0, stderr
    backends = [r["backend"] for r in run.results]
    assert [b for a, b in zip(backends, backends[1:], strict=False) if a != b] == ["cpu", "hailo"]
    assert {r["label"] for r in run.results} == {"macaw"}  # the same labels on both
    assert {r["model"] for r in run.results if r["backend"] == "cpu"} == {V2}
    assert "inference failed in mobilenet_v2_1.0_224_hailo8l on the Hailo" in stderr
    assert f"running {V2} on the CPU, trying the Hailo again" in stderr and "the Hailo is back" in stderr
    assert "Traceback" not in stderr


def test_without_a_fallback_a_lost_hailo_ends_the_run_with_the_accelerator_status(tmp_path: Path, models: Path,
                                                                                   images: Path):
    root = machine(tmp_path)
    run = LiveRun(run_config(tmp_path, models, images, fallback=False), tmp_path, standin_env(root))
    wait_for(run, "hailo")
    (root / "dev" / "hailo0").unlink()
    stderr = run.finished(timeout=30)
    assert run.process.returncode == 5, stderr
    [line] = error_lines(stderr)
    assert "on the Hailo" in line and "HAILO_DRIVER_OPERATION_FAILED" in line
    assert "Traceback" not in stderr


# --- the zoo ------------------------------------------------------------------------------------------------------

def test_the_zoo_has_hailos_mobilenets_for_each_chip_with_their_published_numbers():
    hailo = {e.name: e for e in build_manifest() if e.hailo}
    assert sorted(hailo) == sorted(f"mobilenet_{net}_224_{chip}" for chip in ("hailo8", "hailo8l")
                                   for net in ("v1_1.0", "v2_1.0", "v2_1.4"))
    v2 = hailo["mobilenet_v2_1.0_224_hailo8l"]
    assert v2.url == f"{HAILO}/hailo8l/mobilenet_v2_1.0.hef" and HAILO.startswith("https://")
    assert (v2.top1, v2.fps, v2.file_name, v2.kind) == (70.9, 1738, "mobilenet_v2_1.0_224_hailo8l.hef", "hailo8l")
    assert (hailo["mobilenet_v2_1.4_224_hailo8"].fps, hailo["mobilenet_v1_1.0_224_hailo8"].top1) == (1652, 70.3)
    for entry in hailo.values():
        assert entry.sha256 is None and entry.git_blob is None and not entry.pinned(from_archive=False)
        assert entry.url.endswith(f"/{entry.hailo}/" + entry.url.rsplit("/", 1)[1])
    assert find_entry(build_manifest(), "mobilenet_v2_1.0_224_hailo8l.hef") is v2


def test_a_hailo_entry_is_pulled_only_as_a_hef_and_then_found_by_name(tmp_path: Path, models: Path):
    entry = find_entry(build_manifest(), "mobilenet_v2_1.0_224_hailo8l")
    mirror, target = tmp_path / "mirror", tmp_path / "models"
    mirror.mkdir()
    (mirror / entry.file_name).write_text("<html>503 Service Unavailable</html>")
    with pytest.raises(UnsafeDownload, match="not a Hailo HEF"):
        pull(entry, target, str(mirror))
    assert not (target / entry.file_name).exists()
    write_hef(mirror / entry.file_name, models / f"{V2}.tflite")
    assert pull(entry, target, str(mirror))
    assert recorded(target / entry.file_name)  # its sha256 guards it from now on
    assert resolve_model("mobilenet_v2_1.0_224_hailo8l", str(target)) == target / entry.file_name
    with pytest.raises(UnsafeDownload, match="no published hash"):  # nothing pins it: never over plain http
        pull(entry, tmp_path / "other", "http://127.0.0.1:9")


# --- doctor -------------------------------------------------------------------------------------------------------

IDENTIFY = ("Executing on device: 0000:01:00.0\nIdentifying board\nControl Protocol Version: 2\n"
            "Firmware Version: 4.23.0 (release,app,extended context switch buffer)\nLogger Version: 0\n"
            "Board Name: Hailo-8\nDevice Architecture: {arch}\nSerial Number: <N/A>\n")


class Runner:
    """hailortcli answers as upstream prints (fw_control_command.cpp, hef.cpp get_description); python really runs."""

    def __init__(self, arch: str = "HAILO8L", hef_arch: str | None = "HAILO8L") -> None:
        self.arch, self.hef_arch = arch, hef_arch
        self.calls: list[list[str]] = []

    def __call__(self, argv, *, timeout: float = 10.0, env=None) -> CommandResult | None:
        self.calls.append(list(argv))
        if argv[:3] == ["hailortcli", "fw-control", "identify"]:
            return CommandResult(0, IDENTIFY.format(arch=self.arch), "")
        if argv[:2] == ["hailortcli", "parse-hef"]:
            if self.hef_arch is None:
                return CommandResult(1, "", "[HailoRT] [error] Failed parsing HEF file")
            return CommandResult(0, f"Architecture HEF was compiled for: {self.hef_arch}\nNetwork group name: x\n", "")
        return doctor.run_command(argv, timeout=timeout, env=env)


def test_doctor_reads_the_device_the_versions_and_the_hef_chip(tmp_path: Path, models: Path):
    root = machine(tmp_path)
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    env = {**os.environ, **standin_env(root)}
    state = read_hailo(str(hef), None, Runner(), sys.executable, env, str(root / "dev"), str(root))
    assert state == HailoState(True, "4.23.0", "4.23.0", None, "HAILO8L", str(hef), "HAILO8L")
    check = check_hailo(state, wanted=True)
    assert check.verdict == "ok", check
    assert "/dev/hailo0 (HAILO8L)" in check.detail and "driver 4.23.0 (matches)" in check.detail
    # Without HailoRT's Python package: said, with how to install it.
    state = read_hailo(None, None, Runner(), sys.executable, {**os.environ, "PYTHONPATH": ""}, str(root / "dev"),
                       str(root))
    assert state.library is None and "hailo_platform" in (state.library_error or "")
    check = check_hailo(state, wanted=True)
    assert check.verdict == "fail" and "hailo-all" in (check.fix or "")


def test_doctor_judges_a_hef_it_cannot_parse_by_its_zoo_name(tmp_path: Path, models: Path):
    root = machine(tmp_path)
    hef = write_hef(tmp_path / "mobilenet_v1_1.0_224_hailo8.hef", models / f"{V2}.tflite", arch="HAILO8")
    state = read_hailo(str(hef), None, Runner(hef_arch=None), sys.executable, {**os.environ, **standin_env(root)},
                       str(root / "dev"), str(root))
    assert state.hef_arch == "HAILO8"
    check = check_hailo(state, wanted=True, fallback=True)
    assert check.verdict == "fail"  # a ModelError at start: the fallback does not run instead
    assert "compiled for HAILO8, not for this HAILO8L" in check.detail and "*_hailo8l" in (check.fix or "")


def state(**changes: object) -> HailoState:
    fields = {"device": True, "driver": "4.23.0", "library": "4.23.0", "library_error": None,
              "device_arch": "HAILO8L", "hef": "m.hef", "hef_arch": "HAILO8L", **changes}
    return HailoState(**fields)  # type: ignore[arg-type]


def test_doctor_verdicts():
    mismatch = check_hailo(state(driver="4.20.0"), wanted=True)
    assert mismatch.verdict == "fail" and "HAILO_INVALID_DRIVER_VERSION" in mismatch.detail
    assert "driver 4.20.0 is not the library's 4.23.0" in mismatch.detail and "reboot" in (mismatch.fix or "")
    assert check_hailo(state(driver="4.20.0"), wanted=True, fallback=True).verdict == "warn"  # the CPU goes on
    gone = check_hailo(state(device=False, device_arch=None), wanted=True)
    assert gone.verdict == "fail" and "no /dev/hailo0" in gone.detail and "dtparam=pciex1" in (gone.fix or "")
    assert check_hailo(state(device=False, library=None), wanted=False).verdict == "skip"
    slower = check_hailo(state(device_arch="HAILO8"), wanted=True)
    assert slower.verdict == "ok" and "more slowly" in slower.detail
    assert check_hailo(state(hef_arch="HAILO8"), wanted=True).verdict == "fail"


def test_doctor_runs_the_hailo_check_for_a_hailo_configuration(tmp_path: Path, models: Path):
    root = machine(tmp_path, driver="4.20.0")
    hef = write_hef(tmp_path / "v2.hef", models / f"{V2}.tflite")
    (tmp_path / "config.yaml").write_text(f"model:\n  path: {hef}\n  delegate: hailo\n")
    host = doctor.Host(run=Runner(), environ={**os.environ, **standin_env(root)}, dev=str(root / "dev"),
                       board_root=str(root))
    report = doctor.run_checks(str(tmp_path / "config.yaml"), host)
    [hailo] = [check for check in report.checks if check.name == "hailo"]
    assert hailo.verdict == "fail" and "4.20.0" in hailo.detail, hailo
    assert [check.name for check in report.checks].index("hailo") == 1 + [
        check.name for check in report.checks].index("coral")
    assert {check.name: check for check in report.checks}["models"].verdict != "fail"  # a HEF is a model file


# --- bench and tune -----------------------------------------------------------------------------------------------

def test_bench_plans_a_hef_on_the_hailo_only_where_hailort_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             models: Path):
    hef = str(write_hef(tmp_path / "mobilenet_v2_1.0_224_hailo8l.hef", models / f"{V2}.tflite"))
    plan = BenchPlan((str(models / f"{V2}.tflite"), hef), (1, 2), 1, 1, 1, 0.1, True, None)
    monkeypatch.syspath_prepend(str(FAKE_HAILO))
    planned = [(Path(t.model).name, t.threads, t.delegate, t.reference) for t in tasks(plan)]
    assert planned == [(f"{V2}.tflite", 1, "cpu", True), (f"{V2}.tflite", 2, "cpu", True),
                       ("mobilenet_v2_1.0_224_hailo8l.hef", 1, "hailo", False)]  # once, and no LiteRT reference
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(FAKE_HAILO)])
    assert [t.delegate for t in tasks(plan)] == ["cpu", "cpu"]


def test_tune_measures_the_hef_and_writes_delegate_hailo(cli, tmp_path: Path, models: Path):
    root = machine(tmp_path)
    hef = write_hef(tmp_path / "mobilenet_v2_1.0_224_hailo8l.hef", models / f"{V2}.tflite")
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  path: x\n")
    done = cli("tune", "--fps", "1", "--quick", "--threads", "1", str(models / "mobilenet_v1_0.25_128_quant.tflite"),
               str(hef), "--write", str(config), json_lines=False, env=standin_env(root))
    assert done.status == 0, done.stderr
    assert "mobilenet_v2_1.0_224_hailo8l, 1 thread(s)" in done.stderr  # the higher published top-1 (70.9 %)
    assert re.search(r"^mobilenet_v2_1\.0_224_hailo8l\s+224\s+1\s+hailo\s", done.stdout, re.M)  # its bench row
    written = config.read_text()
    assert f"path: {hef}" in written and "delegate: hailo" in written

"""The AI Camera (IMX500) backend: the network on the sensor, its scores in each frame's metadata.

The pure parts (the inference window, softmax and labels, the configuration's rules, doctor's verdicts) are tested
as they are; the rest against the stand-in for picamera2's IMX500 (tests/fake_picamera2/picamera2/devices/imx500),
which mirrors upstream's picamera2/devices/imx500/imx500.py and runs a real MobileNet as the sensor's network. No
AI Camera is here: the real sensor, its firmware upload and libcamera's IMX500 IPA are not run.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, ListOutput, NotifySocket, error_lines, side_by_side

from edge_infer.config import load_config
from edge_infer.errors import ConfigError, ModelError
from edge_infer.models.tensors import TensorSpec
from edge_infer.models.zoo import build_manifest, find_entry
from edge_infer.pipeline.classifier import LoadedModel, ModelConfig, load_classifier
from edge_infer.pipeline.imx500 import (
    FULL_SENSOR,
    Imx500Classifier,
    UploadProgress,
    describe_progress,
    network_labels,
    network_window,
)
from edge_infer.run import open_run
from edge_infer.service.doctor import CommandResult, Imx500State, check_imx500, read_imx500
from edge_infer.values import Box

FAKE = REPO / "tests" / "fake_picamera2"
V2 = "mobilenet_v2_1.0_224_quant"  # the real network the stand-in sensor runs
EGYPTIAN_CAT = 286  # its index among 1001 outputs, background at 0


# --- the pure parts ----------------------------------------------------------------------------------------------

def test_the_window_is_the_box_of_the_frames_view_of_the_sensor_cropped_to_the_input():
    # 4:3 frames see all of the 4056x3040 sensor (but 3 columns: it is a hair wider than 4:3); the whole frame,
    # centre-cropped to 224x224, is its middle square.
    x, y, width, height = network_window(Box.WHOLE, "center", (224, 224), (640, 480))
    assert abs(x - (4056 - 3040) // 2) <= 1 and (y, width, height) == (0, 3040, 3040)
    x, y, width, height = network_window(Box.WHOLE, "stretch", (224, 224), (640, 480))
    assert (x, y, height) == (1, 0, FULL_SENSOR[1]) and abs(width - FULL_SENSOR[0]) <= 3
    # The right half of the frame, stretched: the right half of the sensor.
    x, y, width, height = network_window(Box(0.5, 0.0, 0.5, 1.0), "stretch", (224, 224), (640, 480))
    assert abs(x - 2028) <= 1 and abs(width - 2028) <= 2 and (y, height) == (0, 3040)
    # 16:9 frames see a band of the sensor: the box is a fraction of that band, offset to where it starts.
    x, y, width, height = network_window(Box(0.0, 0.0, 0.5, 0.5), "center", (224, 224), (1280, 720))
    band_top = (3040 - round(4056 * 9 / 16)) // 2
    assert (width, height) == (round(4056 * 9 / 16 / 2),) * 2 and y == band_top


def sensor_classifier(labels: list[str], softmax: bool | None, source: str = "test") -> Imx500Classifier:
    info = LoadedModel("net", "net.rpk", "imx500", "IMX500 (on the sensor)", 0, TensorSpec(0, (1, 224, 224, 3),
                       np.uint8, 1.0, 0), TensorSpec(0, (1, len(labels)), np.float32, 0.0, 0), tuple(labels), source,
                       {})
    return Imx500Classifier(info, None, softmax, labels, source)  # type: ignore[arg-type]


def test_1000_logits_get_a_softmax_and_1001_labels_line_up_with_them():
    labels = ["background", *(f"class {i}" for i in range(1000))]
    classifier = sensor_classifier(labels, None)
    logits = np.linspace(-5, 5, 1000, dtype=np.float32)
    scores = classifier.scores(logits)
    assert scores.shape == (1000,) and abs(float(scores.sum()) - 1) < 1e-4 and int(scores.argmax()) == 999
    assert classifier.info.labels[999] == "class 999" and classifier.info.output.shape == (1, 1000)
    # Probabilities stay as they are when the intrinsics do not say; a network that says softmax always gets one.
    probabilities = np.full(1000, 1 / 1000, np.float32)
    probabilities[7] += 0.5
    probabilities /= probabilities.sum()
    assert np.allclose(classifier.scores(probabilities), probabilities)
    said = sensor_classifier(labels, True).scores(probabilities)
    assert not np.allclose(said, probabilities) and abs(float(said.sum()) - 1) < 1e-4


def test_labels_that_cannot_be_the_networks_are_a_model_error_naming_both_counts():
    with pytest.raises(ModelError, match="gives 10 outputs, and the labels from test are 1001"):
        sensor_classifier(["background", *map(str, range(1000))], None).scores(np.zeros(10, np.float32))


def test_the_networks_own_numbered_labels_are_read_as_coral_labels(tmp_path: Path):
    # imx500_network_mobilenet_v2.rpk's intrinsics: "0:background", "1:tench, Tinca tinca", ...
    labels, source = network_labels(None, ["0:background", "1:tench, Tinca tinca", "2:goldfish"])
    assert labels == ["background", "tench, Tinca tinca", "goldfish"] and source == "the network's intrinsics"
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("a\nb\n")
    assert network_labels(str(labels_file), ["0:x"]) == (["a", "b"], str(labels_file))
    labels, source = network_labels(None, None)
    assert len(labels) == 1001 and labels[0] == "background" and "ImageNet" in source


def test_progress_is_said_in_percent_or_says_it_cannot_be_read():
    assert describe_progress(UploadProgress(1_000_000, 4_000_000)) == (
        "uploading the network firmware to the sensor: 25 % (1.0 of 4.0 MB)")
    assert "no progress readable" in describe_progress(None)


# --- the configuration's rules -----------------------------------------------------------------------------------

def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    return str(caught.value)


def test_the_sensor_network_runs_on_one_picamera2_camera_and_one_region(tmp_path: Path):
    said = config_error(tmp_path, "model: {path: net.rpk, delegate: imx500}\nsource: {type: images, path: x}\n")
    assert "config.yaml:2: source.type" in said and "needs the picamera2 source, not images" in said
    said = config_error(tmp_path, "model: {path: net.rpk, delegate: imx500}\ncameras:\n"
                                  "  a: {source: {type: picamera2}}\n  b: {source: {type: picamera2, camera: 1}}\n")
    assert "cameras.b" in said and "only one camera has it" in said
    said = config_error(tmp_path, "model: {path: net.rpk, delegate: imx500}\ncameras:\n  a:\n"
                                  "    source: {type: picamera2}\n    regions:\n"
                                  "      door: {box: [0, 0, 0.5, 1]}\n      path: {box: [0.5, 0, 0.5, 1]}\n")
    assert "cameras.a.regions.path" in said and "one window per frame" in said and "region door has it" in said
    said = config_error(tmp_path, "cameras:\n  a:\n    source: {type: picamera2}\n    regions:\n"
                                  "      door: {box: [0, 0, 0.5, 1], model: net.rpk}\n")
    assert "cameras.a.regions.door.model" in said and ".rpk" in said
    # One region on the sensor, another with a CPU model of its own, and a webcam whose regions have their own: fine.
    path = tmp_path / "config.yaml"
    path.write_text("model: {path: net.rpk, delegate: imx500}\ncameras:\n  a:\n    source: {type: picamera2}\n"
                    "    regions:\n      door: {box: [0, 0, 0.5, 1]}\n      path: {box: [0.5, 0, 0.5, 1], model: m}\n"
                    "  b:\n    source: {type: opencv, device: 0}\n    regions:\n"
                    "      all: {box: [0, 0, 1, 1], model: m}\n")
    assert load_config(str(path)).model.delegate == "imx500"


def test_an_rpk_given_to_the_cpu_says_where_it_runs(tmp_path: Path):
    rpk = tmp_path / "net.rpk"
    rpk.write_bytes(b"9464" + bytes(60))
    with pytest.raises(ModelError, match="AI Camera network.*model.delegate: imx500"):
        load_classifier(ModelConfig(path=str(rpk)))


def test_the_zoo_has_the_ai_cameras_mobilenet_pinned_by_its_git_blob():
    entry = find_entry(build_manifest(), "imx500_network_mobilenet_v2.rpk")
    assert entry is not None and entry.kind == "imx500" and entry.file_name == "imx500_network_mobilenet_v2.rpk"
    assert entry.top1 == 71.6 and entry.resolution == 224 and entry.pinned(from_archive=False)
    assert entry.url.startswith("https://github.com/raspberrypi/imx500-models/")


# --- doctor ------------------------------------------------------------------------------------------------------

def imx500_state(**changes: object) -> Imx500State:
    base = {"cameras": ("imx500 (/base/axi/pcie@120000/rp1/i2c@88000/imx500@1a)",), "missing_firmware": (),
            "support_error": None, "network": None, "network_path": None, "network_error": None}
    return Imx500State(**{**base, **changes})  # type: ignore[arg-type]


def test_doctor_verdicts_for_the_ai_camera():
    assert check_imx500(imx500_state(cameras=()), wanted=False).verdict == "skip"
    assert check_imx500(imx500_state(), wanted=False).verdict == "ok"
    missing = check_imx500(imx500_state(missing_firmware=("/lib/firmware/imx500_loader.fpk",)), wanted=True)
    assert missing.verdict == "fail" and "imx500_loader.fpk" in missing.detail and "imx500-all" in (missing.fix or "")
    assert check_imx500(imx500_state(cameras=()), wanted=True, fallback=True).verdict == "warn"
    no_support = check_imx500(imx500_state(support_error="No module named 'libarchive'"), wanted=True)
    assert no_support.verdict == "fail" and "libarchive" in no_support.detail
    no_network = check_imx500(imx500_state(network="x", network_error="AI Camera network 'x' not found in a: b"),
                              wanted=True, fallback=True)
    assert no_network.verdict == "fail"  # a missing network is exit 3 whether or not a fallback is set


def test_doctor_reads_the_firmware_the_network_and_picamera2s_support(tmp_path: Path):
    firmware = tmp_path / "lib" / "firmware"
    firmware.mkdir(parents=True)
    (firmware / "imx500_loader.fpk").write_bytes(b"x")
    network = tmp_path / "net.rpk"
    network.write_bytes(b"9464")
    answers = {SUPPORT: CommandResult(1, "", "ModuleNotFoundError: No module named 'OpenEXR'")}

    def run(argv, timeout=10.0, env=None):
        return answers.get(argv[-1], CommandResult(0, "", ""))

    state = read_imx500(str(network), None, ["imx500 (/base/i2c@88000/imx500@1a)", "imx708 (/base/imx708@1a)"], run,
                        "python3", None, str(tmp_path))
    assert state.cameras == ("imx500 (/base/i2c@88000/imx500@1a)",)
    assert state.missing_firmware == ("/lib/firmware/imx500_firmware.fpk",)
    assert state.support_error is not None and "OpenEXR" in state.support_error
    assert state.network_path == str(network) and state.network_error is None
    assert read_imx500("nowhere", None, "libcamera failed", run, "python3", None, str(tmp_path)).cameras is None


SUPPORT = "import picamera2.devices.imx500"


# --- against the stand-in: the sensor runs a real MobileNet on what it films -------------------------------------

IMX500_CAMERA = {"Model": "imx500", "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx500@1a"}
WEBCAM = {"Model": "HD Pro Webcam C920", "Id": "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1:1.0-046d:082d"}


def forget_stand_in() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("picamera2", "libcamera", "imx500_rpk"):
            del sys.modules[name]


@pytest.fixture
def network(tmp_path: Path, models: Path) -> Path:
    """An .rpk laid out as Raspberry Pi's imx500_network_mobilenet_v2.rpk is: its intrinsics' numbered 1001 labels,
    a square input, no word on softmax; the stand-in's sensor runs the real V2 MobileNet for it."""
    sys.path.insert(0, str(FAKE))
    try:
        from imx500_rpk import write_rpk
    finally:
        sys.path.remove(str(FAKE))
    labels = (models / "imagenet_labels.txt").read_text().splitlines()
    intrinsics = {"inference_rate": 30.0, "task": "classification", "input_aspect_ratio": {"width": 1, "height": 1},
                  "classes": {"labels": [f"{i}:{label}" for i, label in enumerate(labels)]}}
    return write_rpk(tmp_path / "imx500_network_mobilenet_v2.rpk", network=str(models / f"{V2}.tflite"),
                     intrinsics=intrinsics)


def stand_in_env(scene: Path, cameras: list | None = None, **imx500: object) -> dict[str, str]:
    """The stand-in's settings: like the real network, 1000 logits (its post-processor is pp_cls)."""
    settings = {"cameras": [IMX500_CAMERA] if cameras is None else cameras, "scene": str(scene),
                "imx500": {"classes": 1000, "logits": True, **imx500}}
    return {"FAKE_PICAMERA2": json.dumps(settings), "PYTHONPATH": str(FAKE)}


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch):
    """The stand-in picamera2 in this process, set up by the returned function."""
    monkeypatch.syspath_prepend(str(FAKE))

    def configure(scene: Path, cameras: list | None = None, **imx500: object):
        monkeypatch.setenv("FAKE_PICAMERA2", stand_in_env(scene, cameras, **imx500)["FAKE_PICAMERA2"])
        forget_stand_in()
        import picamera2

        return picamera2

    yield configure
    forget_stand_in()


def sensor_config(tmp_path: Path, network: Path, body: str = "source: {type: picamera2}\n", frames: int = 6,
                  extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"model: {{path: {network}, delegate: imx500{extra}}}\n{body}run: {{max_frames: {frames}}}\n"
                    "postprocess: {top_k: 1}\n")
    return path


def test_the_sensor_classifies_and_its_time_is_the_results_inference(stand_in, network: Path, images: Path,
                                                                      tmp_path: Path):
    picamera2 = stand_in(images / "cat.bmp", cameras=[WEBCAM, IMX500_CAMERA])
    output = ListOutput()
    with open_run(load_config(str(sensor_config(tmp_path, network))), outputs=[output]) as run:
        run.execute()
        status = run.status()
    results = output.results
    assert len(results) == 6 and {r.label for r in results} == {"Egyptian cat"}
    assert {r.backend for r in results} == {"imx500"} and results[0].model == "imx500_network_mobilenet_v2"
    assert status.backend == "imx500"
    # The stand-in's KPI is the real invoke time of its network, plus 0.15 ms of DSP; nothing was invoked here.
    assert all(r.timing.inference_ms > 0.15 and r.timing.preprocess_ms < 5 for r in results)
    assert 0.5 < results[0].top[0].score <= 1  # a softmax over the logits, not a logit
    # The first frames after a start carry no outputs (passed over); every request went back to the camera.
    assert results[0].frame == 3
    assert picamera2.requests and all(request.released for request in picamera2.requests)
    # The AI Camera opened, not the webcam listed before it (Picamera2(n) indexes the sorted list), and released.
    [camera] = picamera2.instances
    assert camera.info["Model"] == "imx500" and camera.closed
    [driver] = picamera2.imx500_drivers.values()
    assert driver.open_fds == 0


def test_a_regions_box_is_the_window_the_sensor_classifies(stand_in, network: Path, images: Path, tmp_path: Path):
    scene = tmp_path / "scene.png"
    cv2.imwrite(str(scene), side_by_side(images, "cat.bmp", "parrot.jpg", half=480))
    labels = {}
    for region, box in (("left", "[0, 0, 0.5, 1]"), ("right", "[0.5, 0, 0.5, 1]")):
        picamera2 = stand_in(scene)
        output = ListOutput()
        body = f"cameras:\n  door:\n    source: {{type: picamera2}}\n    regions:\n      {region}: {{box: {box}}}\n"
        with open_run(load_config(str(sensor_config(tmp_path, network, body, frames=3))), outputs=[output]) as run:
            run.execute()
        labels[region] = {(r.camera, r.region, r.label) for r in output.results}
        [driver] = picamera2.imx500_drivers.values()
        x, _, width, height = driver.window()
        assert width == height and (x + width / 2 < 2028) == (region == "left")  # a square (crop: center) in that half
    assert labels == {"left": {("door", "left", "Egyptian cat")}, "right": {("door", "right", "macaw")}}


def test_a_camera_reopened_hands_the_network_to_the_sensor_again(stand_in, network: Path, images: Path):
    picamera2 = stand_in(images / "cat.bmp")
    from edge_infer.sources.base import SourceHints
    from edge_infer.sources.picamera2 import Picamera2Config, Picamera2Source

    classifier = load_classifier(ModelConfig(path=str(network), delegate="imx500"))
    hints = SourceHints(224, 224, "center", classifier.network)
    for _ in range(2):  # as ReconnectingSource reopens a camera that failed
        source = Picamera2Source(Picamera2Config(), hints)
        frames = [source.read() for _ in range(3)]
        source.close()
        sensor = frames[-1].sensor
        assert sensor is not None
        best = int(np.argmax(classifier.scores(sensor.outputs)))  # lines the labels up with the outputs
        assert classifier.info.labels[best] == "Egyptian cat"
    [driver] = picamera2.imx500_drivers.values()
    assert driver.uploads == 2 and driver.open_fds == 1  # handed twice; the first device closed
    classifier.close()
    assert driver.open_fds == 0


def test_the_thermal_guard_never_steps_the_sensors_network(stand_in, network: Path, images: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture):
    stand_in(images / "cat.bmp")
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{path: {network}, delegate: imx500}}\nsource: {{type: picamera2}}\n"
                      "run: {guard: {enabled: true}}\n")
    with caplog.at_level(logging.INFO), open_run(load_config(str(config)), outputs=[ListOutput()]) as run:
        assert run.guard is None
    assert "thermal guard: off, the model runs on the AI Camera's sensor" in caplog.text


def test_edge_infer_run_waits_for_the_upload_and_tells_systemd(cli, network: Path, images: Path, tmp_path: Path):
    notify = NotifySocket(tmp_path / "notify")
    config = sensor_config(tmp_path, network, frames=3)
    done = cli("run", "--config", str(config), env={**stand_in_env(images / "cat.bmp", upload_s=6),
                                                    "NOTIFY_SOCKET": notify.path})
    assert done.status == 0, done.stderr
    assert [r["label"] for r in done.results] == ["Egyptian cat"] * 3
    assert {r["backend"] for r in done.results} == {"imx500"}
    assert "AI Camera: uploading the network firmware to the sensor:" in done.stderr and " % (" in done.stderr
    assert "the network firmware is on the sensor" in done.stderr
    said = notify.drain()
    extended = [m for m in said if m.startswith("EXTEND_TIMEOUT_USEC=")]
    ready = next(i for i, m in enumerate(said) if m.startswith("READY=1"))
    assert extended and said.index(extended[-1]) < ready and int(extended[0].split("=")[1]) >= 30_000_000


@pytest.mark.parametrize("case", ["upload_fails", "no_camera", "no_camera_fallback", "not_a_classifier"])
def test_what_goes_wrong_is_one_line_with_its_exit_status(cli, network: Path, models: Path, images: Path,
                                                          tmp_path: Path, case: str):
    settings: dict[str, object] = {}
    extra = ""
    cameras = None
    if case == "upload_fails":
        settings = {"upload_fails": True}
    elif case.startswith("no_camera"):
        cameras = [{"Model": "imx708", "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a"}]
        extra = f", fallback_model: {models / V2}.tflite" if case == "no_camera_fallback" else ""
    elif case == "not_a_classifier":
        sys.path.insert(0, str(FAKE))
        try:
            from imx500_rpk import write_rpk
        finally:
            sys.path.remove(str(FAKE))
        network = write_rpk(tmp_path / "detector.rpk", network=str(models / f"{V2}.tflite"),
                            intrinsics={"task": "object detection"})
    config = sensor_config(tmp_path, network, frames=2, extra=extra)
    done = cli("run", "--config", str(config), env=stand_in_env(images / "cat.bmp", cameras, **settings))
    if case == "no_camera_fallback":  # the CPU runs the fallback on the frames of the camera there is
        assert done.status == 0, done.stderr
        assert {r["backend"] for r in done.results} == {"cpu"} and "no AI Camera (IMX500) found" in done.stderr
        return
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    expected = {"upload_fails": (4, "cannot start Pi camera 0, the AI Camera: Failed to start camera"),
                "no_camera": (5, "no AI Camera (IMX500) found"),
                "not_a_classifier": (3, "is a object detection network, not a classifier")}[case]
    assert done.status == expected[0] and expected[1] in lines[0], lines

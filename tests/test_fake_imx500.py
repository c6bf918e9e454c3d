"""Self-checks of the AI Camera (IMX500) stand-in in tests/fake_picamera2, driven through upstream's API as
picamera2's examples/imx500/imx500_classification_demo.py drives it. The sensor runs a real MobileNet on a real
photograph, so a wrong crop, ROI or class offset shows as a wrong label."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import side_by_side

FAKE = Path(__file__).parent / "fake_picamera2"
IMX500_ID = "/base/axi/pcie@120000/rp1/i2c@88000/imx500@1a"
IMX500_CAMERA = {"Model": "imx500", "Id": IMX500_ID}
IMX477_CAMERA = {"Model": "imx477", "Id": "/base/soc/i2c0mux/i2c@1/imx477@1a"}
WEBCAM = {"Model": "HD Pro Webcam C920", "Id": "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1:1.0-046d:082d"}
MODEL = "mobilenet_v2_1.0_224_quant.tflite"


def forget_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("picamera2", "libcamera", "imx500_rpk"):
            del sys.modules[name]


@pytest.fixture
def fake(monkeypatch, images: Path):
    """Makes `import picamera2` find the stand-in; the returned function sets $FAKE_PICAMERA2 and imports it."""
    monkeypatch.syspath_prepend(str(FAKE))

    def configure(cameras: list | None = None, scene: Path | None = None, **imx500):
        monkeypatch.setenv("FAKE_PICAMERA2", json.dumps({
            "cameras": [IMX500_CAMERA] if cameras is None else cameras,
            "scene": str(scene or images / "cat.bmp"), "imx500": imx500}))
        forget_modules()
        import picamera2

        return picamera2

    yield configure
    forget_modules()


@pytest.fixture(scope="module")
def labels(models: Path) -> list[str]:
    return (models / "imagenet_labels.txt").read_text().splitlines()


@pytest.fixture
def rpk(tmp_path: Path, models: Path, labels: list[str]):
    """Writes a network file for the V2 MobileNet; keyword arguments go to write_rpk."""
    sys.path.insert(0, str(FAKE))
    try:
        from imx500_rpk import write_rpk
    finally:
        sys.path.remove(str(FAKE))

    def make(name: str = "net.rpk", **options) -> Path:
        options.setdefault("intrinsics", {"task": "classification", "classes": {"labels": labels}})
        return write_rpk(tmp_path / name, network=str(models / MODEL), **options)

    return make


def open_camera(picamera2, imx500, **config):
    """As the demo does: the IMX500 first, then Picamera2 on its camera_num, started with a configuration."""
    camera = picamera2.Picamera2(imx500.camera_num)
    intrinsics = imx500.network_intrinsics
    intrinsics.update_with_defaults()
    camera.start(camera.create_video_configuration(controls={"FrameRate": intrinsics.inference_rate}, **config))
    return camera


def classify(camera, imx500, labels: list[str], skip: int = 2) -> tuple[str, np.ndarray, dict]:
    """Top-1 label of the first request with tensors (after `skip` without), via get_outputs."""
    for _ in range(skip):
        request = camera.capture_request()
        assert imx500.get_outputs(request.get_metadata()) is None
        request.release()
    request = camera.capture_request()
    metadata = request.get_metadata()
    request.release()
    [output] = imx500.get_outputs(metadata)
    names = labels if imx500.get_output_shapes(metadata)[0][0] == 1001 else labels[1:]  # as the demo's get_label
    return names[int(np.argmax(output))], output, metadata


def test_rpk_round_trips_through_upstream_parsing(fake, rpk, labels):
    path = rpk(width=192, height=160, intrinsics={"task": "classification", "cpu": {"softmax": True},
                                                  "input_aspect_ratio": {"width": 1, "height": 1},
                                                  "classes": {"labels": labels}})
    fake()
    from picamera2.devices import IMX500
    from picamera2.devices.imx500 import NetworkIntrinsics
    from picamera2.devices.imx500.imx500 import FW_NETWORK_STAGE

    imx500 = IMX500(str(path))
    assert FW_NETWORK_STAGE == 2 and imx500.camera_num == 0
    assert imx500.config["input_tensor_size"] == (192, 160)
    assert imx500.config["network_info"]["networkNum"] == 1
    assert imx500.config["input_tensor"]["div_val"] == [1024, 1024, 1024]
    intrinsics = imx500.network_intrinsics
    assert isinstance(intrinsics, NetworkIntrinsics)
    assert (intrinsics.task, intrinsics.softmax, intrinsics.preserve_aspect_ratio) == ("classification", True, True)
    assert intrinsics.labels == labels and intrinsics.inference_rate is None
    intrinsics.update_with_defaults()
    assert intrinsics.inference_rate == 30.0
    intrinsics.softmax = False
    assert intrinsics.softmax is None
    with pytest.raises(Exception, match="'counting' is not one of") as error:
        intrinsics.task = "counting"
    assert not isinstance(error.value, ValueError)  # jsonschema's ValidationError is no ValueError
    assert intrinsics.task == "classification"
    assert imx500.fw_progress is IMX500.FwProgressType.DIRECT

    # libarchive (what upstream reads the archive with) reads the same members from after the firmware blocks.
    library = ctypes.util.find_library("archive")
    if library is None:
        pytest.skip("libarchive not installed")
    archive = ctypes.CDLL(library)
    archive.archive_read_new.restype = ctypes.c_void_p
    archive.archive_read_support_format_all.argtypes = [ctypes.c_void_p]
    archive.archive_read_open_memory.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    archive.archive_read_next_header.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    archive.archive_entry_pathname.argtypes = [ctypes.c_void_p]
    archive.archive_entry_pathname.restype = ctypes.c_char_p
    archive.archive_read_free.argtypes = [ctypes.c_void_p]
    data = path.read_bytes()[2 * (32 + 4096 + 64):]  # write_rpk's default: 2 blocks of 4096 bytes
    reader = archive.archive_read_new()
    archive.archive_read_support_format_all(reader)
    assert archive.archive_read_open_memory(reader, data, len(data)) == 0
    entry, names = ctypes.c_void_p(), []
    while archive.archive_read_next_header(reader, ctypes.byref(entry)) == 0:
        names.append(archive.archive_entry_pathname(entry).decode())
    archive.archive_read_free(reader)
    assert names == ["network_info.txt", "network_intrinsics", "standin_network"]


@pytest.mark.parametrize("classes", [1001, 1000])
def test_the_sensor_classifies_the_scene(fake, rpk, labels, classes):
    picamera2 = fake(classes=classes)
    from picamera2.devices import IMX500

    imx500 = IMX500(str(rpk()))
    camera = open_camera(picamera2, imx500, main={"size": (640, 480), "format": "RGB888"})
    label, output, metadata = classify(camera, imx500, labels)
    assert label == "Egyptian cat"
    assert imx500.get_output_shapes(metadata) == [[classes]] and output.shape == (classes,)
    assert int(np.argmax(output)) == labels.index("Egyptian cat") - (1001 - classes)
    assert 0.9 < output.sum() < 1.1 and output.min() >= 0  # (quantised) probabilities: the network ends in softmax
    dnn_ms, dsp_ms = IMX500.get_kpi_info(metadata)
    assert 0.1 < dnn_ms < 2000 and 0 < dsp_ms < 1
    assert metadata["ScalerCrop"] == camera.camera_properties["ScalerCropMaximum"] == (0, 0, 4056, 3040)
    camera.close()
    assert all(request.released for request in picamera2.requests)


@pytest.mark.parametrize(("softmax", "settings"), [(True, {}), (None, {"logits": True})])
def test_logits_where_the_network_leaves_softmax_to_the_cpu(fake, rpk, labels, softmax, settings):
    picamera2 = fake(**settings)
    from picamera2.devices import IMX500
    from picamera2.devices.imx500.postprocess import softmax as softmax_of

    intrinsics = {"task": "classification", **({"cpu": {"softmax": True}} if softmax else {})}
    imx500 = IMX500(str(rpk(intrinsics=intrinsics)))
    assert imx500.network_intrinsics.softmax is softmax
    camera = open_camera(picamera2, imx500)
    label, output, _ = classify(camera, imx500, labels)
    assert label == "Egyptian cat"
    assert output.max() <= 0 and output.sum() < -100  # log-probabilities, not probabilities
    probabilities = softmax_of(output)
    assert abs(probabilities.sum() - 1) < 1e-4 and labels[int(np.argmax(probabilities))] == "Egyptian cat"


def test_tensors_come_late_after_each_start(fake, rpk):
    picamera2 = fake(late_frames=3)
    from picamera2.devices import IMX500

    imx500 = IMX500(str(rpk()))
    camera = open_camera(picamera2, imx500)
    for _ in range(2):
        seen = []
        for _ in range(5):
            request = camera.capture_request()
            metadata = request.get_metadata()
            seen.append(("CnnOutputTensor" in metadata, IMX500.get_kpi_info(metadata) is not None,
                         imx500.get_outputs(metadata) is not None))
            request.release()
        assert seen == [(False, False, False)] * 3 + [(True, True, True)] * 2
        camera.stop()
        camera.start()
    assert imx500.get_fw_upload_progress(2)[0] > 0 and picamera2.imx500_drivers[IMX500_ID].uploads == 1


def test_the_sensor_forgets_its_network_when_it_powers_off(fake, rpk):
    picamera2 = fake(late_frames=0, autosuspend_s=0.2)
    from picamera2.devices import IMX500

    path = rpk()
    imx500 = IMX500(str(path))
    camera = open_camera(picamera2, imx500)
    driver = picamera2.imx500_drivers[IMX500_ID]

    def tensors() -> bool:
        request = camera.capture_request()
        try:
            return imx500.get_outputs(request.get_metadata()) is not None
        finally:
            request.release()

    assert tensors()
    camera.stop()
    camera.start()  # back within the autosuspend delay: still there
    assert tensors() and driver.uploads == 1
    camera.stop()
    time.sleep(0.25)
    camera.start()  # powered off meanwhile: no network, no upload
    assert not tensors() and driver.uploads == 1 and imx500.get_fw_upload_progress(2) == (0, 0)
    camera.stop()
    IMX500(str(path))
    camera.start()
    assert tensors() and driver.uploads == 2


def test_the_roi_chooses_what_is_classified(fake, rpk, labels, images, tmp_path):
    scene = tmp_path / "scene.png"
    cv2.imwrite(str(scene), side_by_side(images, "parrot.jpg", "cat.bmp"))  # 640x320: parrot left, cat right
    picamera2 = fake(scene=scene)
    from libcamera import Rectangle
    from picamera2.devices import IMX500

    imx500 = IMX500(str(rpk()))
    assert imx500.config["roi"] == Rectangle(0, 0, 4056, 3040)
    assert picamera2.imx500_drivers[IMX500_ID].window() == (0, 0, 4032, 3040)  # the control's max clamps the width
    camera = open_camera(picamera2, imx500)
    imx500.set_inference_roi_abs((0, 0, 2028, 3040))
    assert classify(camera, imx500, labels)[0] == "macaw"
    imx500.set_inference_roi_abs((2028, 0, 2028, 3040))
    assert classify(camera, imx500, labels, skip=0)[0] == "Egyptian cat"
    assert picamera2.imx500_drivers[IMX500_ID].window() == (2028, 0, 2028, 3040)

    imx500.set_inference_roi_abs((4000, 3000, 500, 500))  # bounded to the sensor, as upstream does
    assert imx500.config["roi"] == Rectangle(4000, 3000, 56, 40)
    imx500.set_auto_aspect_ratio()  # a centred square for the 224x224 input
    assert imx500.config["roi"].to_tuple() == (508, 0, 3040, 3040)
    imx500.set_inference_aspect_ratio((2, 1))
    assert imx500.config["roi"] == Rectangle(0, 506, 4056, 2028)
    with pytest.raises(TypeError):  # libcamera's Rectangle takes integers only
        imx500.set_inference_roi_abs((0.5, 0, 100, 100))


def test_upload_progress_rises_while_start_blocks(fake, rpk):
    picamera2 = fake(upload_s=0.8)
    from picamera2.devices import IMX500
    from picamera2.devices.imx500.imx500 import FW_NETWORK_STAGE

    path = rpk()
    imx500 = IMX500(str(path))
    assert imx500.get_fw_upload_progress(FW_NETWORK_STAGE) == (0, 0)  # the sensor is still at the loader stage
    camera = picamera2.Picamera2(imx500.camera_num)
    camera.configure(camera.create_video_configuration())
    began = time.monotonic()
    starting = threading.Thread(target=camera.start)
    starting.start()
    readings = []
    while starting.is_alive():
        readings.append(imx500.get_fw_upload_progress(FW_NETWORK_STAGE))
        time.sleep(0.05)
    starting.join()
    took = time.monotonic() - began
    total = path.stat().st_size
    assert 0.8 <= took < 2 and camera.started
    assert {size for _, size in readings} == {total}
    done = [current for current, _ in readings]
    assert done == sorted(done) and any(0 < current < total for current in done)
    assert imx500.get_fw_upload_progress(FW_NETWORK_STAGE) == (total, total)

    camera.stop()  # the network stays on the sensor: no second upload
    began = time.monotonic()
    camera.start()
    assert time.monotonic() - began < 0.3

    other = rpk("other.rpk", blocks=3)
    with pytest.raises(RuntimeError, match=r"^IMX500: Unable to set network firmware .*other.rpk: \[Errno 16\]"):
        IMX500(str(other))  # the driver holds the network while streaming
    camera.stop()  # a new network file is uploaded at the next start: before it, nothing of it is sent
    IMX500(str(other))
    assert imx500.get_fw_upload_progress(FW_NETWORK_STAGE) == (0, other.stat().st_size)


@pytest.mark.parametrize(("mode", "expected"), [("indirect", "INDIRECT"), ("none", "NONE")])
def test_progress_access(fake, rpk, capsys, mode, expected):
    fake(fw_progress=mode)
    from picamera2.devices import IMX500

    imx500 = IMX500(str(rpk()))
    assert imx500.fw_progress is IMX500.FwProgressType[expected]
    if mode == "none":
        assert "IMX500 firmware update progress bar is not available" in capsys.readouterr().out
        with pytest.raises(AssertionError):  # upstream's _fw_progress_read asserts a readable source
            imx500.get_fw_upload_progress(2)
    else:
        assert imx500.get_fw_upload_progress(2) == (0, 0)


@pytest.mark.parametrize(("fails", "message"),
                         [(True, "Remote I/O error"), ("EAGAIN", "Resource temporarily unavailable")])
def test_a_failed_upload_fails_start(fake, rpk, fails, message):
    picamera2 = fake(upload_fails=fails, upload_s=0.1)
    from picamera2.devices import IMX500

    imx500 = IMX500(str(rpk()))
    camera = picamera2.Picamera2(imx500.camera_num)
    with pytest.raises(RuntimeError, match=f"^Failed to start camera: {message}$"):
        camera.start(camera.create_video_configuration())
    assert not camera.started
    with pytest.raises(TimeoutError):
        camera.capture_request(wait=0.05)


def test_constructor_failures(fake, rpk, tmp_path):
    fake(cameras=[IMX477_CAMERA])
    from picamera2.devices import IMX500

    with pytest.raises(RuntimeError, match="^IMX500: Requested camera dev-node not found$"):
        IMX500(str(rpk()))

    picamera2 = fake()
    from picamera2.devices import IMX500

    with pytest.raises(RuntimeError, match="^IMX500: Requested camera dev-node not found$"):
        IMX500(str(rpk()), camera_id="imx500@10")
    missing = tmp_path / "nowhere" / "net.rpk"
    with pytest.raises(RuntimeError) as error:
        IMX500(str(missing))
    assert str(error.value) == f"Firmware file {missing} does not exist."
    del error
    gc.collect()
    assert picamera2.imx500_drivers[IMX500_ID].open_fds == 0  # __del__ closed the device

    path = rpk()
    data = bytearray(path.read_bytes())
    data[32 + 4096 + 60:32 + 4096 + 64] = b"0000"  # the first block's footer
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError) as error:
        IMX500(str(path))
    assert str(error.value) == f"No matching footer found in firmware file {path}"
    del error
    # the kernel took the file before picamera2 parsed it, and refuses it when streaming starts
    camera = picamera2.Picamera2(0)
    with pytest.raises(RuntimeError, match="^Failed to start camera: Invalid argument$"):
        camera.start(camera.create_video_configuration())


def test_a_missing_dependency_fails_the_import(fake):
    fake(import_error="No module named 'libarchive'")
    with pytest.raises(ModuleNotFoundError, match="^No module named 'libarchive'$") as error:
        import picamera2.devices  # noqa: F401
    assert error.value.name == "libarchive"
    from picamera2 import Picamera2  # picamera2 itself still imports

    assert Picamera2.global_camera_info()[0]["Model"] == "imx500"


def test_requests_must_be_released_once(fake, rpk):
    picamera2 = fake()
    from picamera2.devices import IMX500

    imx500 = IMX500(str(rpk()))
    camera = open_camera(picamera2, imx500, main={"size": (640, 480), "format": "RGB888"}, buffer_count=3)
    request = camera.capture_request()
    assert request.make_array("main").shape == (480, 640, 3)
    assert camera.capture_array("main").shape == (480, 640, 3)  # takes a request and releases it
    request.release()
    with pytest.raises(RuntimeError, match="negative ref_count"):
        request.release()
    with pytest.raises(RuntimeError, match="Stream 'main' is not defined"):
        request.make_array("main")
    with pytest.raises(AssertionError):
        request.get_metadata()
    held = [camera.capture_request() for _ in range(3)]
    with pytest.raises(TimeoutError):  # every buffer is held: no frame can be filled
        camera.capture_request(wait=0.05)
    assert not all(r.released for r in picamera2.requests)
    for r in held:
        r.release()
    camera.capture_request().release()
    assert all(r.released for r in picamera2.requests)
    del imx500
    gc.collect()
    assert picamera2.imx500_drivers[IMX500_ID].open_fds == 0


def test_a_camera_opened_before_the_network_has_no_tensors(fake, rpk):
    picamera2 = fake(late_frames=0)
    from picamera2.devices import IMX500

    camera = picamera2.Picamera2(0)
    imx500 = IMX500(str(rpk()))
    camera.start(camera.create_video_configuration())
    request = camera.capture_request()
    assert imx500.get_outputs(request.get_metadata()) is None
    request.release()


def test_camera_num_is_the_libcamera_index(fake, rpk):
    """Upstream's IMX500.camera_num is a camera's Num, while Picamera2(n) indexes the sorted camera list: with
    a webcam listed first they disagree (picamera2.py:344, imx500.py:328-331)."""
    picamera2 = fake(cameras=[WEBCAM, IMX500_CAMERA])
    from picamera2.devices import IMX500

    imx500 = IMX500(str(rpk()))
    assert imx500.camera_num == 1
    assert picamera2.Picamera2(imx500.camera_num).camera_properties["Model"] == WEBCAM["Model"]

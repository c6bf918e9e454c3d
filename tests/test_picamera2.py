"""The Picamera2 source against a stand-in for Picamera2 (tests/fake_picamera2) that mirrors the
upstream code (cited there): no Pi camera exists here. The stand-in films a real photograph, and
the frames go through a real model, so a wrong crop or a squeezed lores stream shows as a wrong label."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ListOutput, error_lines, side_by_side

from edge_infer.config import load_config
from edge_infer.errors import ConfigError, SourceError
from edge_infer.pipeline.classifier import ModelConfig, load_classifier
from edge_infer.pipeline.postprocess import PostprocessConfig
from edge_infer.pipeline.preprocess import PreprocessConfig
from edge_infer.pipeline.stages import FrameClassifier
from edge_infer.run import open_run
from edge_infer.sources import picamera2 as source_module
from edge_infer.sources.base import SourceHints
from edge_infer.sources.picamera2 import BUSY_HINT, CAPTURE_TIMEOUT_S, Picamera2Config, Picamera2Source

FAKE = Path(__file__).parent / "fake_picamera2"
IMX477 = {"Model": "imx477", "Id": "/base/soc/i2c0mux/i2c@1/imx477@1a"}
IMX708 = {"Model": "imx708", "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a"}  # Camera Module 3, on a Pi 5
WEBCAM = {"Model": "HD Pro Webcam C920", "Id": "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1:1.0-046d:082d"}


@pytest.fixture
def fake(monkeypatch, images: Path):
    """Makes `import picamera2` find the stand-in, set up by the returned function's settings."""
    monkeypatch.syspath_prepend(str(FAKE))

    def configure(**settings):
        monkeypatch.setenv("FAKE_PICAMERA2", json.dumps({"cameras": [IMX477], "scene": str(images / "parrot.jpg"),
                                                         **settings}))
        for name in ("picamera2", "libcamera"):
            sys.modules.pop(name, None)
        import picamera2

        return picamera2

    yield configure
    for name in ("picamera2", "libcamera"):
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def classify(models: Path):
    """Classifies a frame with the real V2 model, as the pipeline does (its crop: center)."""
    stages = FrameClassifier(load_classifier(ModelConfig(path=str(models / "mobilenet_v2_1.0_224_quant.tflite"))),
                             PreprocessConfig(), PostprocessConfig(top_k=1))
    return lambda frame: stages.classify(stages.prepare(frame)).top[0].label


def test_centre_crop_is_set_after_configure_within_the_limits(fake, classify):
    # A sensor mode whose crop limits do not start at 0,0: the offset must be added.
    camera_module = fake(sensor=[8, 4, 2028, 1520])
    source = Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    [camera] = camera_module.instances
    assert camera.controls["ScalerCrop"] == (8 + 254, 4, 1520, 1520)  # the centred square of 2028x1520
    frame = source.read()
    assert frame.image.shape == (224, 224, 3)
    assert classify(frame) == "macaw"
    source.close()
    assert camera.closed


def test_lores_stays_at_the_model_size(fake, classify):
    camera_module = fake()
    source = Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    [camera] = camera_module.instances
    assert not camera.aligned and camera.camera_configuration()["lores"]["size"] == (224, 224)
    assert camera.camera_configuration()["lores"]["stride"] == 256  # padded rows, dropped by the source
    assert source.read().image.shape == (224, 224, 3)


def test_colour_space_is_the_one_the_conversion_assumes(fake):
    camera_module = fake()
    Picamera2Source(Picamera2Config(width=1920, height=1080), SourceHints(224, 224, "center"))
    # Without a choice, a 1920x1080 video configuration is Rec709; the I420 conversion is BT.601.
    assert camera_module.instances[0].camera_configuration()["colour_space"].name == "Smpte170m"


def test_pi5_crops_lores_by_its_own_aspect_ratio(fake, classify):
    camera_module = fake(platform="pisp")
    source = Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    [camera] = camera_module.instances
    assert camera.camera_configuration()["lores"]["preserve_ar"] is True
    assert "ScalerCrop" not in camera.controls  # ignored on PiSP
    assert camera.crop("lores") == (254, 0, 1520, 1520)
    assert classify(source.read()) == "macaw"


def test_pi5_with_an_older_picamera2_uses_scaler_crop(fake):
    camera_module = fake(platform="pisp", version="0.3.22")
    Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    assert camera_module.instances[0].controls["ScalerCrop"] == (254, 0, 1520, 1520)


def test_letterbox_reads_the_whole_field_of_view_from_the_main_stream(fake):
    camera_module = fake()
    source = Picamera2Source(Picamera2Config(width=640, height=480), SourceHints(224, 224, "letterbox"))
    assert "ScalerCrop" not in camera_module.instances[0].controls
    assert source.read().image.shape == (480, 640, 3)


def test_usb_webcams_are_left_to_the_opencv_source(fake):
    camera_module = fake(cameras=[WEBCAM])
    with pytest.raises(SourceError, match=r"no Pi camera 0: libcamera lists 0 Pi camera\(s\) and 1 USB webcam"):
        Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    assert camera_module.instances == []  # never opened, so never left acquired
    camera_module = fake(cameras=[WEBCAM, IMX477])
    Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    assert camera_module.instances[0].info["Model"] == "imx477"


def test_a_busy_camera_says_who_may_have_it(fake):
    fake(busy=True)
    with pytest.raises(SourceError) as caught:
        Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    assert str(caught.value) == f"cannot open Pi camera 0: {BUSY_HINT}"


def test_a_camera_that_stops_sending_frames_is_a_source_error(fake, monkeypatch):
    monkeypatch.setattr(source_module, "CAPTURE_TIMEOUT_S", 0.5)  # above the startup frames at 30 fps (0.27 s)
    fake(stall_after=1)
    source = Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    assert source.read() is not None
    with pytest.raises(SourceError, match=r"stopped delivering frames \(none in 0.5 s\)"):
        source.read()


def test_a_slow_frame_rate_is_waited_for(fake, classify):
    # At 0.1 fps a frame comes every 10 s, and the first after the 7 startup frames Picamera2 drops: 80 s.
    camera_module = fake()
    source = Picamera2Source(Picamera2Config(fps=0.1), SourceHints(224, 224, "center"))
    assert classify(source.read()) == "macaw" and classify(source.read()) == "macaw"
    assert source_module.capture_timeout_s(0.1, first=True) == CAPTURE_TIMEOUT_S + 100
    assert source_module.capture_timeout_s(0.1, first=False) == CAPTURE_TIMEOUT_S + 30  # beyond 3 intervals
    assert source_module.capture_timeout_s(None, first=True) == CAPTURE_TIMEOUT_S
    assert camera_module.instances[0].controls["FrameRate"] == 0.1


def test_a_camera_module_3_focuses_continuously(fake):
    camera_module = fake(cameras=[IMX708])
    Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    [camera] = camera_module.instances
    # libcamera's Pi AF starts in manual at the tuning file's default lens position: it must be told.
    assert camera.controls["AfMode"] is sys.modules["libcamera"].controls.AfModeEnum.Continuous
    assert "LensPosition" not in camera.controls


def test_a_fixed_focus_distance_is_a_lens_position_in_dioptres(fake):
    camera_module = fake(cameras=[IMX708])
    Picamera2Source(Picamera2Config(focus=0.5), SourceHints(224, 224, "center"))
    [camera] = camera_module.instances
    assert camera.controls["AfMode"] == 0  # AfModeManual: LensPosition is obeyed only then
    assert camera.controls["LensPosition"] == 2.0  # 1 / 0.5 m


def test_a_camera_without_autofocus_ignores_focus(fake, caplog):
    camera_module = fake()  # the IMX477 (HQ camera): a manual lens, no AfMode
    with caplog.at_level(logging.WARNING):
        Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    assert caplog.messages == []
    assert "AfMode" not in camera_module.instances[0].controls  # Picamera2 would refuse it (not advertised)
    with caplog.at_level(logging.WARNING):
        source = Picamera2Source(Picamera2Config(focus=0.3), SourceHints(224, 224, "center"))
        source.read()
    assert caplog.messages == ["picamera2 camera 0 (imx477) has no focus control (AfMode): focus: 0.3 is ignored"]
    assert not {"AfMode", "LensPosition"} & set(camera_module.instances[1].controls)


def test_focus_is_auto_or_a_distance_in_metres(tmp_path: Path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("source: {type: picamera2, focus: 1.5}\n")
    assert load_config(str(config_file)).source.options.focus == 1.5
    config_file.write_text("source: {type: picamera2}\n")
    assert load_config(str(config_file)).source.options.focus == "auto"
    for wrong, why in (("near", "expected one of auto or a number"), ("0", "must be at least 0.01")):
        config_file.write_text(f"source: {{type: picamera2, focus: {wrong}}}\n")
        with pytest.raises(ConfigError, match=why):
            load_config(str(config_file))


def test_a_camera_that_fails_to_start_is_closed(fake):
    camera_module = fake()
    with pytest.raises(SourceError, match="lores stream dimensions may not exceed main stream"):
        Picamera2Source(Picamera2Config(width=128, height=96), SourceHints(224, 224, "center"))
    assert camera_module.instances[0].closed


NUMPY_ABI = "numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, got 88"


def test_a_picamera2_broken_by_numpy_is_a_source_error_that_says_why(cli, images: Path):
    env = {"PYTHONPATH": str(FAKE), "FAKE_PICAMERA2": json.dumps({"import_error": NUMPY_ABI})}
    done = cli("run", "--source", "picamera2", "--model", "/dev/null", env=env)
    assert done.status == 3  # the model is checked first: prove the source's error with a real model next
    models = Path(images).parent / "models"
    done = cli("run", "--source", "picamera2", "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"),
               env=env)
    assert done.status == 4
    [line] = error_lines(done.stderr)
    assert "picamera2 cannot be imported (ValueError: numpy.dtype size changed" in line
    assert "pip install 'numpy==" in line and "Traceback" not in done.stderr


def test_a_camera_unplugged_mid_run_is_reported_lost_before_libcamera_aborts_the_process(cli, models: Path,
                                                                                        images: Path):
    # libcamera 0.4 aborts in Picamera2's stop of a camera whose device is gone: the warning must come first, and
    # the journal then gets where each thread was (the service is restarted by systemd).
    stand_in = {"cameras": [IMX477], "scene": str(images / "parrot.jpg"), "unplugged_after": 3}
    env = {"PYTHONPATH": str(FAKE), "FAKE_PICAMERA2": json.dumps(stand_in)}
    done = cli("run", "--source", "picamera2", "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"), env=env)
    assert done.status == -signal.SIGABRT, done.stderr
    assert [result["frame"] for result in done.results] == [1, 2, 3]
    lost, aborted = done.stderr.find("source lost: picamera2 camera 0 (imx477)"), done.stderr.find("Fatal Python error")
    assert 0 <= lost < aborted, done.stderr
    assert "in _lost" in done.stderr[aborted:]  # the stack says it was closing the lost camera


def test_a_camera_with_regions_reads_the_whole_field_of_view(fake, models: Path, images: Path, tmp_path: Path):
    # Regions need the whole frame: the main stream at its configured size, no centred crop on the sensor and
    # no lores stream cut for one model. The stand-in films a scene with a chickadee left and a macaw right.
    cv2.imwrite(str(tmp_path / "scene.png"), side_by_side(images, "bird.bmp", "parrot.jpg", half=512))
    camera_module = fake(scene=str(tmp_path / "scene.png"))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"""model: {{path: {models / "mobilenet_v2_1.0_224_quant.tflite"}}}
run: {{max_frames: 3}}
cameras:
  pi:
    source: {{type: picamera2, width: 1024, height: 512}}
    regions:
      left: {{box: [0, 0, 0.5, 1]}}
      right: {{box: [0.5, 0, 0.5, 1]}}
""")
    sink = ListOutput()
    with open_run(load_config(str(config_file)), outputs=[sink], environ={}) as run:
        run.execute()
    [camera] = camera_module.instances
    assert camera.camera_configuration()["main"]["size"] == (1024, 512)
    assert "ScalerCrop" not in camera.controls  # the whole field of view
    assert {(r.region, r.top[0].label) for r in sink.results} == {("left", "chickadee"), ("right", "macaw")}


VIMC = {"Model": "Sensor B", "Id": "/base/platform/vimc.0/Sensor B"}  # libcamera's virtual test camera


def test_a_camera_with_one_stream_is_read_on_main_and_scaled_on_the_cpu(fake, classify, images: Path, caplog):
    # vimc (and a USB camera libcamera drives) offers one stream and neither FrameDurationLimits nor ScalerCrop:
    # no lores asked (upstream would read past libcamera's one-entry configuration), no frame rate, no crop.
    camera_module = fake(cameras=[VIMC])
    with caplog.at_level(logging.WARNING):
        source = Picamera2Source(Picamera2Config(fps=10), SourceHints(224, 224, "center"))
    [camera] = camera_module.instances
    assert camera.camera_configuration()["lores"] is None and camera.controls == {}
    # Its own format: RGB888 is listed but fails at the start (EPIPE); BGR888, R, G, B in memory, streams.
    assert camera.camera_configuration()["main"]["format"] == "BGR888"
    assert "has no frame rate control: fps: 10 is ignored" in caplog.text
    frames = [source.read() for _ in range(3)]
    assert [frame.seq for frame in frames] == [1, 2, 3] and frames[0].image.shape == (480, 640, 3)
    # Turned into B, G, R: the photo's own colour balance, not its red and blue swapped.
    scene = cv2.imread(str(images / "parrot.jpg")).reshape(-1, 3).mean(axis=0)
    seen = frames[-1].image.reshape(-1, 3).mean(axis=0)
    assert np.abs(seen - scene).max() < 4 < np.abs(seen[::-1] - scene).max(), (seen, scene)
    assert classify(frames[-1]) == "macaw"  # the CPU crops the centre and scales, as for letterbox's main stream
    source.close()
    assert camera.closed


def test_a_camera_whose_own_format_is_not_rgb_is_refused_in_one_line(fake):
    # A one-stream camera keeps its own format where it has no XBGR8888: YUYV, as a UVC camera's is, is not read here.
    camera_module = fake(cameras=[VIMC], main_format="YUYV")
    with pytest.raises(SourceError) as error:
        Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    assert str(error.value) == ("cannot start Pi camera 0: it gives YUYV frames, which this source cannot read; "
                                "read it through OpenCV instead (source: opencv)")
    [camera] = camera_module.instances
    assert camera.closed and not camera.started


def test_without_a_dma_heap_the_frames_come_from_libcameras_allocator(fake, tmp_path: Path, monkeypatch, caplog):
    # Debian's kernels have no DMA heap: Picamera2() alone raises "Could not open any dmaHeap device".
    monkeypatch.setattr(source_module, "DMA_HEAPS", (str(tmp_path / "no-heap"),))
    camera_module = fake(log=str(tmp_path / "closed.jsonl"), dma_heaps=[str(tmp_path / "no-heap")])
    with caplog.at_level(logging.INFO):
        source = Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center"))
    assert source.read().image.shape == (224, 224, 3)
    source.close()  # upstream's close raises there, after releasing the camera: not the caller's problem
    assert "no DMA heap (/dev/dma_heap): frame buffers from libcamera's allocator instead" in caplog.text
    # With a heap, Picamera2's own DmaAllocator.
    heap = tmp_path / "linux,cma"
    heap.touch()
    monkeypatch.setattr(source_module, "DMA_HEAPS", (str(heap),))
    camera_module = fake(log=str(tmp_path / "closed.jsonl"), dma_heaps=[str(heap)])
    Picamera2Source(Picamera2Config(), SourceHints(224, 224, "center")).close()
    closed = [json.loads(line) for line in (tmp_path / "closed.jsonl").read_text().splitlines()]
    assert [entry["allocator"] for entry in closed] == ["LibcameraAllocator", "DmaAllocator"]
    assert all(camera.closed for camera in camera_module.instances)


def test_lores_serves_a_smaller_model_and_not_a_larger_one(fake):
    fake()
    source = Picamera2Source(Picamera2Config(), SourceHints(160, 160, "center"))
    assert source.retarget(SourceHints(128, 128, "center")) and source.retarget(SourceHints(160, 160, "center"))
    assert not source.retarget(SourceHints(224, 224, "center"))  # the lores stream would be scaled up
    source.close()
    letterbox = Picamera2Source(Picamera2Config(), SourceHints(160, 160, "letterbox"))
    assert letterbox.retarget(SourceHints(224, 224, "letterbox"))  # the main stream: the same for any model
    letterbox.close()


def test_a_larger_model_edited_in_gets_a_lores_stream_of_its_size(models: Path, images: Path, tmp_path: Path):
    # The running service's config gets a model with a larger input: the camera is configured again for it,
    # in the same process, rather than its 128x128 lores frames being scaled up to 224x224.
    from conftest import LiveRun

    stand_in = {"cameras": [IMX477], "scene": str(images / "parrot.jpg")}
    config = tmp_path / "config.yaml"
    text = f"model: {{path: {models / 'mobilenet_v1_0.25_128_quant.tflite'}}}\nsource: {{type: picamera2}}\n"
    config.write_text(text)
    run = LiveRun(config, tmp_path, env={"PYTHONPATH": str(FAKE), "FAKE_PICAMERA2": json.dumps(stand_in)})
    try:
        run.wait_for("model", "mobilenet_v1_0.25_128_quant")
        config.write_text(text.replace("mobilenet_v1_0.25_128_quant", "mobilenet_v2_1.0_224_quant"))
        run.wait_for("model", "mobilenet_v2_1.0_224_quant")
        seen, deadline = len(run.results), time.monotonic() + 15
        while len(run.results) < seen + 3:
            assert run.process.poll() is None and time.monotonic() < deadline, run.results[-1:]
            time.sleep(0.05)
    finally:
        stderr = run.stop()
    assert run.process.returncode == 0, stderr
    switched = stderr.index("opening it again for the model's 224x224 input")
    assert "128x128 frames from its lores stream" in stderr[:switched]
    assert "224x224 frames from its lores stream" in stderr[switched:]
    assert "source lost" not in stderr and "Traceback" not in stderr
    assert {r["top"][0]["label"] for r in run.results[seen:]} == {"macaw"}

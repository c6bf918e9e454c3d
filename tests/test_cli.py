"""End to end: the real CLI in a subprocess, real models and images from ../shared."""

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, error_lines, need, python_start_up_s, write_video

from edge_infer.cli.run import ANSI_COLOUR, native_level

CPU_MODELS = ["mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.5_160_quant", "mobilenet_v1_0.75_192_quant",
              "mobilenet_v2_1.0_224_quant", "tf2_mobilenet_v2_1.0_224_ptq"]
GOLDEN_EVERY_MODEL = {"parrot.jpg": "macaw", "bird.bmp": "chickadee", "sunflower.bmp": "daisy"}
GOLDEN_LARGER_MODELS = {"grace_hopper.bmp": "military uniform"}


def top_label(result: dict) -> str:
    return result["top"][0]["label"]


@pytest.mark.parametrize("model", CPU_MODELS)
def test_golden_labels(cli, models: Path, images: Path, model: str):
    done = cli("run", "--model", str(models / f"{model}.tflite"), "--source", str(images), "--top-k", "3")
    assert done.status == 0, done.stderr
    by_file = {Path(r["path"]).name: r for r in done.results}
    assert len(by_file) == len(list(images.glob("*.*"))) - 1  # every image but COPYRIGHT.txt
    expected = dict(GOLDEN_EVERY_MODEL)
    if model in ("mobilenet_v2_1.0_224_quant", "mobilenet_v1_0.75_192_quant"):
        expected.update(GOLDEN_LARGER_MODELS)
    assert {name: top_label(by_file[name]) for name in expected} == expected


def test_result_lines_have_the_documented_fields(cli, models: Path, images: Path):
    done = cli("run", "--model", str(models / "mobilenet_v1_0.5_160_quant.tflite"),
               "--source", str(images / "parrot.jpg"), "--top-k", "2")
    assert done.status == 0
    [result] = done.results
    assert result["type"] == "classification" and result["frame"] == 1
    assert result["model"] == "mobilenet_v1_0.5_160_quant" and result["backend"] == "cpu"
    assert abs(result["ts"] - time.time()) < 120
    assert result["path"] == str(images / "parrot.jpg")
    first, second = result["top"]
    assert set(first) == {"index", "label", "score"} and first["index"] == 89 and 0.5 < first["score"] <= 1.0
    assert first["score"] >= second["score"]
    latency = result["latency_ms"]
    assert latency["inference"] > 0
    # age: from the source delivering the frame to this result, so it covers every stage and the waits between
    assert latency["age"] >= latency["total"] - 0.05
    assert latency["total"] == pytest.approx(latency["preprocess"] + latency["inference"] + latency["postprocess"],
                                             abs=0.01)
    assert "model mobilenet_v1_0.5_160_quant" in done.stderr  # logs go to stderr
    assert "Created TensorFlow Lite XNNPACK delegate" in done.stderr  # the runtime's own word that XNNPACK is on


def test_model_by_name_from_the_models_environment(cli, models: Path, images: Path):
    done = cli("run", "--model", "mobilenet_v1_0.25_128_quant", "--source", str(images / "bird.bmp"),
               env={"EDGE_INFER_MODELS": str(models)})
    assert done.status == 0 and top_label(done.results[0]) == "chickadee"


def test_threads_flag_reaches_the_interpreter(cli, models: Path, images: Path):
    done = cli("run", "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--threads", "1",
               "--source", str(images / "bird.bmp"))
    assert done.status == 0 and ", 1 threads," in done.stderr


def photo_video(path: Path, images: Path, sequence: list[str], repeat: int) -> None:
    """An MJPEG AVI of centre-cropped 256x256 frames, each image `repeat` times."""
    def square(name: str) -> np.ndarray:
        image = cv2.imread(str(images / name))
        h, w = image.shape[:2]
        side = min(h, w)
        cropped = image[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
        return cv2.resize(cropped, (256, 256), interpolation=cv2.INTER_AREA)

    write_video(path, [square(name) for name in sequence for _ in range(repeat)])


def test_video_file_gives_the_label_sequence(cli, tmp_path: Path, models: Path, images: Path):
    video = tmp_path / "clip.avi"
    photo_video(video, images, ["parrot.jpg", "bird.bmp", "sunflower.bmp", "parrot.jpg"], repeat=3)
    done = cli("run", "--model", str(models / "mobilenet_v2_1.0_224_quant.tflite"), "--source", str(video),
               "--top-k", "1")
    assert done.status == 0, done.stderr
    assert [r["frame"] for r in done.results] == list(range(1, 13))
    assert [top_label(r) for r in done.results] == ["macaw"] * 3 + ["chickadee"] * 3 + ["daisy"] * 3 + ["macaw"] * 3
    assert "path" not in done.results[0]


def test_smoothing_holds_a_label_across_a_one_frame_change(cli, tmp_path: Path, models: Path, images: Path):
    video = tmp_path / "blip.avi"
    photo_video(video, images, ["parrot.jpg"] * 4 + ["bird.bmp"] + ["parrot.jpg"] * 2, repeat=1)
    model = str(models / "mobilenet_v2_1.0_224_quant.tflite")
    raw = cli("run", "--model", model, "--source", str(video))
    smoothed = cli("run", "--model", model, "--source", str(video), "--smoothing", "4")
    assert [top_label(r) for r in raw.results][4] == "chickadee"
    assert {top_label(r) for r in smoothed.results} == {"macaw"}


def test_max_frames_with_a_looping_source(cli, tmp_path: Path, models: Path, images: Path):
    config = tmp_path / "loop.yaml"
    config.write_text(f"source:\n  type: images\n  path: {images / 'bird.bmp'}\n  loop: true\n")
    done = cli("run", "--config", str(config), "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"),
               "--max-frames", "5")
    assert done.status == 0 and [r["frame"] for r in done.results] == [1, 2, 3, 4, 5]


# --- the Edge TPU, without one -----------------------------------------------------------------

def test_edgetpu_model_on_the_cpu_names_the_cpu_model(cli, models: Path, images: Path):
    done = cli("run", "--model", str(models / "mobilenet_v1_0.5_160_quant_edgetpu.tflite"),
               "--source", str(images / "parrot.jpg"))
    assert done.status == 3 and done.results == []
    [line] = error_lines(done.stderr)
    assert "compiled for the Coral Edge TPU" in line and "mobilenet_v1_0.5_160_quant.tflite" in line
    assert "Traceback" not in done.stderr and "unresolved custom op" not in done.stderr


def test_edgetpu_without_the_library_says_what_to_install(cli, models: Path, images: Path):
    done = cli("run", "--model", str(models / "mobilenet_v1_0.5_160_quant_edgetpu.tflite"), "--delegate", "edgetpu",
               "--source", str(images / "parrot.jpg"))
    assert done.status == 5
    [line] = error_lines(done.stderr)
    assert "libedgetpu.so.1 not found" in line and "libedgetpu1-std" in line
    assert "mobilenet_v1_0.5_160_quant.tflite" in line
    assert "Traceback" not in done.stderr


def test_edgetpu_falls_back_to_the_cpu_model(cli, tmp_path: Path, models: Path, images: Path):
    config = tmp_path / "tpu.yaml"
    config.write_text(f"model:\n  path: {models / 'mobilenet_v1_0.5_160_quant_edgetpu.tflite'}\n"
                      f"  delegate: edgetpu\n  edgetpu_device: usb\n"
                      f"  fallback_model: mobilenet_v1_0.5_160_quant\n  models_dir: {models}\n")
    done = cli("run", "--config", str(config), "--source", str(images / "parrot.jpg"))
    assert done.status == 0, done.stderr
    [result] = done.results
    assert result["backend"] == "cpu" and result["model"] == "mobilenet_v1_0.5_160_quant"
    assert top_label(result) == "macaw"
    assert "falling back to mobilenet_v1_0.5_160_quant on the CPU" in done.stderr


STUB_EDGETPU = """
/* Stands in for libedgetpu.so.1 with no Coral attached: the library loads, the delegate does not. */
void *tflite_plugin_create_delegate(char **keys, char **values, unsigned long n, void (*report)(const char *)) {
    return 0;
}
void tflite_plugin_destroy_delegate(void *delegate) {}
"""


def test_edgetpu_library_without_a_device(cli, tmp_path: Path, models: Path, images: Path):
    source = tmp_path / "stub.c"
    source.write_text(STUB_EDGETPU)
    subprocess.run([need("gcc"), "-shared", "-fPIC", "-o", str(tmp_path / "libedgetpu.so.1"), str(source)], check=True)
    done = cli("run", "--model", str(models / "mobilenet_v1_0.5_160_quant_edgetpu.tflite"), "--delegate", "edgetpu",
               "--source", str(images / "parrot.jpg"), env={"LD_LIBRARY_PATH": str(tmp_path)})
    assert done.status == 5
    [line] = error_lines(done.stderr)
    assert "no Edge TPU device could be opened" in line and "plugged in" in line
    assert "Traceback" not in done.stderr


# Stands in for a libedgetpu whose delegate loads: TfLiteDelegate's layout (tensorflow/lite/core/c/common.h:
# data_, Prepare, three buffer-handle functions, flags, opaque_delegate_builder); Prepare returns PREPARE.
# With 1 (kTfLiteError) it is a libedgetpu built for another TensorFlow, whose custom op cannot prepare;
# with 0 it claims no node, as libedgetpu does for a model not compiled for the Edge TPU.
STUB_EDGETPU_DELEGATE = """
#include <stdint.h>
#include <stdlib.h>
typedef struct Delegate {
    void *data;
    int (*prepare)(void *context, struct Delegate *delegate);
    void *copy_from, *copy_to, *free_handle;
    int64_t flags;
    void *opaque_builder;
} Delegate;
static int prepare(void *context, Delegate *delegate) { return PREPARE; }
void *tflite_plugin_create_delegate(char **keys, char **values, unsigned long n, void (*report)(const char *)) {
    Delegate *delegate = calloc(1, sizeof *delegate);
    delegate->prepare = prepare;
    return delegate;
}
void tflite_plugin_destroy_delegate(void *delegate) { free(delegate); }
"""


def stub_edgetpu(directory: Path, prepare_status: int) -> dict[str, str]:
    """Builds a stand-in libedgetpu.so.1 in `directory`; returns the environment that loads it."""
    source = directory / "delegate.c"
    source.write_text(STUB_EDGETPU_DELEGATE.replace("PREPARE", str(prepare_status)))
    subprocess.run([need("gcc"), "-shared", "-fPIC", "-o", str(directory / "libedgetpu.so.1"), str(source)],
                   check=True)
    return {"LD_LIBRARY_PATH": str(directory)}


def test_a_libedgetpu_that_cannot_prepare_the_model_is_an_accelerator_error(cli, tmp_path, models, images):
    done = cli("run", "--model", str(models / "mobilenet_v1_0.5_160_quant_edgetpu.tflite"), "--delegate", "edgetpu",
               "--source", str(images / "parrot.jpg"), env=stub_edgetpu(tmp_path, 1))
    assert done.status == 5, done.stderr  # not 3: the model is fine, and systemd retries 5
    [line] = error_lines(done.stderr)
    assert "the Edge TPU delegate could not prepare" in line and "libedgetpu" in line and "TensorFlow" in line
    assert "Traceback" not in done.stderr


def test_a_libedgetpu_that_cannot_prepare_the_model_falls_back(cli, tmp_path, models, images):
    config = tmp_path / "tpu.yaml"
    config.write_text(f"model:\n  path: {models / 'mobilenet_v1_0.5_160_quant_edgetpu.tflite'}\n"
                      f"  delegate: edgetpu\n  fallback_model: mobilenet_v1_0.5_160_quant\n  models_dir: {models}\n")
    done = cli("run", "--config", str(config), "--source", str(images / "parrot.jpg"), env=stub_edgetpu(tmp_path, 1))
    assert done.status == 0, done.stderr
    [result] = done.results
    assert result["backend"] == "cpu" and result["model"] == "mobilenet_v1_0.5_160_quant"
    assert top_label(result) == "macaw"


def test_a_cpu_model_with_the_edgetpu_delegate_reports_the_cpu(cli, tmp_path, models, images):
    done = cli("run", "--model", str(models / "mobilenet_v1_0.5_160_quant.tflite"), "--delegate", "edgetpu",
               "--source", str(images / "parrot.jpg"), env=stub_edgetpu(tmp_path, 0))
    assert done.status == 0, done.stderr
    [result] = done.results
    assert result["backend"] == "cpu" and top_label(result) == "macaw"
    assert "not compiled for the Edge TPU: it will run on the CPU" in done.stderr


# --- bad input: one line, a defined status, no traceback -----------------------------------------

def assert_one_error(done, status: int, fragment: str) -> None:
    assert done.status == status, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_missing_model(cli, images: Path):
    assert_one_error(cli("run", "--model", "/nowhere/model.tflite", "--source", str(images / "bird.bmp")),
                     3, "model file '/nowhere/model.tflite' does not exist")


def test_corrupt_model(cli, tmp_path: Path, models: Path, images: Path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes((models / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()[:20000])
    assert_one_error(cli("run", "--model", str(broken), "--source", str(images / "bird.bmp")), 3, "broken.tflite")


def test_a_model_that_is_not_a_classifier(cli, models: Path, images: Path):
    done = cli("run", "--model", str(models / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"),
               "--source", str(images / "bird.bmp"))
    assert_one_error(done, 3, "is not an image classifier: its output is [1, 1, 1, 1024]")


def test_a_model_with_an_op_the_runtime_lacks(cli, models: Path, images: Path):
    done = cli("run", "--model", str(models / "model_invoking_error.tflite"), "--source", str(images / "bird.bmp"))
    assert_one_error(done, 3, "uses the custom op 'fake-op-double'")


def test_labels_file_that_does_not_fit(cli, tmp_path: Path, models: Path, images: Path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    done = cli("run", "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--labels", str(labels),
               "--source", str(images / "bird.bmp"))
    assert_one_error(done, 3, "2 labels from")


def test_camera_that_cannot_be_opened(cli, models: Path):
    done = cli("run", "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--source", "/dev/video99")
    assert_one_error(done, 4, "cannot open camera /dev/video99")


def test_picamera2_off_a_pi_says_how_to_install_it(cli, models: Path):
    done = cli("run", "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--source", "picamera2")
    assert_one_error(done, 4, "sudo apt install python3-picamera2")
    assert "--system-site-packages" in done.stderr


def test_unreadable_image(cli, tmp_path: Path, models: Path):
    bad = tmp_path / "photo.jpg"
    bad.write_text("not a jpeg")
    done = cli("run", "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--source", str(bad))
    assert_one_error(done, 4, f"cannot read image '{bad}'")


def test_an_unreadable_image_among_good_ones_loses_nothing(cli, tmp_path: Path, models: Path, images: Path):
    (tmp_path / "a.jpg").write_bytes((images / "parrot.jpg").read_bytes())
    (tmp_path / "b.jpg").write_text("truncated")
    (tmp_path / "c.bmp").write_bytes((images / "bird.bmp").read_bytes())
    done = cli("run", "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--source", str(tmp_path))
    assert done.status == 4
    assert [top_label(r) for r in done.results] == ["macaw", "chickadee"]
    assert "b.jpg" in done.stderr and "1 frame(s)" in error_lines(done.stderr)[0]


def test_video_that_is_not_a_video(cli, tmp_path: Path, models: Path):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\x00" * 4096)
    done = cli("run", "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--source", str(fake))
    assert done.status == 4 and len(error_lines(done.stderr)) == 1 and "Traceback" not in done.stderr


def test_source_that_does_not_exist(cli):
    assert_one_error(cli("run", "--source", "/no/such/thing.jpg"), 2, "--source: '/no/such/thing.jpg'")


def test_bad_config_fails_before_anything_starts(cli, tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  path: x\npostprocess:\n  top_k: -1\n")
    done = cli("run", "--config", str(config))
    assert_one_error(done, 2, f"{config}:4: postprocess.top_k: must be at least 1")
    assert "classes (labels from" not in done.stderr  # no model was loaded


def test_check_config(cli, tmp_path: Path):
    ok = cli("run", "--config", str(REPO / "config.yaml"), "--check-config")
    assert ok.status == 0 and "configuration OK" in ok.stdout + ok.stderr
    (tmp_path / "config.yaml").write_text("postprocess:\n  smoothing: 0\n")
    picked_up = cli("run", "--check-config")  # ./config.yaml is found on its own
    assert picked_up.status == 2 and "config.yaml:2: postprocess.smoothing" in picked_up.stderr


# --- signals -----------------------------------------------------------------------------------

def looping_run(tmp_path: Path, models: Path, images: Path) -> subprocess.Popen:
    """The real CLI classifying one photo over and over, once its first result is out."""
    config = tmp_path / "loop.yaml"
    config.write_text(f"source:\n  type: images\n  path: {images / 'bird.bmp'}\n  loop: true\n")
    process = subprocess.Popen([sys.executable, "-m", "edge_infer", "run", "--config", str(config),
                                "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite")],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    assert '"chickadee"' in process.stdout.readline()
    return process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_run_cleanly(tmp_path: Path, models: Path, images: Path, signum: int):
    process = looping_run(tmp_path, models, images)
    process.send_signal(signum)
    sent = time.monotonic()
    stdout, stderr = process.communicate(timeout=10)
    assert time.monotonic() - sent < 2.0
    assert process.returncode == 0, stderr
    assert all(line.endswith("}") for line in stdout.splitlines())  # no half-written line
    assert f"{signal.Signals(signum).name}: stopping" in stderr


def test_libcameras_errors_are_warnings_its_warnings_info_and_other_native_lines_debug():
    # As libcamera writes them to stderr (log.cpp, LogOutput::write), the colour escapes stripped before this.
    for severity, level in ((" WARN", logging.INFO), ("ERROR", logging.WARNING), ("FATAL", logging.WARNING)):
        line = f"[0:03:58.519322256] [631] {severity} V4L2 v4l2_videodevice.cpp:1963 /dev/video6[17:cap]: Failed"
        assert native_level(line) == level, line
    info = "[0:00:01.000000001] [12]  INFO Camera camera_manager.cpp:330 libcamera v0.4.0"
    assert native_level(info) == logging.DEBUG
    assert native_level("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") == logging.INFO
    assert native_level("Premature end of JPEG file") == logging.DEBUG
    assert native_level("[h264 @ 0x55d0c0a0] error while decoding MB 12 7") == logging.DEBUG  # FFmpeg's noise
    coloured = "[0:00:02.5] [631] \x1b[1;31mERROR \x1b[1;37mV4L2 \x1b[0mx"
    assert ANSI_COLOUR.sub("", coloured) == "[0:00:02.5] [631] ERROR V4L2 x"


def test_an_abort_leaves_the_python_stacks_on_stderr(tmp_path: Path, models: Path, images: Path):
    # SIGABRT, as a native library's abort() raises it or systemd's watchdog sends it: the journal gets where each
    # thread was, not silence.
    process = looping_run(tmp_path, models, images)
    process.send_signal(signal.SIGABRT)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == -signal.SIGABRT
    assert "Fatal Python error: Aborted" in stderr
    assert re.search(r'File ".*edge_infer/.*\.py", line \d+ in \w+', stderr), stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_any_moment_of_start_up_ends_cleanly(tmp_path: Path, models: Path, images: Path, signum: int):
    config = tmp_path / "loop.yaml"
    config.write_text(f"source:\n  type: images\n  path: {images / 'bird.bmp'}\n  loop: true\n")
    python_up = python_start_up_s()
    for delay in (python_up + extra for extra in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)):  # imports .. first frames
        process = subprocess.Popen([sys.executable, "-m", "edge_infer", "run", "--config", str(config), "--model",
                                    str(models / "mobilenet_v1_0.25_128_quant.tflite")], cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=20)
        # Before Python runs any of our code SIGTERM's default action ends it: systemd counts that as clean.
        clean = (0, -signal.SIGTERM) if signum == signal.SIGTERM and delay == python_up else (0,)
        assert process.returncode in clean and "Traceback" not in stderr and error_lines(stderr) == [], \
            (delay, process.returncode, stderr)


def test_a_closed_stdout_ends_the_run(tmp_path: Path, models: Path, images: Path):
    config = tmp_path / "loop.yaml"
    config.write_text(f"source:\n  type: images\n  path: {images / 'bird.bmp'}\n  loop: true\n")
    pipeline = subprocess.run(f"'{sys.executable}' -m edge_infer run --config '{config}' --model "
                              f"'{models / 'mobilenet_v1_0.25_128_quant.tflite'}' | head -n 3",
                              shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert len(pipeline.stdout.splitlines()) == 3
    assert "Traceback" not in pipeline.stderr

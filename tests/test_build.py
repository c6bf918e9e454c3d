"""`edge-infer models build`, with TensorFlow: random-weight grid points and a trained MobileNet V1
(the ../shared 0.25_128 weights moved into Keras, see keras_from_tflite.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.models.tensors import TensorSpec
from edge_infer.pipeline.preprocess import Preprocessor

try:
    import tensorflow  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("TensorFlow is not installed (pip install 'edge-infer[build]')", allow_module_level=True)

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from edge_infer.training.build import BuildRequest, build  # noqa: E402

GOLDEN = {"parrot.jpg": "macaw", "bird.bmp": "chickadee", "sunflower.bmp": "daisy"}


@pytest.fixture(scope="module")
def calibration(images: Path, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("calibration")
    for image in images.iterdir():
        if image.suffix in (".jpg", ".bmp"):
            shutil.copy(image, directory)
    return directory


@pytest.fixture(scope="module")
def trained(models: Path, tmp_path_factory) -> tuple[object, Path]:
    """A trained Keras MobileNet V1 0.25/128 (1001 classes), and the same saved as a .keras file."""
    from keras_from_tflite import trained_mobilenet_v1

    model = trained_mobilenet_v1(models / "mobilenet_v1_0.25_128_quant.tflite", 0.25, 128)
    path = tmp_path_factory.mktemp("keras") / "finetuned.keras"
    model.save(path)
    return model, path


def model_input(image: np.ndarray, size: int) -> np.ndarray:
    """The runtime's own preprocessing for a float input: centre crop, box_linear, RGB, [-1, 1]."""
    out = np.empty((1, size, size, 3), np.float32)
    Preprocessor(TensorSpec(0, (1, size, size, 3), np.float32, 0.0, 0), mean=127.5, std=127.5)(image, out[0])
    return out


def tflite_scores(path: Path, batch: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = source["quantization"]
    data = batch if not scale else np.clip(np.rint(batch / scale + zero_point), *(
        (0, 255) if source["dtype"] == np.uint8 else (-128, 127))).astype(source["dtype"])
    interpreter.set_tensor(source["index"], data)
    interpreter.invoke()
    raw = interpreter.get_tensor(target["index"])[0]
    out_scale, out_zero = target["quantization"]
    return (raw.astype(np.float32) - out_zero) * out_scale if out_scale else raw


def test_float32_matches_keras(trained, tmp_path: Path, images: Path, models: Path):
    model, keras_file = trained
    result = build(BuildRequest("mobilenet_v1", 0.25, 128, weights=str(keras_file), quantize="float32",
                                labels=str(models / "imagenet_labels.txt"), output=str(tmp_path / "f32.tflite")))
    for name in GOLDEN:
        batch = model_input(cv2.imread(str(images / name)), 128)
        expected = model.predict(batch, verbose=0)[0]
        # Same float graph, different kernels: agreement to float32 rounding, far below any score step.
        np.testing.assert_allclose(tflite_scores(result.path, batch), expected, atol=1e-4)


def test_uint8_agrees_with_float_on_the_photos(trained, tmp_path: Path, images: Path, models: Path, calibration):
    _, keras_file = trained
    labels = str(models / "imagenet_labels.txt")
    floating = build(BuildRequest("mobilenet_v1", 0.25, 128, weights=str(keras_file), quantize="float32",
                                  labels=labels, output=str(tmp_path / "f32.tflite")))
    quantized = build(BuildRequest("mobilenet_v1", 0.25, 128, weights=str(keras_file), quantize="uint8",
                                   calibration=str(calibration), labels=labels, output=str(tmp_path / "u8.tflite")))
    # The head is trained, so top-1 is meaningful: full-integer quantization must not change it
    # on these photos (a random head's near-uniform scores would make top-1 noise).
    agree = 0
    photos = sorted(p for p in images.iterdir() if p.suffix in (".jpg", ".bmp"))
    for photo in photos:
        batch = model_input(cv2.imread(str(photo)), 128)
        agree += int(np.argmax(tflite_scores(floating.path, batch)) == np.argmax(tflite_scores(quantized.path,
                                                                                                batch)))
    assert agree >= len(photos) - 1  # the cats sit between tabby, tiger cat and Egyptian cat
    assert quantized.path.stat().st_size < floating.path.stat().st_size / 3


def test_built_model_runs_through_run_and_bench(trained, tmp_path: Path, images: Path, models: Path, calibration,
                                                cli):
    _, keras_file = trained
    built = build(BuildRequest("mobilenet_v1", 0.25, 128, weights=str(keras_file), quantize="uint8",
                               calibration=str(calibration), labels=str(models / "imagenet_labels.txt"),
                               output=str(tmp_path / "mine.tflite")))
    done = cli("run", "--model", str(built.path), "--source", str(images), "--top-k", "1")
    assert done.status == 0, done.stderr
    assert "labels from model metadata" in done.stderr
    by_file = {Path(r["path"]).name: r["top"][0]["label"] for r in done.results}
    assert {name: by_file[name] for name in GOLDEN} == GOLDEN
    bench = cli("bench", str(built.path), "--threads", "1", "--runs", "5", "--warmup", "1", "--frames", "5",
                "--seconds", "0", "--json", json_lines=False)
    assert bench.status == 0, bench.stderr
    [result] = json.loads(bench.stdout)["results"]
    assert result["alpha"] == 0.25 and result["resolution"] == 128 and result["invoke"]["fps"] > 0


def test_an_extractor_of_trained_weights_is_a_base_teach_takes(trained, tmp_path: Path, images: Path, models: Path,
                                                               shared: Path, calibration, cli):
    """The trained V1 0.25_128 built with --extractor: its output is the pooled embedding [1, 256] (int8, the
    normalization packed), the same embedding Coral's classifier computes before its logits, and teach trains on it."""
    from test_teach import compose

    from edge_infer.models.files import read_model
    from edge_infer.models.metadata import packed_info
    from edge_infer.pipeline.preprocess import PreprocessConfig
    from edge_infer.teach.embed import Extractor
    from edge_infer.teach.graph import embedding_point

    _, keras_file = trained
    extractor = tmp_path / "extractor.tflite"
    done = cli("models", "build", "--extractor", "--alpha", "0.25", "--resolution", "128", "--weights",
               str(keras_file), "--calibration", str(calibration), "--output", str(extractor), json_lines=False,
               timeout=300)
    assert done.status == 0, done.stderr
    assert f"{extractor}: " in done.stderr and "embedding [1, 256]" in done.stderr
    output = Interpreter(model_path=str(extractor)).get_output_details()[0]
    assert list(output["shape"]) == [1, 256] and output["dtype"] == np.int8
    model = read_model(extractor)
    info = packed_info(model)
    assert info["extractor"] is True and info["embedding"] == 256 and (info["mean"], info["std"]) == (127.5, 127.5)
    assert embedding_point(model.content).tensor == output["index"]  # teach finds the embedding at the output
    ours = Extractor(model, PreprocessConfig())
    coral = Extractor(read_model(models / "mobilenet_v1_0.25_128_quant.tflite"), PreprocessConfig())
    for name in GOLDEN:
        image = cv2.imread(str(images / name))
        mine, theirs = ours.embed(image), coral.embed(image)
        # The same network, quantized twice (uint8 by TF1, int8 here): the same direction, to quantization noise.
        assert float(mine @ theirs / np.linalg.norm(mine) / np.linalg.norm(theirs)) > 0.98, name
    compose(shared, tmp_path / "dataset", 6, seed=1)
    taught = cli("teach", "train", str(tmp_path / "dataset"), "--base", str(extractor), "--output",
                 str(tmp_path / "taught.tflite"), "--json", json_lines=False)
    assert taught.status == 0, taught.stderr
    report = json.loads(taught.stdout)
    assert report["held_out_accuracy"] >= 0.8 and report["agreement"] >= 0.95
    assert (tmp_path / "taught.tflite").is_file()
    refused = cli("run", "--model", str(extractor), "--source", str(images / "parrot.jpg"), json_lines=False)
    assert refused.status == 3 and "is an embedding extractor, not a classifier: teach it" in refused.stderr


def test_random_weight_grid_points_and_their_cost(tmp_path: Path, calibration):
    v1 = build(BuildRequest("mobilenet_v1", 0.25, 128, quantize="float32", output=str(tmp_path / "v1.tflite")))
    # Published: 14 M MACs (whole millions) and 0.47 M parameters for MobileNet V1 0.25_128.
    assert round(v1.cost.macs / 1e6) == 14 and abs(v1.cost.params / 1e6 - 0.47) / 0.47 < 0.03
    v2 = build(BuildRequest("mobilenet_v2", 0.35, 96, quantize="uint8", calibration=str(calibration),
                            output=str(tmp_path / "v2.tflite")))
    interpreter = Interpreter(model_path=str(v2.path))
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 96, 96, 3]
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert v2.cost.ops.get("ADD", 0) >= 10  # inverted residual blocks
    assert v1.cost.ops["DEPTHWISE_CONV_2D"] == 13


def test_grid_skips_what_is_built(cli, tmp_path: Path):
    (tmp_path / "mobilenet_v1_0.25_160_float32.tflite").write_bytes(b"built before")  # one grid point is there
    args = ("models", "build", "--grid", "--alphas", "0.25", "--resolutions", "128,160", "--quantize", "float32",
            "--output-dir", str(tmp_path))
    first = cli(*args, json_lines=False, timeout=300)
    assert first.status == 0, first.stderr
    assert first.stderr.count("already built") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mobilenet_v1_0.25_128_float32.tflite",
                                                          "mobilenet_v1_0.25_160_float32.tflite"]
    assert (tmp_path / "mobilenet_v1_0.25_160_float32.tflite").read_bytes() == b"built before"
    second = cli(*args, json_lines=False)
    assert second.stderr.count("already built") == 2


@pytest.mark.parametrize("args, message", [
    (("--alpha", "0.3", "--resolution", "128"), "--alpha: Keras's mobilenet_v1 supports 0.25, 0.5, 0.75, 1.0, not 0.3"),
    (("--alpha", "0.25", "--resolution", "100"), "--resolution: Keras's mobilenet_v1 supports"),
    (("--arch", "mobilenet_v2", "--alpha", "0.25", "--resolution", "96"), "mobilenet_v2 supports 0.35"),
    (("--alpha", "0.25", "--resolution", "128", "--quantize", "int4"), "--quantize: 'int4' is not one of"),
    (("--alpha", "0.25", "--resolution", "128", "--quantize", "uint8"), "needs --calibration DIR"),
    (("--alpha", "0.25", "--resolution", "128"), "--quantize int8 needs --calibration DIR"),  # the default: int8
    (("--extractor", "--alpha", "0.25", "--resolution", "128", "--quantize", "float32", "--classes", "5"),
     "--extractor: an embedding extractor has no classes, so no --classes"),
])
def test_bad_requests_fail_before_building(cli, tmp_path: Path, args, message):
    done = cli("models", "build", *args, "--output", str(tmp_path / "x.tflite"), json_lines=False)
    assert done.status == 2 and message in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_calibration_without_images(cli, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    done = cli("models", "build", "--alpha", "0.25", "--resolution", "128", "--calibration", str(empty),
               "--output", str(tmp_path / "x.tflite"), json_lines=False)
    assert done.status == 2 and "--calibration: no images in" in done.stderr
    assert not (tmp_path / "x.tflite").exists()


def test_unwritable_output(cli, tmp_path: Path):
    done = cli("models", "build", "--alpha", "0.25", "--resolution", "128", "--quantize", "float32",
               "--output", str(tmp_path / "missing-dir" / "x.tflite"), json_lines=False)
    assert done.status == 2 and "--output: cannot write into" in done.stderr


def test_edgetpu_without_the_compiler_says_so(cli, tmp_path: Path, calibration):
    done = cli("models", "build", "--alpha", "0.25", "--resolution", "128", "--calibration", str(calibration),
               "--output", str(tmp_path / "m.tflite"), "--edgetpu", json_lines=False, timeout=300,
               env={"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"})
    assert done.status == 5 and "edgetpu_compiler is not on PATH" in done.stderr
    assert (tmp_path / "m.tflite").is_file() and not (tmp_path / "m_edgetpu.tflite").exists()


def test_the_runtime_never_imports_tensorflow(images: Path, models: Path, tmp_path: Path):
    code = ("import sys; from edge_infer.cli import main; "
            f"status = main(['run', '--model', {str(models / 'mobilenet_v1_0.25_128_quant.tflite')!r}, "
            f"'--source', {str(images / 'bird.bmp')!r}]); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

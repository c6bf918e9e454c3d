"""`edge-infer teach train` end to end: a dataset composed from the photos in ../shared, the real CLI, the model
it writes run by `edge-infer run` and by the bare LiteRT interpreter."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import error_lines

from edge_infer.errors import ConfigError
from edge_infer.teach.dataset import read_dataset

BASE = "mobilenet_v1_0.25_128_quant.tflite"


def compose(shared: Path, folder: Path, per_class: int, seed: int) -> dict[str, list[Path]]:
    """Crops of a few photos per class, in other light: what a camera sees of one scene at other moments."""
    sources = {"bird": ["images/bird.bmp", "scenes/bird_segmentation.bmp"], "dog": ["scenes/dog_segmentation.bmp"],
               "street": ["scenes/traffic_0001.bmp", "scenes/traffic_0002.bmp", "scenes/traffic_0003.bmp"]}
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for name, files in sources.items():
        (folder / name).mkdir(parents=True)
        for number in range(per_class):
            photo = cv2.imread(str(shared / files[number % len(files)]))
            height, width = photo.shape[:2]
            side = rng.uniform(0.6, 1.0)
            h, w = int(height * side), int(width * side)
            y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            crop = cv2.convertScaleAbs(photo[y: y + h, x: x + w], alpha=rng.uniform(0.8, 1.2),
                                       beta=rng.uniform(-15, 15))
            path = folder / name / f"{number:03d}.jpg"
            cv2.imwrite(str(path), crop)
            written.setdefault(name, []).append(path)
    return written


@pytest.fixture(scope="module")
def taught(shared: Path, tmp_path_factory) -> tuple[Path, dict, dict[str, list[Path]]]:
    """A model taught with 12 images per class, its JSON report, and unseen images of each class."""
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("teach")
    compose(shared, tmp / "dataset", 12, seed=1)
    unseen = compose(shared, tmp / "unseen", 4, seed=2)
    done = run_cli("teach", "train", str(tmp / "dataset"), "--base", str(shared / "models" / BASE),
                   "--output", str(tmp / "mine.tflite"), "--json", cwd=tmp, json_lines=False)
    assert done.status == 0, done.stderr
    return tmp / "mine.tflite", json.loads(done.stdout), unseen


def test_the_report_has_held_out_accuracy_per_class_and_the_confusion_matrix(taught):
    _, report, _ = taught
    assert report["method"] == "softmax regression"  # 12 images per class
    assert [(c["name"], c["images"]) for c in report["classes"]] == [("bird", 12), ("dog", 12), ("street", 12)]
    assert report["held_out_accuracy"] >= 0.9 and all(c["held_out_accuracy"] >= 0.75 for c in report["classes"])
    confusion = np.array(report["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum(axis=1).tolist() == [12, 12, 12]
    assert report["agreement"] >= 0.95 and report["warnings"] == []


def test_the_taught_model_classifies_unseen_images_in_edge_infer_run(taught, cli):
    model, _, unseen = taught
    for name, paths in unseen.items():
        done = cli("run", "--model", str(model), "--source", str(paths[0].parent), "--log-level", "warning")
        assert done.status == 0, done.stderr
        labels = [r["label"] for r in done.results]
        assert labels.count(name) >= 3, (name, labels)  # 4 unseen images each


def test_the_bare_interpreter_gives_the_runs_scores(taught, cli):
    from ai_edge_litert.interpreter import Interpreter

    from edge_infer.models.tensors import tensor_spec
    from edge_infer.pipeline.preprocess import Preprocessor

    model, _, unseen = taught
    image = unseen["dog"][0]
    done = cli("run", "--model", str(model), "--source", str(image), "--log-level", "warning")
    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    spec = tensor_spec(interpreter.get_input_details()[0])
    Preprocessor(spec)(cv2.imread(str(image)), interpreter.tensor(spec.index)()[0])
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    scale, zero_point = output["quantization"]
    scores = (interpreter.get_tensor(output["index"])[0].astype(np.float32) - zero_point) * scale
    by_index = {c["index"]: c["score"] for c in done.results[0]["top"]}
    assert by_index and all(abs(scores[i] - s) < 1e-5 for i, s in by_index.items())


def test_models_inspect_shows_the_taught_labels_and_the_new_head(taught, cli):
    model, _, _ = taught
    done = cli("models", "inspect", str(model), "--json", json_lines=False)
    info = json.loads(done.stdout)
    assert done.status == 0 and info["ops"]["FULLY_CONNECTED"] == info["ops"]["SOFTMAX"] == 1
    assert info["outputs"][0]["shape"] == [1, 3] and info["labels"] == "model metadata (3 labels)"


def test_unknown_below_makes_a_scene_of_no_taught_class_say_null(taught, cli, images: Path, tmp_path: Path):
    model, _, unseen = taught
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{path: {model}}}\npostprocess: {{unknown_below: 0.999}}\n")
    done = cli("run", "--config", str(config), "--source", str(images / "sunflower.bmp"), "--log-level", "warning")
    assert done.status == 0, done.stderr
    assert done.results[0]["label"] is None and done.results[0]["top"] == []
    config.write_text(f"model: {{path: {model}}}\npostprocess: {{unknown_below: 0.01}}\n")
    done = cli("run", "--config", str(config), "--source", str(unseen["street"][0]), "--log-level", "warning")
    assert done.results[0]["label"] == done.results[0]["top"][0]["label"] == "street"


def test_datasets_that_cannot_teach_are_refused_with_one_line(shared: Path, tmp_path: Path, cli):
    (tmp_path / "only" / "open").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "only" / "open" / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "only" / "closed").mkdir()  # a class folder without images
    for args, status, message in (
            (["teach", "train", str(tmp_path / "only"), "--output", str(tmp_path / "m.tflite")], 2,
             "has 1 class(es) with images"),
            (["teach", "train", str(tmp_path / "nowhere"), "--output", str(tmp_path / "m.tflite")], 2,
             "is not a directory"),
            (["teach", "train", str(tmp_path / "only"), "--output", str(tmp_path / "m.bin")], 2,
             "must end in .tflite"),
    ):
        done = cli(*args, json_lines=False)
        assert done.status == status and len(error_lines(done.stderr)) == 1, done.stderr
        assert message in error_lines(done.stderr)[0]
    compose(shared, tmp_path / "ok", 2, seed=3)
    done = cli("teach", "train", str(tmp_path / "ok"), "--base", str(shared / "models" /
               "mobilenet_v1_0.25_128_quant_edgetpu.tflite"), "--output", str(tmp_path / "m.tflite"), json_lines=False)
    assert done.status == 3 and "teach on its CPU build" in error_lines(done.stderr)[0]
    assert not (tmp_path / "m.tflite").exists()


def test_hidden_files_and_other_files_are_not_samples(tmp_path: Path):
    for name in ("b", "a", ".git"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "x.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".hidden.jpg").write_bytes(b"")
    dataset = read_dataset(tmp_path)
    assert dataset.classes == ("a", "b") and [p.name for p, _ in dataset.files] == ["x.png", "x.png"]
    with pytest.raises(ConfigError, match="one per class"):
        read_dataset(tmp_path / "a")


def test_capture_saves_the_regions_crop_at_full_size(images: Path, models: Path, tmp_path: Path, cli):
    """Two regions of one composed frame: each capture is exactly its box of the camera's frame."""
    from conftest import side_by_side

    frame = side_by_side(images, "bird.bmp", "parrot.jpg")  # 640 x 240
    cv2.imwrite(str(tmp_path / "yard.png"), frame)
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model: {{path: {models / BASE}, num_threads: 1}}  # the camera runs as in a run, which loads its model
cameras:
  yard:
    source: {{type: images, path: {tmp_path / "yard.png"}, loop: true}}
    regions:
      feeder: {{box: [0, 0, 0.5, 1]}}
      perch: {{box: [0.5, 0.25, 0.5, 0.5]}}
  gate:
    source: {{type: images, path: {images / "sunflower.bmp"}, loop: true}}
""")
    done = cli("teach", "capture", str(tmp_path / "data"), "--class", "bird", "--count", "3", "--interval", "0",
               "--config", str(config), "--camera", "yard", "--region", "feeder", json_lines=False)
    assert done.status == 0, done.stderr
    saved = sorted((tmp_path / "data" / "bird").glob("*.jpg"))
    assert len(saved) == 3 and not list((tmp_path / "data" / "bird").glob(".*"))
    crop = cv2.imread(str(saved[0]))
    height, width = frame.shape[:2]
    assert crop.shape == (height, width // 2, 3)
    assert np.abs(crop.astype(int) - frame[:, : width // 2]).mean() < 3  # the feeder's half, JPEG at quality 95
    done = cli("teach", "capture", str(tmp_path / "data"), "--class", "parrot", "--count", "2", "--interval", "0",
               "--config", str(config), "--camera", "yard", "--region", "perch", json_lines=False)
    perch = cv2.imread(str(sorted((tmp_path / "data" / "parrot").glob("*.jpg"))[0]))
    assert done.status == 0 and perch.shape == (height // 2, width // 2, 3)
    for args, message in ((["--camera", "porch"], "no camera 'porch'"), ([], "has 2 cameras (yard, gate): say which"),
                          (["--camera", "yard", "--region", "door"], "has no region 'door'")):
        refused = cli("teach", "capture", str(tmp_path / "data"), "--class", "x", "--config", str(config), *args,
                      json_lines=False)
        assert refused.status == 2 and message in error_lines(refused.stderr)[0]
    bad = cli("teach", "capture", str(tmp_path / "data"), "--class", "../up", "--config", str(config), "--camera",
              "yard", json_lines=False)
    assert bad.status == 2 and "is not a class name" in error_lines(bad.stderr)[0]
    assert not (tmp_path / "up").exists()


def test_apply_moves_the_running_region_to_the_taught_model_without_a_restart(taught, images: Path, tmp_path: Path,
                                                                              shared: Path, cli):
    """A run of two regions on ImageNet's model; `teach train --apply` sets one region's model in its config,
    comments kept, and the same process moves that region (only) to the taught classes."""
    from conftest import LiveRun, side_by_side

    cv2.imwrite(str(tmp_path / "yard.png"), side_by_side(images, "bird.bmp", "parrot.jpg"))
    config = tmp_path / "config.yaml"
    original = f"""# my yard
model: {{path: {shared / "models" / BASE}, num_threads: 1}}
cameras:
  yard:
    source: {{type: images, path: {tmp_path / "yard.png"}, loop: true}}
    regions:
      feeder: {{box: [0, 0, 0.5, 1]}}   # the bird feeder
      perch:
        box: [0.5, 0, 0.5, 1]
"""
    config.write_text(original)
    run = LiveRun(config, tmp_path)
    try:
        run.wait_for("region", "perch")
        assert {r["label"] for r in run.results if r["region"] == "feeder"} <= {"chickadee", "brambling", "junco"}
        compose(shared, tmp_path / "dataset", 12, seed=1)
        done = cli("teach", "train", str(tmp_path / "dataset"), "--base", str(shared / "models" / BASE), "--output",
                   str(tmp_path / "feeder.tflite"), "--apply", str(config), "--camera", "yard", "--region", "feeder",
                   json_lines=False)
        assert done.status == 0, done.stderr
        assert "set cameras.yard.regions.feeder.model in" in done.stderr
        text = config.read_text()
        assert "# my yard" in text and "# the bird feeder" in text and f'model: "{tmp_path / "feeder.tflite"}"' in text
        seen = len(run.results)
        deadline = time.monotonic() + 20
        while not [r for r in run.results[seen:] if r["region"] == "feeder" and r["model"] == "feeder"]:
            assert time.monotonic() < deadline, run.results[-3:]
            time.sleep(0.2)
        later = [r for r in run.results[seen:] if r["region"] == "feeder" and r["model"] == "feeder"]
        assert {r["label"] for r in later} <= {"bird", "dog", "street"} and later[-1]["label"] == "bird"
        perch = [r for r in run.results[seen:] if r["region"] == "perch"]
        assert perch and {r["model"] for r in perch} == {BASE.removesuffix(".tflite")}  # the other region stays
        assert run.process.poll() is None  # the same process: no restart
        config.write_text(text.replace("perch:", "perch: [oops"))  # an edit that breaks the file: logged, ignored
        time.sleep(3)
        assert run.process.poll() is None
    finally:
        stderr = run.stop()
    assert "camera yard, region feeder: now feeder" in stderr
    assert "changed, but cannot be used" in stderr

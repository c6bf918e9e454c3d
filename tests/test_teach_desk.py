"""The Teach panel's service side (teach/desk.py) and the taught models in use (teach/in_use.py), in process,
with a real base model and real photos."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.config import load_config
from edge_infer.errors import ConfigError
from edge_infer.teach.config import TeachConfig
from edge_infer.teach.desk import TeachDesk, TeachRefused, places_of
from edge_infer.teach.in_use import InUse, configured_model, read_in_use, with_in_use

BASE = "mobilenet_v1_0.25_128_quant.tflite"


def cameras_config(tmp_path: Path, models: Path, images: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"""model: {{path: {models / BASE}}}
cameras:
  porch:
    source: {{type: images, path: {images}}}
    regions:
      door: {{box: [0.5, 0.0, 0.5, 0.5]}}
      path: {{box: [0, 0, 1, 1], model: {models / 'mobilenet_v1_0.5_160_quant.tflite'}}}
  garden:
    source: {{type: images, path: {images}}}
""")
    return config


def test_a_taught_model_in_use_replaces_only_what_the_config_still_names(tmp_path: Path, models: Path,
                                                                       images: Path):
    config = load_config(str(cameras_config(tmp_path, models, images)))
    door = InUse("porch", "door", "/taught/door.tflite", str(models / BASE))
    stale = InUse("porch", "path", "/taught/path.tflite", "a model the config named once")
    laid = with_in_use(config, (door, stale))
    assert configured_model(laid, "porch", "door") == "/taught/door.tflite"
    assert configured_model(laid, "porch", "path") == str(models / "mobilenet_v1_0.5_160_quant.tflite")
    assert laid.model.path == config.model.path  # the garden camera (no regions) keeps model.path
    # The config names another model at the door now (edited, or teach train --apply): the config wins.
    edited = dataclasses.replace(config, cameras=(dataclasses.replace(config.cameras[0], regions=(
        dataclasses.replace(config.cameras[0].regions[0], model="/elsewhere.tflite"),
        config.cameras[0].regions[1])), config.cameras[1]))
    assert configured_model(with_in_use(edited, (door,)), "porch", "door") == "/elsewhere.tflite"
    # A plain run's one place is model.path.
    plain = load_config(None)
    assert with_in_use(plain, (InUse(None, None, "/t.tflite", plain.model.path),)).model.path == "/t.tflite"
    assert places_of(config) == {("porch", "door"): config.cameras[0].regions[0].box,
                                 ("porch", "path"): config.cameras[0].regions[1].box}


def test_an_unreadable_in_use_file_is_said_and_changes_nothing(tmp_path: Path, caplog):
    assert read_in_use(tmp_path / "none.json") == ()
    broken = tmp_path / "in-use.json"
    broken.write_text('{"in_use": [{"camera": "porch"}]}')
    with caplog.at_level(logging.WARNING):
        assert read_in_use(broken) == ()
    assert "cannot be read" in caplog.text


class Changes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def desk(tmp_path: Path, models: Path, images: Path):
    config = load_config(str(cameras_config(tmp_path, models, images)))
    changes = Changes()
    desk = TeachDesk(tmp_path / "teach", TeachConfig(max_samples_per_class=4, max_classes=2), places_of(config),
                     lambda: with_in_use(config, read_in_use(tmp_path / "teach" / "in-use.json")), changes)
    desk.changes = changes  # type: ignore[attr-defined]
    yield desk
    desk.close()


def wait_for_training(desk: TeachDesk, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = desk.state()["job"]
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("the training did not end")


def test_a_sample_is_the_regions_crop_at_full_size_and_the_limits_hold(desk: TeachDesk):
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:240, 320:] = (0, 0, 255)  # the door's box: the top right quarter, red
    name = desk.add_sample(("porch", "door"), "open", frame)
    saved = cv2.imread(str(desk.class_dir(("porch", "door"), "open") / name))
    assert saved.shape == (240, 320, 3)
    assert abs(int(saved[..., 2].mean()) - 255) < 8 and saved[..., :2].mean() < 8
    for _ in range(3):
        desk.add_sample(("porch", "door"), "open", frame)
    with pytest.raises(TeachRefused, match="4 samples"):
        desk.add_sample(("porch", "door"), "open", frame)
    desk.add_sample(("porch", "door"), "closed", frame)
    with pytest.raises(TeachRefused, match="2 classes"):
        desk.add_sample(("porch", "door"), "ajar", frame)
    with pytest.raises(ConfigError, match="not a class name"):
        desk.add_sample(("porch", "door"), "../../etc", frame)
    with pytest.raises(ConfigError, match="no region garden/_"):
        desk.add_sample(("garden", None), "open", frame)
    with pytest.raises(ConfigError, match="no sample"):
        desk.delete(("porch", "door"), "open", "../../config.yaml")
    state = desk.state()["places"][0]
    assert [(c["name"], len(c["samples"])) for c in state["classes"]] == [("closed", 1), ("open", 4)]
    # Deleting a class's last sample removes the class: an empty folder would stop the next training.
    assert desk.delete(("porch", "door"), "closed", desk.state()["places"][0]["classes"][0]["samples"][0]) == 1
    assert not desk.class_dir(("porch", "door"), "closed").exists()
    assert desk.delete(("porch", "door"), "open", None) == 4


def test_train_use_and_revert(desk: TeachDesk, images: Path, models: Path, tmp_path: Path):
    door = ("porch", "door")
    for name, label in (("parrot.jpg", "bird"), ("bird.bmp", "bird"), ("cat.bmp", "cat"), ("cat_720p.jpg", "cat")):
        desk.add_sample(door, label, cv2.imread(str(images / name)), whole_frame=False)
    with pytest.raises(TeachRefused, match="no trained model"):
        desk.use(door)
    with pytest.raises(ConfigError, match="not a model name of the zoo"):
        desk.start_training(door, base="/etc/shadow")
    desk.start_training(door)
    with pytest.raises(TeachRefused, match="is running"):
        desk.start_training(("porch", "path"))
    job = wait_for_training(desk)
    assert job["state"] == "done", job
    assert job["done"] == job["total"] == 4
    place = desk.state()["places"][0]
    assert place["candidate"]["base"] == BASE and [c["name"] for c in place["candidate"]["classes"]] == ["bird", "cat"]
    model = desk.use(door)
    assert desk.changes.count == 1  # type: ignore[attr-defined]
    entry = json.loads((tmp_path / "teach" / "in-use.json").read_text())["in_use"]
    assert entry == [{"camera": "porch", "region": "door", "model": model, "replaces": str(models / BASE)}]
    place = desk.state()["places"][0]
    assert place["model"] == model and place["taught_in_use"]
    assert place["base"] == str(models / BASE)  # taught again on the base, not on the taught model
    # A second use keeps only the model in use.
    time.sleep(1.05)
    second = desk.use(door)
    assert not Path(model).exists() and Path(second).is_file()
    desk.revert(door)
    assert read_in_use(tmp_path / "teach" / "in-use.json") == ()
    assert desk.state()["places"][0]["model"] == str(models / BASE)
    assert desk.changes.count == 3  # type: ignore[attr-defined]


def test_a_failed_training_says_why_and_leaves_the_candidate(desk: TeachDesk, images: Path):
    door = ("porch", "door")
    desk.add_sample(door, "bird", cv2.imread(str(images / "parrot.jpg")), whole_frame=False)
    desk.start_training(door)
    job = wait_for_training(desk)
    assert job["state"] == "failed" and "at least two" in job["error"]
    assert not (desk.place_dir(door) / "candidate.tflite").exists()


def test_a_failed_trainings_reason_on_the_page_hides_a_url_password(desk: TeachDesk, images: Path, monkeypatch):
    import edge_infer.teach.train as teach_train
    from edge_infer.errors import ModelError

    def unreachable(request):
        raise ModelError("cannot download https://mirror-user:s3cret@mirror.example/models/base.tflite: refused")

    monkeypatch.setattr(teach_train, "train", unreachable)
    door = ("porch", "door")
    for label in ("bird", "cat"):
        desk.add_sample(door, label, cv2.imread(str(images / "parrot.jpg")), whole_frame=False)
    desk.start_training(door)
    job = wait_for_training(desk)
    assert job["state"] == "failed" and "mirror.example" in job["error"] and "s3cret" not in job["error"]

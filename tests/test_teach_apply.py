"""teach/apply.py: a model set in a config by hand-written YAML's own rules, every comment kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge_infer.errors import ConfigError
from edge_infer.teach.apply import apply_model, set_value

CONFIG = """\
# my yard
model:
  path: base.tflite  # the default
cameras:
  porch:
    source: {type: images, path: /photos}
    regions:
      door: {box: [0.5, 0.1, 0.3, 0.6]}   # the door
      path:
        box: [0, 0.5, 0.5, 0.5]
        top_k: 3
      gate: {box: [0, 0, 1, 1], model: old.tflite}
"""


@pytest.mark.parametrize("region", ["door", "path", "gate"])  # flow mapping, block mapping, a model already there
def test_a_regions_model_is_set_in_the_regions_own_style(region: str):
    edited = set_value(CONFIG, ("cameras", "porch", "regions", region, "model"), "/models/my class.tflite", "c")
    data = yaml.safe_load(edited)
    assert data["cameras"]["porch"]["regions"][region]["model"] == "/models/my class.tflite"
    others = {name: r for name, r in data["cameras"]["porch"]["regions"].items() if name != region}
    assert others == {name: r for name, r in yaml.safe_load(CONFIG)["cameras"]["porch"]["regions"].items()
                      if name != region}
    assert "# the door" in edited and "# my yard" in edited and "# the default" in edited


def test_model_path_is_replaced_added_or_written_new():
    assert yaml.safe_load(set_value(CONFIG, ("model", "path"), "/m/x.tflite", "c"))["model"]["path"] == "/m/x.tflite"
    assert "# the default" in set_value(CONFIG, ("model", "path"), "/m/x.tflite", "c")
    for text in ("source: {type: auto}\n", "model: {num_threads: 2}\n", "model:\n  num_threads: 2\n", ""):
        data = yaml.safe_load(set_value(text, ("model", "path"), "/m/x.tflite", "c"))
        assert data["model"]["path"] == "/m/x.tflite", text


def test_apply_refuses_what_it_cannot_place_and_keeps_the_file(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.replace("/photos", str(tmp_path)))
    config.chmod(0o640)
    model = tmp_path / "mine.tflite"
    model.write_bytes(b"")
    before = config.read_text()
    for camera, region, message in ((None, None, "say which of the cameras (porch)"),
                                    ("porch", "window", "say which region of porch runs the model (door, path, gate)")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            apply_model(str(config), model, camera, region)
    assert config.read_text() == before
    assert apply_model(str(config), model, "porch", "door") == "cameras.porch.regions.door.model"
    assert config.stat().st_mode & 0o777 == 0o640 and not list(tmp_path.glob(".config.yaml*"))

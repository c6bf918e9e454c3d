from pathlib import Path

import pytest

from edge_infer.config import Config, load_config
from edge_infer.errors import ConfigError
from edge_infer.sources.images import ImagesConfig
from edge_infer.sources.opencv import OpenCVConfig

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_the_shipped_config_is_valid_and_equals_the_defaults():
    # config.yaml documents every key with its default: the two must not drift apart.
    assert load_config(str(REPO / "config.yaml")) == Config()


def test_no_file_gives_the_defaults():
    config = load_config(None)
    assert config.postprocess.top_k == 5 and config.source.type == "auto" and config.outputs == ("stdout",)


def test_values_are_read(tmp_path: Path):
    config = load_config(write(tmp_path, "model:\n  num_threads: 3\nsource:\n  type: opencv\n  device: /dev/video2\n"))
    assert config.model.num_threads == 3
    assert config.source.options == OpenCVConfig(device="/dev/video2")


@pytest.mark.parametrize("text, line, message", [
    ("model:\n  path: m\n  num_thread: 3\n", 3, "model.num_thread: unknown key; did you mean 'num_threads'?"),
    ("postprocess:\n  top_k: five\n", 2, "postprocess.top_k: expected an integer, got str 'five'"),
    ("postprocess:\n  top_k: 0\n", 2, "postprocess.top_k: must be at least 1, got 0"),
    ("postprocess:\n\n  threshold: 1.5\n", 3, "postprocess.threshold: must be at most 1.0"),
    ("model:\n  delegate: gpu\n", 2, "model.delegate: expected one of cpu, edgetpu"),
    ("source:\n  type: opencv\n  path: /tmp\n", 3, "source.path: unknown key"),
    ("source:\n  type: webcam\n", 2, "source.type: unknown source type 'webcam'"),
    ("source:\n  type: images\n", 1, "source.path: missing required key"),
    ("outputs: [stdout, carrier-pigeon]\n", 1, "outputs[1]: expected one of stdout"),
    ("run:\n  frames: some\n", 2, "run.frames: expected one of auto, newest, all"),
    ("model:\n  path: a\n  path: b\n", 3, "duplicate key 'model.path'"),
    ("model: [unclosed\n", 2, "not valid YAML"),
    ("bogus: 1\n", 1, "bogus: unknown key"),
    ("- a\n- b\n", 1, "must be a mapping"),
])
def test_errors_name_the_file_line_and_key(tmp_path: Path, text: str, line: int, message: str):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert message in str(caught.value)


def test_booleans_are_not_numbers(tmp_path: Path):
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(write(tmp_path, "postprocess:\n  top_k: true\n"))


def test_command_line_overrides_win_and_are_named_in_errors(tmp_path: Path):
    path = write(tmp_path, "model:\n  num_threads: 3\n")
    assert load_config(path, {("model", "num_threads"): (1, "--threads")}).model.num_threads == 1
    with pytest.raises(ConfigError, match=r"^--threads: model.num_threads: must be at least 1, got 0$"):
        load_config(path, {("model", "num_threads"): (0, "--threads")})


def test_source_override_of_the_same_type_keeps_its_options(tmp_path: Path):
    path = write(tmp_path, "source:\n  type: images\n  path: /a\n  loop: true\n")
    config = load_config(path, {("source",): ({"type": "images", "path": "/b"}, "--source")})
    assert config.source.options == ImagesConfig(path="/b", loop=True)


def test_source_override_of_another_type_replaces_the_section(tmp_path: Path):
    path = write(tmp_path, "source:\n  type: images\n  path: /a\n  loop: true\n")
    config = load_config(path, {("source",): ({"type": "opencv", "device": 1}, "--source")})
    assert config.source.options == OpenCVConfig(device=1)

import time
import tracemalloc
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
    # Accepted once, and failing later or silently wrong: every one is refused up front now.
    ("mqtt:\n  host: ''\n", 2, "mqtt.host: must not be empty"),
    ("mqtt:\n  client_id: " + "x" * 7000 + "\n", 2, "mqtt.client_id: must be at most 256 characters, got 7000"),
    ("mqtt:\n  stats_interval: .inf\n", 2, "mqtt.stats_interval: expected a finite number, got inf"),
    ("mqtt:\n  stats_interval: .nan\n", 2, "mqtt.stats_interval: expected a finite number, got nan"),
    ("mqtt:\n  max_per_second: .nan\n", 2, "mqtt.max_per_second: expected a finite number"),
    ("preprocess:\n  mean: .nan\n", 2, "preprocess.mean: expected a finite number, got nan"),
    ("preprocess:\n  std: .inf\n", 2, "preprocess.std: expected a finite number, got inf"),
    ("postprocess:\n  threshold: .nan\n", 2, "postprocess.threshold: expected a finite number"),
    ("postprocess:\n  top_k: 100000000000000000000\n", 2, "postprocess.top_k: must be at most 1000"),
    ("source:\n  type: images\n  path: ''\n", 3, "source.path: must not be empty"),
    ("source:\n  type: opencv\n  fps: .inf\n", 3, "source.fps: expected a finite number, got inf"),
    ("source:\n  type: opencv\n  device: -1\n", 3, "source.device: must be at least 0, got -1"),
    ("source:\n  type: [opencv]\n", 2, "source.type: unknown source type a list"),
    ("source:\n  type: {opencv: 1}\n", 2, "source.type: unknown source type a mapping"),
    ("outputs: []\n", 1, "outputs: must not be empty"),
    ("outputs: [stdout, mqtt, stdout]\n", 1, "outputs: lists 'stdout' twice"),
    ("model:\n  ~: 1\n", 2, "'~' is not a key name"),
    ("model:\n  path: m\n  1: x\n", 3, "'1' is not a key name"),
    ("model: &m\n  path: m\npreprocess: *m\n", 3, "YAML aliases (*m) are not allowed"),
    ("model:\n  path: " + "[" * 5000 + "]" * 5000 + "\n", 2, "nested deeper than any key"),
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


@pytest.mark.parametrize("content, line, message", [
    ("model:\n  path: café\n".encode("latin-1"), 2, "not UTF-8 text (byte 0xe9): save the file as UTF-8"),
    ("model:\n  path: m\n".encode("utf-16"), None, "saved as UTF-16: save it as UTF-8"),
    (bytes(range(256)) * 4, 2, "not UTF-8 text (byte 0x80)"),
    (b"model:\n  path: a\x00b\n", 2, "control character '\\x00' is not allowed"),
])
def test_files_that_are_not_utf8_text(tmp_path: Path, content: bytes, line: int | None, message: str):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert message in str(caught.value)


def test_a_utf8_bom_is_fine(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_bytes("\ufeffmodel:\n  path: m\n".encode())
    assert load_config(str(path)).model.path == "m"


def refused_quickly_in_bounded_memory(path: str) -> ConfigError:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 50e6, (elapsed, peak)
    return caught.value


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9^10 strings
    error = refused_quickly_in_bounded_memory(write(tmp_path, "\n".join(lines) + "\n"))
    assert "YAML aliases (*a0) are not allowed" in str(error) and ":2: " in str(error)


def test_an_oversized_file_is_refused_at_once(tmp_path: Path):
    error = refused_quickly_in_bounded_memory(write(tmp_path, "outputs: [" + "stdout, " * 250_000 + "]\n"))
    assert "far more than a configuration needs" in str(error)

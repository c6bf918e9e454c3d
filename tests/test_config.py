import os
import time
import tracemalloc
from pathlib import Path

import pytest

from edge_infer.config import Config, load_config
from edge_infer.errors import ConfigError
from edge_infer.sources.images import ImagesConfig
from edge_infer.sources.opencv import OpenCVConfig
from edge_infer.values import Box

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
    # An alias is the value it names, so a wrong key in it is reported where it was written.
    ("model: &m\n  path: m\npreprocess: *m\n", 2, "preprocess.path: unknown key"),
    ("a: &a [*a]\n", 1, "a YAML alias refers to the value it is in"),
    ("model:\n  path: " + "[" * 5000 + "]" * 5000 + "\n", 2, "nested deeper than any key"),
    # Accepted by --check-config, and failing only inside a C library or paho's network thread.
    ("model:\n  path: ''\n", 2, "model.path: must not be empty"),
    ("model:\n  fallback_model: ''\n", 2, "model.fallback_model: must not be empty"),
    ('model:\n  path: "m\\0.tflite"\n', 2, "model.path: contains the control character U+0000: remove it"),
    ('mqtt:\n  host: "broker\\0.lan"\n', 2, "mqtt.host: contains the control character U+0000"),
    ('mqtt:\n  username: "me\\nyou"\n', 2, "mqtt.username: contains the control character U+000A"),
    ("mqtt:\n  topic_prefix: home/#\n", 2, "mqtt.topic_prefix: 'home/#' is not a topic without +, #"),
    ("mqtt:\n  topic_prefix: a/+/b\n", 2, "mqtt.topic_prefix: 'a/+/b' is not a topic"),
    ("mqtt:\n  topic_prefix: home//cams\n", 2, "mqtt.topic_prefix: 'home//cams' is not a topic"),
    ("mqtt:\n  topic_prefix: home/\n", 2, "mqtt.topic_prefix: 'home/' is not a topic"),
    ("mqtt:\n  discovery_prefix: $SYS\n", 2, "mqtt.discovery_prefix: '$SYS' is not a topic"),
    ("mqtt:\n  device: porch/cam\n", 2, "mqtt.device: 'porch/cam' is not one topic level"),
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
    assert "YAML aliases here expand to more than 10000 values" in str(error) and ":5: " in str(error)


def test_a_config_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path):
    """A FIFO nobody writes to blocked the start for ever; a directory or a device is no config either."""
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, Path("/dev/zero")):
        with pytest.raises(ConfigError, match="is not a regular file"):
            load_config(str(path))


def test_valid_topics_are_accepted(tmp_path: Path):
    config = load_config(write(tmp_path, "mqtt: {topic_prefix: home/cams$, discovery_prefix: ha, device: porch-1}\n"))
    assert (config.mqtt.topic_prefix, config.mqtt.discovery_prefix) == ("home/cams$", "ha")


def test_an_oversized_file_is_refused_at_once(tmp_path: Path):
    error = refused_quickly_in_bounded_memory(write(tmp_path, "outputs: [" + "stdout, " * 250_000 + "]\n"))
    assert "far more than a configuration needs" in str(error)


CAMERAS = """\
x-camera: &camera
  source: {type: opencv, device: 0, width: 640, height: 480}
x-region: &region
  top_k: 2
  smoothing: 3
cameras:
  porch:
    <<: *camera
    regions:
      door: {<<: *region, box: [0.55, 0.10, 0.30, 0.60]}
      path: {<<: *region, box: [0.0, 0.5, 0.5, 0.5], model: mobilenet_v1_0.5_160_quant, top_k: 3}
  garden:
    source: {type: images, path: /photos}
"""


def test_cameras_with_regions_share_settings_through_anchors_and_merge_keys(tmp_path: Path):
    config = load_config(write(tmp_path, CAMERAS))
    porch, garden = config.cameras
    assert (porch.name, garden.name) == ("porch", "garden")
    assert porch.source.options == OpenCVConfig(device=0, width=640, height=480)
    door, path = porch.regions
    assert door.name == "door" and door.box == Box(0.55, 0.10, 0.30, 0.60) and door.model is None
    assert (door.top_k, door.smoothing) == (2, 3)
    assert (path.top_k, path.smoothing, path.model) == (3, 3, "mobilenet_v1_0.5_160_quant")  # its own key wins
    assert garden.regions == () and garden.source.options == ImagesConfig(path="/photos")


def test_an_alias_is_a_copy_an_override_cannot_reach_through(tmp_path: Path):
    path = write(tmp_path, "x-m: &m {path: a}\nmodel: *m\n")
    assert load_config(path, {("model", "path"): ("b", "--model")}).model.path == "b"


@pytest.mark.parametrize("text, line, message", [
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      door: {box: [0.5, 0.1, 0.6, 0.5]}\n", 5,
     "cameras.porch.regions.door.box: the box reaches outside the frame (x + width = 1.1"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      door: {box: [0.5, 0.1, 0, 0.5]}\n", 5,
     "cameras.porch.regions.door.box: width and height must be more than 0"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      door: {box: [0.5, 0.1, 0.2]}\n", 5,
     "cameras.porch.regions.door.box: expected [x, y, width, height]"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      door: {box: [-0.1, 0.1, 0.2, 0.2]}\n", 5,
     "x and y must be fractions of the frame"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      door: {box: [0.1, .nan, 0.2, 0.2]}\n", 5,
     "cameras.porch.regions.door.box[1]: expected a number from 0 to 1"),
    ("cameras:\n  porch:\n    source: {type: opencv, width: 320, height: 240}\n    regions:\n"
     "      door: {box: [0.1, 0.1, 0.01, 0.5]}\n", 5,
     "cameras.porch.regions.door.box: 3x120 pixels at the camera's 320x240: too small"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      door: {box: [0, 0, 1, 1]}\n"
     "      door: {box: [0, 0, 1, 1]}\n", 6, "duplicate key 'cameras.porch.regions.door'"),
    ("cameras:\n  porch:\n    source: {type: auto}\n  porch:\n    source: {type: auto}\n", 4,
     "duplicate key 'cameras.porch'"),
    ("cameras:\n  porch/1:\n    source: {type: auto}\n", 2, "cameras.porch/1: 'porch/1' is not a usable camera name"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      'door #2': {box: [0, 0, 1, 1]}\n", 5,
     "'door #2' is not a usable region name"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      door: {box: [0, 0, 1, 1], colour: red}\n",
     5, "cameras.porch.regions.door.colour: unknown key"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      door: {box: [0, 0, 1, 1], top_k: 0}\n", 5,
     "cameras.porch.regions.door.top_k: must be at least 1"),
    ("cameras:\n  porch:\n    regions:\n      door: {box: [0, 0, 1, 1]}\n", 2,
     "cameras.porch.source: missing required key"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    regions:\n      door: {model: m}\n", 5,
     "cameras.porch.regions.door.box: missing required key"),
    ("cameras:\n  porch:\n    source: {type: auto}\n    name: x\n", 4, "cameras.porch.name: unknown key"),
    ("cameras: {}\n", 1, "cameras: expected a mapping of camera names"),
    ("source: {type: auto}\ncameras:\n  porch:\n    source: {type: auto}\n", 1,
     "either source: (one camera) or cameras:"),
])
def test_camera_and_region_errors_name_the_file_line_and_key(tmp_path: Path, text: str, line: int, message: str):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:{line}: "), str(caught.value)
    assert message in str(caught.value)


def test_source_flag_with_cameras_says_what_to_do(tmp_path: Path):
    path = write(tmp_path, "cameras:\n  porch:\n    source: {type: auto}\n")
    with pytest.raises(ConfigError, match=r"^--source: source: a configuration has either .* edit the cameras:"):
        load_config(path, {("source",): ({"type": "opencv", "device": 1}, "--source")})


def test_the_users_config_and_models_follow_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from edge_infer.config import config_search, find_config_file
    from edge_infer.models.files import user_model_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGE_INFER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert config_search()[1] == str(tmp_path / "home" / ".config" / "edge-infer" / "config.yaml")
    assert config_search({"XDG_CONFIG_HOME": "relative/ignored"})[1] == config_search({})[1]
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    user_config = tmp_path / "xdg" / "edge-infer" / "config.yaml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text("postprocess: {top_k: 3}\n")
    assert find_config_file(None) == str(user_config)
    write(tmp_path, "postprocess: {top_k: 2}\n")  # ./config.yaml comes first
    assert find_config_file(None) == "config.yaml"
    assert user_model_dir({"XDG_DATA_HOME": str(tmp_path / "data")}) == tmp_path / "data" / "edge-infer" / "models"
    assert user_model_dir({"XDG_DATA_HOME": "rel"}) == tmp_path / "home" / ".local" / "share" / "edge-infer" / "models"

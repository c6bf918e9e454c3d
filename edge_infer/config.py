"""The whole configuration, read from YAML: one section per stage, each section's class beside its stage.

Only the run assembly (run.py) and the CLI import this module; the stages get their own section.
config.yaml documents the same keys.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .outputs.mqtt import MqttConfig
from .outputs.snapshots import SnapshotsConfig
from .outputs.web import WebConfig
from .pipeline.cameras import CameraConfig, build_cameras, check_sensor_network
from .pipeline.classifier import ModelConfig
from .pipeline.postprocess import PostprocessConfig
from .pipeline.preprocess import PreprocessConfig
from .schema import Origin, Path, build, fail
from .service.guard import GuardConfig
from .sources.auto import AutoConfig
from .sources.registry import SourceSpec, build_source_spec
from .teach.config import TeachConfig

MAX_CONFIG_BYTES = 64 * 1024  # the shipped config.yaml, every key with its comment, is 5 kB
MAX_DEPTH = 8  # the deepest key is five levels down (cameras: -> porch -> regions -> door -> preprocess)
# Aliases may share settings between cameras; what they expand to is bounded (a few lines of "billion
# laughs" would expand to gigabytes). Four cameras with four regions each, every key set, are ~600 values.
MAX_EXPANDED_VALUES = 10_000
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class RunConfig:
    """The `run:` section: how the run assembly drives the loop, and the thermal guard."""

    # newest: drop frames inference had no time for (live video); all: every frame (files).
    # auto: newest for cameras and streams, all for image and video files.
    frames: Literal["auto", "newest", "all"] = "auto"
    max_frames: int = field(default=0, metadata={"min": 0})  # 0: until the source ends or a signal
    guard: GuardConfig = GuardConfig()  # the thermal guard: cheaper models while the board is hot


@dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    source: SourceSpec = field(default=SourceSpec("auto", AutoConfig()), metadata={"build": build_source_spec})
    # Several cameras, each with its own source and named regions; instead of `source:` (cameras.py).
    cameras: tuple[CameraConfig, ...] = field(default=(), metadata={"build": build_cameras})
    preprocess: PreprocessConfig = PreprocessConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    run: RunConfig = RunConfig()
    outputs: tuple[Literal["stdout", "mqtt", "web", "snapshots"], ...] = field(
        default=("stdout",), metadata={"min_length": 1, "unique": True})
    mqtt: MqttConfig = MqttConfig()
    web: WebConfig = WebConfig()
    snapshots: SnapshotsConfig = SnapshotsConfig()
    teach: TeachConfig = TeachConfig()  # the live page's Teach panel
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def config_search(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """./config.yaml, the user's ($XDG_CONFIG_HOME, else ~/.config: edge-infer/config.yaml), the system's."""
    user = environ.get("XDG_CONFIG_HOME", "")
    base = FilePath(user) if os.path.isabs(user) else FilePath.home() / ".config"  # a relative one is ignored
    return "config.yaml", str(base / "edge-infer" / "config.yaml"), "/etc/edge-infer/config.yaml"


def find_config_file(explicit: str | None) -> str | None:
    """--config, else $EDGE_INFER_CONFIG, else the first of config_search() that exists, else none."""
    if explicit:
        return explicit
    if os.environ.get("EDGE_INFER_CONFIG"):
        return os.environ["EDGE_INFER_CONFIG"]
    return next((p for p in config_search() if FilePath(p).is_file()), None)


def key_lines(node: yaml.Node, path: Path = ()) -> dict[Path, int]:
    """Line (1-based) of every key path in a composed YAML document; rejects duplicate keys.

    Keys merged in (`<<: *defaults`) are at the lines where the anchored mapping wrote them, and the
    mapping's own keys win over them, as YAML's merge says."""
    lines: dict[Path, int] = {}
    merged: dict[Path, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.tag == MERGE_TAG:
                for source in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                    for child, line in key_lines(source, path).items():
                        merged.setdefault(child, line)  # the first mapping merged in wins, as in YAML
                continue
            if key.tag != STR_TAG:  # `~:`, `1:`, `yes:` are null, a number, a boolean: not key names
                raise ConfigError(f"line {key.start_mark.line + 1}: {key.value!r} is not a key name "
                                  "(check the indentation, or quote it)")
            child = path + (key.value,)
            if child in lines:
                raise ConfigError(f"line {key.start_mark.line + 1}: duplicate key '{'.'.join(map(str, child))}'")
            lines[child] = key.start_mark.line + 1
            lines.update(key_lines(value, child))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            lines.update(key_lines(item, path + (i,)))
    own = {child[: len(path) + 1] for child in lines}  # a key written out replaces the whole merged value
    return {**{child: line for child, line in merged.items() if child[: len(path) + 1] not in own}, **lines}


def check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse aliases that refer to themselves, or expand past MAX_EXPANDED_VALUES or MAX_DEPTH.

    Composing keeps one node per anchor however often it is referred to, so this walks each node once
    (memoized): the time and memory are those of the text, not of what it would expand to."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values it expands to, depth)
    visiting: set[int] = set()

    def walk(node: yaml.Node) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in visiting:
            raise ConfigError(f"{file}:{node.start_mark.line + 1}: a YAML alias refers to the value it is in: "
                              "write the value out")
        visiting.add(id(node))
        size, depth = 1, 0
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        for child in children:
            child_size, child_depth = walk(child)
            size, depth = size + child_size, max(depth, child_depth)
            if size > MAX_EXPANDED_VALUES:
                raise ConfigError(f"{file}:{node.start_mark.line + 1}: YAML aliases here expand to more than "
                                  f"{MAX_EXPANDED_VALUES} values, far more than a configuration needs: "
                                  "write the values out")
        depth += isinstance(node, (yaml.MappingNode, yaml.SequenceNode))
        if depth > MAX_DEPTH:
            raise ConfigError(f"{file}:{node.start_mark.line + 1}: nested deeper than any key ({MAX_DEPTH} levels), "
                              "aliases included: check the indentation and brackets")
        visiting.discard(id(node))
        sizes[id(node)] = (size, depth)
        return size, depth

    walk(root)


def unshared(value: Any) -> Any:
    """A copy in which no mapping or list appears twice: an alias becomes a value of its own, so a
    command-line override of one section cannot change another that was written as its alias."""
    if isinstance(value, dict):
        return {key: unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unshared(item) for item in value]
    return value


def read_config_text(file: str) -> str:
    """The file as text: small, UTF-8 (a BOM is fine); anything else is refused before YAML sees it."""
    path = FilePath(file).expanduser()
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):  # a FIFO without a writer would block the start for ever
            raise ConfigError(f"config file '{file}' is not a regular file (a directory, FIFO or device): "
                              "give the path of a YAML file")
        size = status.st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{file}: {size} bytes is far more than a configuration needs (at most "
                              f"{MAX_CONFIG_BYTES // 1024} kB): is it the right file?")
        raw = path.read_bytes()[: MAX_CONFIG_BYTES + 1]  # it may have grown since the stat
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{file}': {exc.strerror}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: more than {MAX_CONFIG_BYTES // 1024} kB, far more than a configuration needs: "
                          "is it the right file?")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{file}: saved as UTF-16: save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{file}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}): save the file as UTF-8") \
            from None


def check_shape(text: str, file: str) -> None:
    """Refuse nesting deeper than any key from the parser's events, before anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{file}:{event.start_mark.line + 1}: nested deeper than any key "
                                  f"({MAX_DEPTH} levels): check the indentation and brackets")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def parse_yaml(text: str, file: str) -> tuple[dict[str, Any], dict[Path, int]]:
    try:
        check_shape(text, file)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            check_expansion(node, file)
        data = unshared(yaml.safe_load(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}{line}: not valid YAML: {exc.problem or exc.context}") from exc
    except yaml.reader.ReaderError as exc:  # a control character, e.g. a NUL byte
        at = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{file}:{at}: control character {chr(exc.character)!r} is not allowed in YAML: "
                          "is the file damaged?") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: the configuration must be a mapping of sections (model:, source:, ...)")
    try:
        lines = key_lines(node) if node is not None else {}
    except ConfigError as exc:
        raise ConfigError(f"{file}:{str(exc).removeprefix('line ')}") from None
    # Top-level keys starting with x- hold what anchors are made of (`x-camera: &camera ...`), as in
    # Docker Compose files; they are not settings.
    return {key: value for key, value in data.items() if not (isinstance(key, str) and key.startswith("x-"))}, lines


def load_config(file: str | None, overrides: dict[Path, tuple[Any, str]] | None = None) -> Config:
    """Read `file` (None: defaults only), apply command-line `overrides` {key path: (value, flag)}, validate."""
    data: dict[str, Any] = {}
    lines: dict[Path, int] = {}
    if file is not None:
        data, lines = parse_yaml(read_config_text(file), file)
    flags: dict[Path, str] = {}
    for path, (value, flag) in (overrides or {}).items():
        section: Any = data
        for key in path[:-1]:
            if not isinstance(section.get(key), dict):
                section[key] = {}
            section = section[key]
        previous = section.get(path[-1])
        if isinstance(value, dict) and isinstance(previous, dict) and previous.get("type", "auto") == value.get("type"):
            value = {**previous, **value}  # --source of the configured type keeps that type's other options
        section[path[-1]] = value
        flags[path] = flag
    origin = Origin(file, lines, flags)
    if "cameras" in data and "source" in data:
        fail(origin, ("source",), "a configuration has either source: (one camera) or cameras: (several, each "
                                  "with its own source:), not both" + (": edit the cameras: section instead"
                                                                       if ("source",) in flags else ""))
    config = build(Config, data, origin)
    check_sensor_network(config, origin)
    return config

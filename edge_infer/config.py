"""The whole configuration, read from YAML: one section per stage, each section's class beside its stage.

Only the run assembly (run.py) and the CLI import this module; the stages get their own section.
config.yaml documents the same keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .outputs.mqtt import MqttConfig
from .outputs.snapshots import SnapshotsConfig
from .outputs.web import WebConfig
from .pipeline.classifier import ModelConfig
from .pipeline.loop import RunConfig
from .pipeline.postprocess import PostprocessConfig
from .pipeline.preprocess import PreprocessConfig
from .schema import Origin, Path, build
from .sources.auto import AutoConfig
from .sources.registry import SourceSpec, build_source_spec

CONFIG_SEARCH = ("config.yaml", "/etc/edge-infer/config.yaml")
MAX_CONFIG_BYTES = 64 * 1024  # the shipped config.yaml, every key with its comment, is 5 kB
MAX_DEPTH = 8  # the deepest key is three levels down (source: -> options)
STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    source: SourceSpec = field(default=SourceSpec("auto", AutoConfig()), metadata={"build": build_source_spec})
    preprocess: PreprocessConfig = PreprocessConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    run: RunConfig = RunConfig()
    outputs: tuple[Literal["stdout", "mqtt", "web", "snapshots"], ...] = field(
        default=("stdout",), metadata={"min_length": 1, "unique": True})
    mqtt: MqttConfig = MqttConfig()
    web: WebConfig = WebConfig()
    snapshots: SnapshotsConfig = SnapshotsConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def find_config_file(explicit: str | None) -> str | None:
    """--config, else $EDGE_INFER_CONFIG, else ./config.yaml, else /etc/edge-infer/config.yaml, else none."""
    if explicit:
        return explicit
    if os.environ.get("EDGE_INFER_CONFIG"):
        return os.environ["EDGE_INFER_CONFIG"]
    return next((p for p in CONFIG_SEARCH if FilePath(p).is_file()), None)


def key_lines(node: yaml.Node, path: Path = ()) -> dict[Path, int]:
    """Line (1-based) of every key path in a composed YAML document; rejects duplicate keys."""
    lines: dict[Path, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
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
    return lines


def read_config_text(file: str) -> str:
    """The file as text: small, UTF-8 (a BOM is fine); anything else is refused before YAML sees it."""
    path = FilePath(file).expanduser()
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{file}: {size} bytes is far more than a configuration needs (at most "
                              f"{MAX_CONFIG_BYTES // 1024} kB): is it the right file?")
        raw = path.read_bytes()[: MAX_CONFIG_BYTES + 1]  # a device or a FIFO has no size to check first
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
    """Refuse what would make building the document blow up, from the parser's events, before building it:
    aliases (a few lines of "billion laughs" expand to gigabytes) and nesting deeper than any key."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"{file}:{event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                              "allowed in the configuration: write the value out")
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
        data = yaml.safe_load(text)
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
    return data, lines


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
    return build(Config, data, Origin(file, lines, flags))

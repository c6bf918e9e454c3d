"""`teach train --apply CONFIG`: the taught model written into the configuration, every other line (comments
too) kept, so the running service (which watches its config, service/reload.py) moves the region to it.

The value is set at its place in the composed YAML (the marks PyYAML gives every node): an existing
`model:` of the region is replaced, or one is added to the region's mapping, in its own style (`{...}`
or indented lines). The result is checked as at start before it replaces the file, and keeps the file's
mode and owner (the service's config is 0640 root:edge-infer).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from ..config import load_config
from ..errors import ConfigError


def child(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for name, value in node.value if isinstance(name, yaml.ScalarNode) and name.value == key),
                None)


def line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def add_item(text: str, mapping: yaml.MappingNode, item: str) -> str:
    """`item` ("key: value") added to `mapping`, in the mapping's own style."""
    if mapping.flow_style:
        closing = text.rindex("}", 0, mapping.end_mark.index)
        return text[:closing].rstrip() + (", " if mapping.value else "") + item + text[closing:]
    first = mapping.value[0][0].start_mark
    start = line_start(text, first.index)
    return text[:start] + " " * first.column + item + "\n" + text[start:]


def set_value(text: str, keys: tuple[str, ...], value: str, file: str) -> str:
    """`text` with the scalar at `keys` set to `value` (added to the mapping of `keys[:-1]` if absent)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    quoted = json.dumps(value)  # a JSON string is a YAML double-quoted scalar: any path is safe
    if root is None:
        return text + ("" if text.endswith("\n") or not text else "\n") + block(keys, quoted, 0) + "\n"
    node = root
    for depth, key in enumerate(keys):
        found = child(node, key)
        if found is None:
            if not isinstance(node, yaml.MappingNode) or not (node.flow_style or node.value):
                raise ConfigError(f"{file}:{node.start_mark.line + 1}: {'.'.join(keys[:depth]) or 'the file'} is "
                                  "not a mapping to add to")
            rest = keys[depth:]
            return add_item(text, node, inline(rest, quoted) if node.flow_style else
                            block(rest, quoted, node.value[0][0].start_mark.column))
        if depth == len(keys) - 1:
            if not isinstance(found, yaml.ScalarNode):
                raise ConfigError(f"{file}:{found.start_mark.line + 1}: {'.'.join(keys)}: expected a value")
            return text[:found.start_mark.index] + quoted + text[found.end_mark.index:]
        node = found
    raise AssertionError("unreachable")


def inline(keys: tuple[str, ...], quoted: str) -> str:
    item = quoted
    for key in reversed(keys[1:]):
        item = f"{{{key}: {item}}}"
    return f"{keys[0]}: {item}"


def block(keys: tuple[str, ...], quoted: str, column: int) -> str:
    """Nested keys as indented lines, two spaces a level below `column`; the first line without its indentation,
    which the caller puts where the line goes."""
    lines = [" " * (column + 2 * depth) + f"{key}:" for depth, key in enumerate(keys)]
    lines[-1] += f" {quoted}"
    return "\n".join(lines)[column:]


def check_apply(config_file: str, camera: str | None, region: str | None) -> tuple[str, ...]:
    """The key path the model will be set at; ConfigError when the config, camera or region do not fit."""
    config = load_config(str(Path(config_file).expanduser()))
    if config.cameras:
        names = [c.name for c in config.cameras]
        if camera not in names:
            raise ConfigError(f"--camera: say which of the cameras ({', '.join(names)}) runs the model")
        regions = [r.name for c in config.cameras if c.name == camera for r in c.regions]
        if region not in regions:
            known = ", ".join(regions) or "it has none: give it one, e.g. whole: {box: [0, 0, 1, 1]}"
            raise ConfigError(f"--region: say which region of {camera} runs the model ({known})")
        keys: tuple[str, ...] = ("cameras", camera, "regions", region, "model")
    elif camera or region:
        raise ConfigError(f"--camera/--region: {config_file} has no cameras: section; without them the model goes "
                          "to model.path")
    else:
        keys = ("model", "path")
    return keys


def apply_model(config_file: str, model: Path, camera: str | None, region: str | None) -> str:
    """Write `model` into the config for the region (or model.path without cameras:); the key path set."""
    keys = check_apply(config_file, camera, region)
    path = Path(config_file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
        status = path.stat()
    except OSError as exc:
        raise ConfigError(f"--apply: cannot read '{config_file}': {exc.strerror}") from exc
    edited = set_value(text, keys, str(model.resolve()), config_file)
    temp = path.with_name(f".{path.name}.apply")
    try:
        temp.write_text(edited, encoding="utf-8")
        os.chmod(temp, status.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(temp, status.st_uid, status.st_gid)
        checked = load_config(str(temp))  # a file the run would refuse never replaces the one it runs
        if keys[0] == "cameras":
            wanted = next(r.model for c in checked.cameras if c.name == camera for r in c.regions if r.name == region)
        else:
            wanted = checked.model.path
        if wanted != str(model.resolve()):
            raise ConfigError(f"--apply: {config_file} did not take the model at {'.'.join(keys)} (an alias or "
                              "merge key shares it?): set it by hand")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return ".".join(keys)


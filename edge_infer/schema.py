"""Turn parsed YAML into frozen dataclasses, rejecting what does not fit.

Each config section is a frozen dataclass; its type hints are the schema and `field(metadata=...)`
adds bounds: `min`, `max` (numbers), `min_length`, `max_length` (strings and lists), `unique`
(lists), `pattern` (strings). No number may be NaN or infinite. Errors name the key path and where
it came from (file and line, or the command-line flag), so a user can fix them without reading code.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Origin:
    """Where each value came from: YAML line numbers by key path, and CLI flags that replaced values."""

    file: str | None = None
    lines: typing.Mapping[Path, int] = dataclasses.field(default_factory=dict)
    flags: typing.Mapping[Path, str] = dataclasses.field(default_factory=dict)

    def describe(self, path: Path) -> str:
        for n in range(len(path), -1, -1):
            if path[:n] in self.flags:
                return self.flags[path[:n]]
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines and self.file:
                return f"{self.file}:{self.lines[path[:n]]}"
        return self.file or "configuration"


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def fail(origin: Origin, path: Path, message: str) -> typing.NoReturn:
    raise ConfigError(f"{origin.describe(path)}: {dotted(path)}: {message}")


def build(cls: type, data: Any, origin: Origin, path: Path = ()) -> Any:
    """Build dataclass `cls` from a mapping, checking keys, types and bounds."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail(origin, path, f"expected a mapping of keys, got {describe_value(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if not isinstance(key, str):  # e.g. `~:` or `1:`; YAML's own keys are names, not values
            fail(origin, path, f"key {describe_value(key)} is not a name (check the indentation)")
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
            fail(origin, path + (str(key),), f"unknown key{hint}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                fail(origin, path + (name,), "missing required key")
            continue
        convert = f.metadata.get("build")
        if convert is not None:
            values[name] = convert(data[name], origin, path + (name,))
        else:
            values[name] = coerce(hints[name], data[name], origin, path + (name,))
        check_bounds(f, values[name], origin, path + (name,))
    try:
        return cls(**values)
    except ValueError as exc:  # cross-field checks in __post_init__
        fail(origin, path, str(exc))


def check_bounds(f: dataclasses.Field[Any], value: Any, origin: Origin, path: Path) -> None:
    pattern = f.metadata.get("pattern")
    if pattern is not None and isinstance(value, str) and not re.fullmatch(pattern, value):
        fail(origin, path, f"{value!r} is not {f.metadata.get('pattern_help', pattern)}")
    if isinstance(value, (str, tuple)):
        shortest, longest = f.metadata.get("min_length"), f.metadata.get("max_length")
        what = "characters" if isinstance(value, str) else "items"
        if shortest is not None and len(value) < shortest:
            fail(origin, path, "must not be empty" if shortest == 1 else f"needs at least {shortest} {what}")
        if longest is not None and len(value) > longest:
            fail(origin, path, f"must be at most {longest} {what}, got {len(value)}")
        if f.metadata.get("unique") and len(set(value)) != len(value):
            twice = next(item for item in value if value.count(item) > 1)
            fail(origin, path, f"lists {twice!r} twice")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if low is not None and value < low:
        fail(origin, path, f"must be at least {low}, got {value}")
    if high is not None and value > high:
        fail(origin, path, f"must be at most {high}, got {value}")


CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def coerce(hint: Any, value: Any, origin: Origin, path: Path) -> Any:
    if isinstance(value, float) and not math.isfinite(value):  # YAML's .nan and .inf: no setting means them
        fail(origin, path, f"expected a finite number, got {value}")
    if isinstance(value, str) and (bad := CONTROL_CHARACTER.search(value)):  # a NUL cuts a path short in C
        fail(origin, path, f"contains the control character U+{ord(bad.group()):04X}: remove it")
    origin_type = get_origin(hint)
    if origin_type in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(option, value, origin, path)
            except ConfigError:
                continue
        fail(origin, path, f"expected {expected(hint)}, got {describe_value(value)}")
    if origin_type is Literal:
        choices = get_args(hint)
        if value in choices and not isinstance(value, bool):
            return value
        fail(origin, path, f"expected one of {', '.join(map(str, choices))}, got {describe_value(value)}")
    if origin_type is tuple:
        item_hint = get_args(hint)[0]
        if not isinstance(value, list):
            fail(origin, path, f"expected a list, got {describe_value(value)}")
        return tuple(coerce(item_hint, item, origin, path + (i,)) for i, item in enumerate(value))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value, origin, path)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported schema type {hint!r} at {dotted(path)}")
    fail(origin, path, f"expected {expected(hint)}, got {describe_value(value)}")


def expected(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if get_origin(hint) in (Union, types.UnionType):
        parts = [expected(a) for a in get_args(hint) if a is not type(None)]
        if type(None) in get_args(hint):
            parts.append("null")
        return " or ".join(parts)
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, get_args(hint)))
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def describe_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"

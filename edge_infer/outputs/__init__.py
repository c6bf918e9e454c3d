"""Where results go, keyed by the names in the config's `outputs:` list."""

from __future__ import annotations

from collections.abc import Callable

from .base import Output, OutputClosed
from .stdout import StdoutOutput

__all__ = ["OUTPUT_TYPES", "Output", "OutputClosed", "StdoutOutput", "open_outputs"]

OUTPUT_TYPES: dict[str, Callable[[], Output]] = {
    "stdout": StdoutOutput,
}


def open_outputs(names: tuple[str, ...]) -> list[Output]:
    return [OUTPUT_TYPES[name]() for name in names]

"""Outputs keyed by the names in the config's `outputs:` list."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import Output, OutputContext
from .mqtt import open_mqtt
from .stdout import StdoutOutput

if TYPE_CHECKING:
    from ..config import Config

# Each factory takes the whole Config (for its own section) and the run's context.
OUTPUT_TYPES: dict[str, Callable[[Config, OutputContext], Output]] = {
    "stdout": lambda config, context: StdoutOutput(),
    "mqtt": open_mqtt,
}


def open_output(name: str, config: Config, context: OutputContext) -> Output:
    return OUTPUT_TYPES[name](config, context)

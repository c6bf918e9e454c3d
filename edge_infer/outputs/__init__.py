"""Where results go, keyed by the names in the config's `outputs:` list; each output's config beside its code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Output, OutputClosed, OutputContext
from .mqtt import MqttConfig, MqttOutput, open_mqtt
from .stdout import StdoutOutput

__all__ = ["OUTPUT_TYPES", "MqttConfig", "MqttOutput", "Output", "OutputClosed", "OutputContext", "StdoutOutput",
           "open_outputs"]

# Each factory takes the whole Config (for its own section) and the run's context.
OUTPUT_TYPES: dict[str, Callable[[Any, OutputContext], Output]] = {
    "stdout": lambda config, context: StdoutOutput(),
    "mqtt": open_mqtt,
}


def open_outputs(config: Any, context: OutputContext) -> list[Output]:
    """Open every configured output; if one fails to open, close the ones already open."""
    outputs: list[Output] = []
    try:
        for name in config.outputs:
            outputs.append(OUTPUT_TYPES[name](config, context))
    except BaseException:
        for output in outputs:
            output.close()
        raise
    return outputs

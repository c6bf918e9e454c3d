"""Outputs keyed by the names in the config's `outputs:` list.

Outputs do not know each other. Where one uses another (the snapshots publish their JPEG on MQTT,
the live view shows whether MQTT is connected), the factory here hands it a small callable that
finds the other output of the same run when it is called: the outputs may be listed, and so
opened, in any order, and neither module imports the other.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .base import Output, OutputContext
from .mqtt import MqttOutput, open_mqtt
from .snapshots import SnapshotOutput
from .stdout import StdoutOutput
from .web import WebOutput

if TYPE_CHECKING:
    from ..config import Config

T = TypeVar("T")

# The outputs opened for each run, by its context (one per run, shared by its outputs). Weak references both
# ways: this table never keeps an output or a finished run alive.
_opened: dict[int, list[weakref.ReferenceType[Output]]] = {}


def peer(context: OutputContext, kind: type[T]) -> T | None:
    """The output of type `kind` opened for the same run as `context`, if there is one (yet)."""
    for ref in _opened.get(id(context), ()):
        output = ref()
        if isinstance(output, kind):
            return output
    return None


def open_web(config: Config, context: OutputContext) -> Output:
    def mqtt_connected() -> bool:
        mqtt = peer(context, MqttOutput)
        return mqtt is not None and mqtt.connected

    return WebOutput(config.web, context, mqtt_connected if "mqtt" in config.outputs else None)


def open_snapshots(config: Config, context: OutputContext) -> Output:
    def publish(jpeg: bytes) -> None:
        mqtt = peer(context, MqttOutput)
        if mqtt is not None:
            mqtt.publish_snapshot(jpeg)

    return SnapshotOutput(config.snapshots, context, publish if "mqtt" in config.outputs else None)


# Each factory takes the whole Config (for its own section) and the run's context.
OUTPUT_TYPES: dict[str, Callable[[Config, OutputContext], Output]] = {
    "stdout": lambda config, context: StdoutOutput(),
    "mqtt": open_mqtt,
    "web": open_web,
    "snapshots": open_snapshots,
}


def open_output(name: str, config: Config, context: OutputContext) -> Output:
    output = OUTPUT_TYPES[name](config, context)
    key = id(context)
    if key not in _opened:
        _opened[key] = []
        weakref.finalize(context, _opened.pop, key, None)  # the run is over: forget it (its id may be reused)
    _opened[key].append(weakref.ref(output))
    return output

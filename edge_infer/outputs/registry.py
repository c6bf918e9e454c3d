"""Outputs keyed by the names in the config's `outputs:` list.

Outputs do not know each other. Where one uses another (the snapshots publish their JPEG on MQTT,
the live view shows whether MQTT is connected), the factory here hands it a small callable that
looks for the other output among the run's outputs (the list the run assembly keeps) when it is
called: the outputs may be listed, and so opened, in any order, and neither module imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..values import Classification
from .base import Output, OutputContext
from .mqtt import MqttOutput, open_mqtt
from .snapshots import SnapshotOutput
from .stdout import StdoutOutput
from .web import WebOutput

if TYPE_CHECKING:
    from ..config import Config

T = TypeVar("T")

def peer(outputs: Sequence[Output], kind: type[T]) -> T | None:
    """The output of type `kind` among the run's `outputs`, if there is one (yet)."""
    return next((output for output in outputs if isinstance(output, kind)), None)


def open_web(config: Config, context: OutputContext, run_outputs: Sequence[Output]) -> Output:
    def mqtt_connected() -> bool:
        mqtt = peer(run_outputs, MqttOutput)
        return mqtt is not None and mqtt.connected

    return WebOutput(config.web, context, mqtt_connected if "mqtt" in config.outputs else None)


def open_snapshots(config: Config, context: OutputContext, run_outputs: Sequence[Output]) -> Output:
    def publish(jpeg: bytes, result: Classification) -> None:
        mqtt = peer(run_outputs, MqttOutput)
        if mqtt is not None:
            mqtt.publish_snapshot(jpeg, result.camera, result.region)

    return SnapshotOutput(config.snapshots, context, publish if "mqtt" in config.outputs else None)


# Each factory takes the whole Config (for its own section), the run's context and the run's outputs
# (filled in as they open).
OUTPUT_TYPES: dict[str, Callable[[Config, OutputContext, Sequence[Output]], Output]] = {
    "stdout": lambda config, context, run_outputs: StdoutOutput(),
    "mqtt": lambda config, context, run_outputs: open_mqtt(config, context),
    "web": open_web,
    "snapshots": open_snapshots,
}


def open_output(name: str, config: Config, context: OutputContext, run_outputs: Sequence[Output]) -> Output:
    return OUTPUT_TYPES[name](config, context, run_outputs)

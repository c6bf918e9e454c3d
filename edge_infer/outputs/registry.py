"""Outputs keyed by the names in the config's `outputs:` list, registered like sources: each with its own
section of the configuration (its config class sits beside its code) and the function that opens it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Output, OutputContext, Peers
from .mqtt import MqttConfig, open_mqtt
from .snapshots import SnapshotsConfig, open_snapshots
from .stdout import open_stdout
from .web import WebConfig, open_web


@dataclass(frozen=True)
class OutputType:
    config: type | None  # the class of its section (`mqtt:`, `web:`, ...); None: it has none
    open: Callable[[Any, OutputContext, Peers], Output]
    shows_frames: bool = False  # it shows the pictures (a FrameWatcher): the cameras deliver them whole


OUTPUT_TYPES: dict[str, OutputType] = {
    "stdout": OutputType(None, open_stdout),
    "mqtt": OutputType(MqttConfig, open_mqtt),
    "web": OutputType(WebConfig, open_web, shows_frames=True),
    "snapshots": OutputType(SnapshotsConfig, open_snapshots, shows_frames=True),
}


def open_output(name: str, section: Any, context: OutputContext, peers: Peers) -> Output:
    """Open output `name` with its own section of the configuration (None for an output without one)."""
    return OUTPUT_TYPES[name].open(section, context, peers)


def shows_frames(names: Sequence[str]) -> bool:
    """Whether any of the outputs `names` shows the pictures, known before they open (the sources open first)."""
    return any(OUTPUT_TYPES[name].shows_frames for name in names)

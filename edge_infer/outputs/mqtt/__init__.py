"""Results to an MQTT broker, with Home Assistant discovery (output.py says what goes where).

The config (config.py) loads with the configuration; paho-mqtt (client.py, output.py) only when an MQTT
output opens or its names are asked for: a run without MQTT does not carry paho and ssl (9 MB of RSS).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import MqttConfig

if TYPE_CHECKING:
    from ..base import OutputContext, Peers
    from .output import MqttOutput

__all__ = ["MqttConfig", "open_mqtt"]

LAZY = {"client": ("make_client", "read_password"),
        "output": ("MqttOutput", "PublishPolicy", "discovery_messages", "camera_discovery_messages", "what_runs",
                   "topic_safe", "node_id", "image_discovery_topic", "EVENT_LABEL_CHANGED", "STATUS_ONLINE",
                   "STATUS_OFFLINE", "STATUS_STOPPED")}


def open_mqtt(config: MqttConfig, context: OutputContext, peers: Peers) -> MqttOutput:
    from .output import MqttOutput

    # Discovery goes out on connect, perhaps before a snapshots output listed after this one has opened.
    return MqttOutput(config, context, snapshots="snapshots" in peers.names)


def __getattr__(name: str) -> Any:
    """The paho-backed names, loaded on first use (PEP 562)."""
    for module, names in LAZY.items():
        if name in names:
            return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

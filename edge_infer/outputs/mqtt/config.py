"""The `mqtt:` section of the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# What a topic we publish under may be (MQTT 3.1.1, 4.7): no wildcards (+ #), no empty level (a leading,
# trailing or double /), and no leading $, which brokers keep for their own $SYS topics. paho refuses such a
# topic only when publishing, inside its network thread, long after the start.
TOPIC = {"pattern": r"(?!\$)[^#+/]+(/[^#+/]+)*",
         "pattern_help": "a topic without +, #, empty levels or a leading $ (like home/edge-infer)"}
TOPIC_LEVEL = {"pattern": r"((?!\$)[^#+/]+)?", "pattern_help": "one topic level, without /, +, # or a leading $"}


@dataclass(frozen=True)
class MqttConfig:
    host: str = field(default="localhost", metadata={"min_length": 1, "max_length": 253})
    port: int = field(default=1883, metadata={"min": 1, "max": 65535})
    client_id: str = field(default="", metadata={"max_length": 256})  # "": edge-infer-<device>
    topic_prefix: str = field(default="edge-infer", metadata=TOPIC)
    device: str = field(default="", metadata={"max_length": 64, **TOPIC_LEVEL})  # "": this machine's hostname
    qos: int = field(default=1, metadata={"min": 0, "max": 2})
    retain: bool = False  # retain classification messages (status and discovery are always retained)
    keepalive: int = field(default=60, metadata={"min": 5, "max": 65535})
    username: str | None = None
    password_file: str | None = None  # a file holding only the password (readable by the service user)
    password_env: str | None = None  # or the name of an environment variable holding it
    tls: bool = False
    ca_file: str | None = None  # None with tls: the system's CA store
    cert_file: str | None = None  # client certificate, for brokers that require one
    key_file: str | None = None
    tls_insecure: bool = False  # skip the broker hostname check (self-signed test brokers only)
    # all: every frame; change: when the top label changes; rate: at most max_per_second.
    # max_per_second also caps `change`, so a flickering label cannot flood the broker. 0: no cap.
    publish: Literal["all", "change", "rate"] = "change"
    max_per_second: float = field(default=2.0, metadata={"min": 0.0})
    stats_interval: float = field(default=30.0, metadata={"min": 0.0})  # seconds; 0: no stats
    backlog: int = field(default=100, metadata={"min": 0, "max": 100000})  # results kept while disconnected
    discovery: bool = True  # Home Assistant MQTT discovery (sent again when Home Assistant comes online)
    discovery_prefix: str = field(default="homeassistant", metadata=TOPIC)

"""A real Mosquitto broker on a free loopback port, and a subscriber that records what it sees."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto with a generated config; stop() and start() keep the port, like a broker restart."""

    def __init__(self, directory: Path, extra_config: str = "", anonymous: bool = True) -> None:
        if shutil.which("mosquitto") is None:
            raise RuntimeError("mosquitto is not installed (apt install mosquitto)")
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        # As root, mosquitto would switch to its own user, which cannot read the test's private files.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous {'true' if anonymous else 'false'}\n"
                               f"persistence false\n{user}{extra_config}")
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(["mosquitto", "-c", str(self.config)], stdout=self.log.open("a"),
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@dataclass
class Message:
    topic: str
    payload: str
    retain: bool
    at: float = field(default_factory=time.monotonic)

    def json(self) -> dict:
        return json.loads(self.payload)


class Subscriber:
    """Subscribes to everything and keeps the messages; reconnects by itself after a broker restart."""

    def __init__(self, port: int, **credentials: object) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-subscriber-{port}-{id(self)}")
        if "username" in credentials:
            self.client.username_pw_set(str(credentials["username"]), str(credentials["password"]))
        if "ca_file" in credentials:
            self.client.tls_set(ca_certs=str(credentials["ca_file"]))
        self.client.on_connect = lambda client, *_: client.subscribe("#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, message.payload.decode(), bool(message.retain)))

    def on(self, suffix: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, predicate, timeout: float = 15.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [m for m in self.messages if predicate(m)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no matching message within {timeout} s; saw {[m.topic for m in self.messages][-20:]}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

"""Results to an MQTT broker (paho-mqtt 2.x), with a retained availability topic, a last will and
Home Assistant discovery.

Topics under `<topic_prefix>/<device>/`: `classification` (the stdout JSON), `status` (retained:
online / offline as the last will / stopped on a clean shutdown), `stats` (every stats_interval s, and
at once when the backend changes: the Edge TPU failover), `event` (a label_changed event for Home
Assistant on each new top label), `snapshot` (retained: the snapshots output's newest JPEG, binary).
Home Assistant's discovery configs are retained, and sent again whenever Home Assistant announces
itself (`online` on `<discovery_prefix>/status`), as its MQTT documentation advises: a broker that
lost its retained messages, or a Home Assistant that started after us, still finds the device.
The broker may be down at start or restart at any time: paho reconnects with backoff in its own
thread, and results published while disconnected wait in a bounded backlog (newest kept, drops counted).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from ... import __version__
from ...values import Classification, RunStatus
from ..base import CameraLayout, OutputContext
from .client import make_client
from .config import MqttConfig

log = logging.getLogger(__name__)

STATUS_ONLINE, STATUS_OFFLINE, STATUS_STOPPED = "online", "offline", "stopped"
CLOSE_TIMEOUT_S = 1.0  # SIGTERM must end the process within 2 s
NO_ANSWER_WARNING_S = 5.0  # a broker that takes TCP but sends no CONNACK would otherwise go unnoticed for keepalive s
FIRST_STATS_S = 1.0  # after connecting: a dashboard shows the numbers without waiting a whole stats_interval
WATCH_STEP_S = 0.25


def topic_safe(name: str) -> str:
    """A single topic level: no separators or wildcards."""
    return re.sub(r"[/+#\s]+", "_", name).strip("_") or "edge-infer"


def what_runs(result: Classification) -> tuple[str | None, str, str]:
    """The label and what made it: a result from another model or backend is news even with the same label."""
    return result.label, result.model, result.backend


class PublishPolicy:
    """Decides which results go to the broker, so a 30 fps camera does not flood it.
    In `change` mode a result is new when `key` of it changes."""

    def __init__(self, mode: str, max_per_second: float, clock: Callable[[], float] = time.monotonic,
                 key: Callable[[Classification], object] = lambda result: result.label) -> None:
        self._mode = mode
        self._min_gap = 1.0 / max_per_second if max_per_second > 0 and mode != "all" else 0.0
        self._clock = clock
        self._key = key
        self._last_key: object = None
        self._last_time = float("-inf")

    def admit(self, result: Classification) -> bool:
        key = self._key(result)
        if self._mode == "change" and key == self._last_key:
            return False
        now = self._clock()
        if now - self._last_time < self._min_gap:
            return False
        self._last_key, self._last_time = key, now
        return True


EVENT_LABEL_CHANGED = "label_changed"


def node_id(device: str) -> str:
    return f"edge_infer_{re.sub(r'[^a-zA-Z0-9_-]', '_', device)}"


# Where the backend sensor's states come from (LoadedModel.backend): an enum sensor lists them, so Home
# Assistant shows them as choices and its history as a timeline.
BACKENDS = ["cpu", "edgetpu", "hailo"]
# The diagnostic entities of a device: Home Assistant files them apart from the ones people watch.
DIAGNOSTIC = {"entity_category": "diagnostic"}


def origin() -> dict[str, str]:
    """Who sent a discovery config (Home Assistant 2023.10+ logs it beside the entities it made)."""
    return {"name": "edge-infer", "sw_version": __version__}


def backend_sensor(state_topic: str) -> dict[str, Any]:
    return {"name": "Backend", "state_topic": state_topic, "icon": "mdi:chip", "device_class": "enum",
            "options": BACKENDS, "value_template": "{{ value_json.backend }}", **DIAGNOSTIC}


def fps_sensor(state_topic: str) -> dict[str, Any]:
    return {"name": "FPS", "state_topic": state_topic, "unit_of_measurement": "fps", "state_class": "measurement",
            "value_template": "{{ value_json.fps }}", **DIAGNOSTIC}


def image_discovery_topic(prefix: str, device: str) -> str:
    return f"{prefix}/image/{node_id(device)}/snapshot/config"


def discovery_messages(prefix: str, device: str, topics: dict[str, str], model: str,
                       snapshots: bool = False) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery configs: sensors for the top label (the top-k as its attributes), its
    score, the fps and the backend (cpu, edgetpu or hailo); an event entity firing `label_changed`; with `snapshots`,
    an image entity showing the newest snapshot. Keys as Home Assistant's mqtt sensor, event and image
    platforms define them."""
    node = node_id(device)
    common = {
        # "stopped" (clean shutdown) must read as unavailable too, not only the last will's "offline".
        "availability": [{"topic": topics["status"],
                          "value_template": "{{ 'online' if value == 'online' else 'offline' }}"}],
        "device": {"identifiers": [node], "name": f"edge-infer {device}", "manufacturer": "edge-infer",
                   "model": model, "sw_version": __version__},
        "origin": origin(),
    }
    entities: dict[tuple[str, str], dict[str, Any]] = {
        ("sensor", "label"): {
            "name": "Label", "state_topic": topics["classification"], "icon": "mdi:eye",
            "value_template": "{{ value_json.top[0].label if value_json.top else 'none' }}",
            # The whole ranking as the label's attributes: {"top": [{"index", "label", "score"}, ...]}.
            "json_attributes_topic": topics["classification"],
            "json_attributes_template": "{{ {'top': value_json.top} | tojson }}"},
        ("sensor", "score"): {
            "name": "Score", "state_topic": topics["classification"], "state_class": "measurement",
            "value_template": "{{ (value_json.top[0].score if value_json.top else 0) | round(3) }}"},
        ("sensor", "backend"): backend_sensor(topics["stats"]),
        ("sensor", "fps"): fps_sensor(topics["stats"]),
        # Payload {"event_type": "label_changed", "label": ..., "score": ...}: the rest become the event's attributes.
        ("event", "label_changed"): {
            "name": "Label changed", "state_topic": topics["event"], "event_types": [EVENT_LABEL_CHANGED],
            "icon": "mdi:eye-refresh"},
    }
    if snapshots:  # the raw JPEG bytes, retained (image_topic: no image_encoding, so not base64)
        entities[("image", "snapshot")] = {"name": "Snapshot", "image_topic": topics["snapshot"],
                                           "content_type": "image/jpeg"}
    return {f"{prefix}/{platform}/{node}/{key}/config": {**common, **entity, "unique_id": f"{node}_{key}"}
            for (platform, key), entity in entities.items()}


def camera_discovery_messages(prefix: str, device: str, base: str, cameras: tuple[CameraLayout, ...], model: str,
                              snapshots: bool = False) -> dict[str, dict[str, Any]]:
    """Home Assistant discovery for a `cameras:` run: one device per camera, with the label (its top-k as
    attributes), score and label_changed event of each region (or of the whole frame), and the camera's
    fps and backend. Each entity is available only while the process runs and its camera delivers
    frames (availability_mode all: the run's status and the camera's)."""
    node = node_id(device)
    configs: dict[str, dict[str, Any]] = {}
    for camera in cameras:
        camera_node = f"{node}_{camera.name}"
        common = {
            "availability_mode": "all",
            "availability": [{"topic": f"{base}/status",
                              "value_template": "{{ 'online' if value == 'online' else 'offline' }}"},
                             {"topic": f"{base}/{camera.name}/status"}],
            "device": {"identifiers": [camera_node], "name": f"edge-infer {device} {camera.name}",
                       "manufacturer": "edge-infer", "model": model, "sw_version": __version__},
            "origin": origin(),
        }
        entities: dict[tuple[str, str], dict[str, Any]] = {
            ("sensor", "fps"): fps_sensor(f"{base}/{camera.name}/stats"),
            ("sensor", "backend"): backend_sensor(f"{base}/{camera.name}/stats"),
        }
        for region in camera.places:
            where = f"{base}/{camera.name}" + (f"/{region}" if region else "")
            key, title = (f"{region}_", f"{region.replace('_', ' ').capitalize()} ") if region else ("", "")
            entities[("sensor", f"{key}label")] = {
                "name": f"{title}label".capitalize(), "state_topic": f"{where}/classification", "icon": "mdi:eye",
                "value_template": "{{ value_json.top[0].label if value_json.top else 'none' }}",
                "json_attributes_topic": f"{where}/classification",
                "json_attributes_template": "{{ {'top': value_json.top} | tojson }}"}
            entities[("sensor", f"{key}score")] = {
                "name": f"{title}score".capitalize(), "state_topic": f"{where}/classification",
                "state_class": "measurement",
                "value_template": "{{ (value_json.top[0].score if value_json.top else 0) | round(3) }}"}
            entities[("event", f"{key}label_changed")] = {
                "name": f"{title}label changed".capitalize(), "state_topic": f"{where}/event",
                "event_types": [EVENT_LABEL_CHANGED], "icon": "mdi:eye-refresh"}
            if snapshots:
                entities[("image", f"{key}snapshot")] = {"name": f"{title}snapshot".capitalize(),
                                                         "image_topic": f"{where}/snapshot",
                                                         "content_type": "image/jpeg"}
        for (platform, key), entity in entities.items():
            configs[f"{prefix}/{platform}/{camera_node}/{key}/config"] = {**common, **entity,
                                                                         "unique_id": f"{camera_node}_{key}"}
    return configs


class MqttOutput:
    name = "mqtt"

    def __init__(self, config: MqttConfig, context: OutputContext, snapshots: bool = False) -> None:
        self._config = config
        self._context = context
        self._snapshots = snapshots  # a snapshots output will publish: announce the image entity
        self.device = topic_safe(config.device or socket.gethostname())
        self.base = base = f"{config.topic_prefix.rstrip('/')}/{self.device}"
        self.topics = {level: f"{base}/{level}" for level in ("classification", "status", "stats", "event",
                                                               "snapshot")}
        self._ha_status_topic = f"{config.discovery_prefix}/status"
        # Per camera and region (one policy for a plain run): one camera's changes never hold back another's.
        self._policies: dict[tuple[str | None, str | None], tuple[PublishPolicy, PublishPolicy]] = {}
        self._backend: str | None = None  # of the last result: a new one (the Edge TPU failover) sends the stats now
        self._stats_due = False
        self._camera_up: dict[str, bool] = {}  # as last published on each camera's status topic
        self._pending_snapshots: dict[str, bytes] = {}  # topic -> the newest snapshot made while disconnected
        self._lock = threading.Lock()
        self._backlog: deque[tuple[str, str]] = deque(maxlen=config.backlog)  # (topic, payload)
        self.backlog_dropped = 0
        self._connected = False
        self._connections = 0  # how many times a connection was acknowledged
        self._closing = False
        self._outage_logged = False
        self._stop = threading.Event()
        self._client = self._make_client()
        self._client.connect_async(config.host, config.port, config.keepalive)
        self._client.loop_start()
        self._watcher = threading.Thread(target=self._watch, name="mqtt-watch", daemon=True)
        self._watcher.start()
        log.info("mqtt: publishing to %s:%d under %s/ (%s)", config.host, config.port, base, config.publish)

    def _make_client(self) -> mqtt.Client:
        config = self._config
        client = make_client(config, config.client_id or f"edge-infer-{self.device}")
        client.will_set(self.topics["status"], STATUS_OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        # paho queues what it could not send yet; bound that too (room for a flushed backlog plus the
        # status and discovery messages), so a long outage cannot grow memory.
        client.max_queued_messages_set(config.backlog + 50)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        return client

    # paho's network thread calls these three.
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            self._log_outage(f"broker refused the connection: {reason}")
            return
        with self._lock:
            closing = self._closing
        # A run that ended while this connection was being made sends what it kept, then "stopped", not "online".
        if not closing:
            client.publish(self.topics["status"], STATUS_ONLINE, qos=1, retain=True)
        if self._config.discovery and not closing:
            self._send_discovery(client)
            client.subscribe(self._ha_status_topic, qos=1)  # Home Assistant's birth message: send discovery again
        with self._lock:
            self._connected = True
            self._connections += 1
            self._outage_logged = False
            waiting = list(self._backlog)
            self._backlog.clear()
            for topic, payload in waiting:
                self._send(topic, payload)
            snapshots, self._pending_snapshots = self._pending_snapshots, {}
            self._camera_up.clear()  # the watch thread publishes every camera's status on this connection
        for topic, snapshot in snapshots.items():
            client.publish(topic, snapshot, qos=self._config.qos, retain=True)
        if closing:
            client.publish(self.topics["status"], STATUS_STOPPED, qos=1, retain=True)
        log.info("mqtt: connected to %s:%d%s", self._config.host, self._config.port,
                 f", sent {len(waiting)} results kept while disconnected" if waiting else "")

    def _send_discovery(self, client: mqtt.Client) -> None:
        prefix = self._config.discovery_prefix
        model = self._context.status().model  # in use now: a guard step or the fallback since the start shows
        if self._context.cameras:
            for topic, entity in camera_discovery_messages(prefix, self.device, self.base, self._context.cameras,
                                                           model, self._snapshots).items():
                client.publish(topic, json.dumps(entity), qos=1, retain=True)
            return
        for topic, entity in discovery_messages(prefix, self.device, self.topics, model,
                                                self._snapshots).items():
            client.publish(topic, json.dumps(entity), qos=1, retain=True)
        if not self._snapshots:  # an image entity announced by an earlier configuration: remove it
            client.publish(image_discovery_topic(prefix, self.device), b"", qos=1, retain=True)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._ha_status_topic and message.payload == b"online":
            with self._lock:
                closing = self._closing
            if not closing:
                self._send_discovery(client)
                log.info("mqtt: Home Assistant came online; discovery sent again")

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        with self._lock:
            self._connected = False
        if not self._stop.is_set():
            self._log_outage(f"disconnected ({reason}); reconnecting")

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._log_outage(f"cannot reach the broker at {self._config.host}:{self._config.port}; retrying")

    def _log_outage(self, message: str) -> None:
        if not self._outage_logged:  # once per outage, not once per retry
            self._outage_logged = True
            log.warning("mqtt: %s; keeping the newest %d results meanwhile", message, self._config.backlog)

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def topic(self, level: str, camera: str | None = None, region: str | None = None) -> str:
        """`<base>/<level>` for a plain run; `<base>/<camera>[/<region>]/<level>` for a camera's results."""
        return "/".join(part for part in (self.base, camera, region, level) if part)

    def _policies_for(self, result: Classification) -> tuple[PublishPolicy, PublishPolicy]:
        place = (result.camera, result.region)
        policies = self._policies.get(place)
        if policies is None:
            # Results as `publish` says; events on every new top label, capped the same way (a flickering label).
            policies = self._policies[place] = (
                PublishPolicy(self._config.publish, self._config.max_per_second, key=what_runs),
                PublishPolicy("change", self._config.max_per_second))
        return policies

    def publish(self, result: Classification) -> None:
        if result.backend != self._backend:
            with self._lock:
                self._stats_due = self._backend is not None
            self._backend = result.backend
        results, events = self._policies_for(result)
        if result.top and events.admit(result):
            self._publish_event(result)
        if not results.admit(result):
            return
        payload = result.to_json()
        topic = self.topic("classification", result.camera, result.region)
        with self._lock:
            if not self._connected:
                if len(self._backlog) == self._backlog.maxlen:  # the oldest falls out
                    self.backlog_dropped += 1
                self._backlog.append((topic, payload))
                return
            info = self._send(topic, payload)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ConnectionError(f"mqtt publish failed: {mqtt.error_string(info.rc)}")

    def _publish_event(self, result: Classification) -> None:
        """Home Assistant's event entity: not retained (it ignores retained events), not kept while disconnected
        (an event is about now)."""
        if self.connected:
            top = result.top[0]
            event = {"event_type": EVENT_LABEL_CHANGED, "label": top.label, "score": round(top.score, 6)}
            self._client.publish(self.topic("event", result.camera, result.region), json.dumps(event),
                                 self._config.qos, retain=False)

    def publish_snapshot(self, jpeg: bytes, camera: str | None = None, region: str | None = None) -> None:
        """The newest snapshot of a camera's region, retained (Home Assistant's image entity shows it); from the
        snapshots thread. While disconnected only the newest one of each waits."""
        topic = self.topic("snapshot", camera, region)
        with self._lock:
            if not self._connected:
                self._pending_snapshots[topic] = jpeg
                return
        self._client.publish(topic, jpeg, self._config.qos, retain=True)

    def _send(self, topic: str, payload: str) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, self._config.qos, self._config.retain)

    def _publish_camera_states(self) -> None:
        """Each camera's retained status: online while it delivers frames, offline while it reconnects."""
        for camera in self._context.cameras:
            up = self._context.streaming(camera.name)
            if self._camera_up.get(camera.name) != up:
                self._camera_up[camera.name] = up
                self._client.publish(self.topic("status", camera.name), STATUS_ONLINE if up else STATUS_OFFLINE,
                                     qos=1, retain=True)

    def stats_message(self, status: RunStatus) -> dict[str, object]:
        with self._lock:
            backlog = len(self._backlog)
        return {**status.to_json_dict(), "mqtt_backlog": backlog, "mqtt_backlog_dropped": self.backlog_dropped}

    def _watch(self, clock: Callable[[], float] = time.monotonic) -> None:
        """One thread for what runs on a timer: the stats (the first soon after each connection) and the
        warning for a broker that accepts the connection but never answers it."""
        waiting_since = clock()
        warned = False
        seen_connections = 0
        next_stats = float("inf")
        while not self._stop.wait(WATCH_STEP_S):
            now = clock()
            with self._lock:
                connected, connections, outage = self._connected, self._connections, self._outage_logged
                stats_due = self._stats_due
            if connections != seen_connections:  # a new connection: stats soon, and a new wait if it drops
                seen_connections, warned = connections, False
                next_stats = now + FIRST_STATS_S
            if connected:
                waiting_since = now
                self._publish_camera_states()
                if self._config.stats_interval > 0 and (now >= next_stats or stats_due):
                    with self._lock:
                        self._stats_due = False
                    status = self._context.status()
                    self._client.publish(self.topics["stats"], json.dumps(self.stats_message(status)), qos=0)
                    for camera in status.cameras:
                        message = {"model": status.model, "backend": status.backend, **camera.to_json_dict()}
                        self._client.publish(self.topic("stats", camera.name), json.dumps(message), qos=0)
                    next_stats = now + self._config.stats_interval
            elif not warned and not outage and now - waiting_since > NO_ANSWER_WARNING_S:
                warned = True
                log.warning("mqtt: %s:%d has not answered in %g s (an MQTT broker? TLS as it expects?); still trying",
                            self._config.host, self._config.port, NO_ANSWER_WARNING_S)

    def close(self) -> None:
        """Publish `stopped`, disconnect cleanly (so the broker does not send the last will), stop the threads.

        Whatever the moment: a connection still being made is given a moment, and one that completes
        after this started publishes `stopped`, not `online` (_on_connect).
        """
        self._stop.set()
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while True:
            with self._lock:
                self._closing = True
                connected = self._connected
            if connected or self._outage_logged or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if connected:
            info = self._client.publish(self.topics["status"], STATUS_STOPPED, qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                log.warning("mqtt: could not publish 'stopped': %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._watcher.join(WATCH_STEP_S * 2)

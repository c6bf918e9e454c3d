"""MQTT against a real Mosquitto broker on loopback, through the real CLI where the behaviour is end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from broker import Broker, Subscriber
from conftest import FakeClock, error_lines, need, python_start_up_s, side_by_side
from mjpeg import MjpegServer

from edge_infer.outputs.base import CameraLayout, OutputContext
from edge_infer.outputs.mqtt import (
    MqttConfig,
    MqttOutput,
    PublishPolicy,
    camera_discovery_messages,
    discovery_messages,
    what_runs,
)
from edge_infer.values import Box, Class, Classification, RunStatus, Timing

CONTEXT = OutputContext(lambda: RunStatus("m", "cpu"))  # an output's run: model m on the CPU

DEVICE = "testdev"
BASE = f"edge-infer/{DEVICE}"


@pytest.fixture
def subscriber(broker: Broker):
    client = Subscriber(broker.port)
    time.sleep(0.2)  # subscribed before anything is published
    yield client
    client.close()


def result(label: str, seq: int = 1, backend: str = "cpu") -> Classification:
    return Classification(seq, 0.0, "m", backend, (Class(1, label, 0.9),), Timing(1, 2, 3))


def write_config(path: Path, mqtt: str, source: str, outputs: str = "[mqtt]", extra: str = "") -> Path:
    path.write_text(f"outputs: {outputs}\nmqtt:\n  device: {DEVICE}\n{mqtt}\nsource:\n{source}\n{extra}")
    return path


def loop_source(images: Path, name: str = "bird.bmp") -> str:
    return f"  type: images\n  path: {images / name}\n  loop: true"


def start_cli(config: Path, model: Path, cwd: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge_infer", "run", "--config", str(config), "--model", str(model),
                             *extra], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


# --- pure parts --------------------------------------------------------------------------------

def test_policy_change_publishes_only_new_labels():
    policy = PublishPolicy("change", 0, FakeClock())
    labels = ["cat", "cat", "dog", "dog", "cat"]
    assert [policy.admit(result(label)) for label in labels] == [True, False, True, False, True]


def test_policy_change_publishes_a_new_backend_when_asked():
    """The classification topic shows a failover to the CPU even when the label stays; events do not fire."""
    results = [result("cat", backend="edgetpu"), result("cat", backend="cpu"), result("cat", backend="cpu")]
    classifications = PublishPolicy("change", 0, FakeClock(), key=what_runs)
    events = PublishPolicy("change", 0, FakeClock())
    assert [classifications.admit(r) for r in results] == [True, True, False]
    assert [events.admit(r) for r in results] == [True, False, False]


def test_policy_rate_caps_messages_per_second():
    clock = FakeClock()
    policy = PublishPolicy("rate", 2.0, clock)
    admitted = []
    for step in range(30):  # 30 frames at 10 fps = 3 s
        clock.now = step * 0.1
        admitted.append(policy.admit(result("cat")))
    assert sum(admitted) == 6


def test_policy_change_is_capped_too():
    clock = FakeClock()
    policy = PublishPolicy("change", 1.0, clock)
    admitted = []
    for step in range(10):  # a label flickering at 10 fps for 1 s
        clock.now = step * 0.1
        admitted.append(policy.admit(result("cat" if step % 2 else "dog")))
    assert sum(admitted) == 1


def test_policy_all_publishes_everything():
    policy = PublishPolicy("all", 2.0, FakeClock())
    assert all(policy.admit(result("cat")) for _ in range(10))


TOPICS = {level: f"{BASE}/{level}" for level in ("classification", "status", "stats", "event", "snapshot")}


def test_discovery_describes_four_sensors_and_an_event_of_one_device():
    topics = TOPICS
    messages = discovery_messages("homeassistant", DEVICE, topics, "mobilenet")
    node = f"homeassistant/sensor/edge_infer_{DEVICE}"
    assert sorted(messages) == [f"homeassistant/event/edge_infer_{DEVICE}/label_changed/config",
                                *(f"{node}/{key}/config" for key in ("backend", "fps", "label", "score"))]
    label = messages[f"{node}/label/config"]
    assert label["state_topic"] == topics["classification"] and label["availability"][0]["topic"] == topics["status"]
    assert len({json.dumps(m["device"]) for m in messages.values()}) == 1
    assert len({m["unique_id"] for m in messages.values()}) == 5
    assert messages[f"{node}/backend/config"]["state_topic"] == topics["stats"]
    backend, fps = messages[f"{node}/backend/config"], messages[f"{node}/fps/config"]
    assert backend["device_class"] == "enum" and backend["options"] == ["cpu", "edgetpu", "hailo"]
    assert backend["entity_category"] == fps["entity_category"] == "diagnostic" and "entity_category" not in label
    assert {m["origin"]["name"] for m in messages.values()} == {"edge-infer"}


def test_camera_discovery_makes_a_device_per_camera_with_entities_per_region():
    cameras = (CameraLayout("porch", {"door": Box(0.5, 0, 0.5, 1), "path": Box(0, 0.5, 0.5, 0.5)}),
               CameraLayout("garden"))
    messages = camera_discovery_messages("homeassistant", DEVICE, BASE, cameras, "mobilenet", snapshots=True)
    by_device: dict[str, set[str]] = {}
    for topic, config in messages.items():
        by_device.setdefault(config["device"]["identifiers"][0], set()).add(topic.split("/")[-2])
    assert by_device == {
        f"edge_infer_{DEVICE}_porch": {"fps", "backend", "door_label", "door_score", "door_label_changed",
                                       "door_snapshot", "path_label", "path_score", "path_label_changed",
                                       "path_snapshot"},
        f"edge_infer_{DEVICE}_garden": {"fps", "backend", "label", "score", "label_changed", "snapshot"}}
    door = messages[f"homeassistant/sensor/edge_infer_{DEVICE}_porch/door_label/config"]
    assert door["state_topic"] == f"{BASE}/porch/door/classification" and door["name"] == "Door label"
    assert door["availability_mode"] == "all"
    assert [a["topic"] for a in door["availability"]] == [f"{BASE}/status", f"{BASE}/porch/status"]
    garden = messages[f"homeassistant/image/edge_infer_{DEVICE}_garden/snapshot/config"]
    assert garden["image_topic"] == f"{BASE}/garden/snapshot"
    assert len({m["unique_id"] for m in messages.values()}) == len(messages)


# --- end to end --------------------------------------------------------------------------------

def test_results_over_mqtt_match_the_golden_labels(broker, subscriber, tmp_path, models, images):
    config = write_config(tmp_path / "c.yaml", f"  port: {broker.port}\n  publish: all",
                          f"  type: images\n  path: {images}")
    done = subprocess.run([sys.executable, "-m", "edge_infer", "run", "--config", str(config), "--model",
                           str(models / "mobilenet_v2_1.0_224_quant.tflite")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # outputs: [mqtt] only
    messages = subscriber.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == "stopped")
    by_file = {Path(m.json()["path"]).name: m.json()["top"][0]["label"] for m in subscriber.on("/classification")}
    assert by_file["parrot.jpg"] == "macaw" and by_file["bird.bmp"] == "chickadee"
    assert by_file["grace_hopper.bmp"] == "military uniform" and by_file["sunflower.bmp"] == "daisy"
    assert messages and [m.payload for m in subscriber.on("/status")] == ["online", "stopped"]
    # A late subscriber still learns the state and the Home Assistant sensors: they are retained.
    late = Subscriber(broker.port)
    retained = late.wait_for(lambda m: m.topic == f"{BASE}/status")
    late.wait_for(lambda m: m.topic.endswith("/label/config"))
    late.close()
    assert retained[0].payload == "stopped" and retained[0].retain


def test_the_pipeline_survives_a_broker_restart(broker, subscriber, tmp_path, models, images):
    config = write_config(tmp_path / "c.yaml", f"  port: {broker.port}\n  publish: rate\n  max_per_second: 20\n"
                          "  keepalive: 5", loop_source(images), outputs="[stdout, mqtt]")
    process = start_cli(config, models / "mobilenet_v1_0.25_128_quant.tflite", tmp_path, "--frames", "newest")
    stdout_lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: [stdout_lines.append((time.monotonic(), line)) for line in process.stdout],
                              daemon=True)
    reader.start()
    try:
        subscriber.wait_for(lambda m: m.topic.endswith("/classification"))
        broker.stop()
        down_at = time.monotonic()
        time.sleep(2.0)
        broker.start()
        up_at = time.monotonic()
        # The subscriber reconnects too; after the restart the service says "online" again and results flow.
        subscriber.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == "online" and m.at > up_at,
                            timeout=40)
        after = subscriber.wait_for(lambda m: m.topic.endswith("/classification") and m.at > up_at, timeout=20)
        assert after[0].json()["top"][0]["label"] == "chickadee"
        # Classification never stopped: stdout kept getting results while the broker was down.
        assert any(down_at + 0.5 < at < up_at - 0.5 for at, _ in stdout_lines)
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert stderr.count("mqtt: disconnected") + stderr.count("cannot reach the broker") == 1  # once per outage


def test_sigkill_leaves_the_last_will(broker, subscriber, tmp_path, models, images):
    config = write_config(tmp_path / "c.yaml", f"  port: {broker.port}", loop_source(images))
    process = start_cli(config, models / "mobilenet_v1_0.25_128_quant.tflite", tmp_path)
    subscriber.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == "online")
    process.kill()
    process.wait(10)
    killed_at = time.monotonic()
    offline = subscriber.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == "offline", timeout=15)
    assert offline[0].at >= killed_at - 0.5


def test_sigterm_publishes_stopped_and_exits_promptly(broker, subscriber, tmp_path, models, images):
    config = write_config(tmp_path / "c.yaml", f"  port: {broker.port}", loop_source(images))
    process = start_cli(config, models / "mobilenet_v1_0.25_128_quant.tflite", tmp_path)
    subscriber.wait_for(lambda m: m.topic.endswith("/classification"))
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    process.communicate(timeout=10)
    assert time.monotonic() - sent < 2.0 and process.returncode == 0
    subscriber.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == "stopped", timeout=5)
    time.sleep(0.5)
    assert [m.payload for m in subscriber.on("/status")][-1] == "stopped"  # no last will after a clean stop


def test_stats_are_published(broker, subscriber, tmp_path, models, images):
    config = write_config(tmp_path / "c.yaml", f"  port: {broker.port}\n  stats_interval: 0.3", loop_source(images))
    process = start_cli(config, models / "mobilenet_v1_0.25_128_quant.tflite", tmp_path)
    try:
        stats = subscriber.wait_for(lambda m: m.topic == f"{BASE}/stats" and m.json()["frames"] > 5)[0].json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert stats["fps"] > 0 and stats["inference_ms"]["p95"] >= stats["inference_ms"]["p50"] > 0
    assert stats["model"] == "mobilenet_v1_0.25_128_quant" and stats["backend"] == "cpu"
    assert {"dropped_frames", "uptime_s", "mqtt_backlog_dropped"} <= set(stats)
    assert stats["age_ms"]["p95"] >= stats["age_ms"]["p50"] >= stats["inference_ms"]["p50"]


def test_backlog_keeps_the_newest_results_while_the_broker_is_down(tmp_path):
    need("mosquitto")
    server = Broker(tmp_path)  # not started yet
    config = MqttConfig(port=server.port, device=DEVICE, publish="all", backlog=10, stats_interval=0)
    output = MqttOutput(config, CONTEXT)
    try:
        for seq in range(1, 51):
            output.publish(result("cat", seq))
        assert output.backlog_dropped == 40
        server.start()
        subscriber = Subscriber(server.port)
        frames = subscriber.wait_for(lambda m: m.topic.endswith("/classification") and m.json()["frame"] == 50,
                                     timeout=40)
        assert frames
        time.sleep(0.3)
        assert [m.json()["frame"] for m in subscriber.on("/classification")] == list(range(41, 51))
        subscriber.close()
    finally:
        output.close()
        server.stop()


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "2",
        "-subj", "/CN=edge-infer test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial", "-out",
        str(cert), "-days", "2", "-extfile", str(ext))
    return ca_cert, cert, key


PASSWORD = "s3cret-Pa55word-never-logged"


@pytest.fixture
def secure_broker(tmp_path: Path):
    for tool in ("mosquitto", "mosquitto_passwd", "openssl"):
        need(tool)
    ca, cert, key = make_tls_files(tmp_path)
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "edge", PASSWORD], check=True)
    server = Broker(tmp_path, f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\npassword_file {passwords}\n",
                    anonymous=False)
    server.start()
    yield server, ca
    server.stop()


@pytest.mark.parametrize("systemd_credential", [False, True])
def test_tls_with_username_and_password(secure_broker, tmp_path, models, images, systemd_credential: bool):
    """The password from a plain file, or from systemd's credentials directory (LoadCredential=mqtt:...)."""
    server, ca = secure_broker
    subscriber = Subscriber(server.port, username="edge", password=PASSWORD, ca_file=ca)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt").write_text(PASSWORD + "\n")
    (credentials / "mqtt").chmod(0o600)
    password_file = "${CREDENTIALS_DIRECTORY}/mqtt" if systemd_credential else str(credentials / "mqtt")
    config = write_config(tmp_path / "c.yaml", f"  host: 127.0.0.1\n  port: {server.port}\n  tls: true\n"
                          f"  ca_file: {ca}\n  username: edge\n  password_file: '{password_file}'",
                          f"  type: images\n  path: {images / 'parrot.jpg'}")
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(credentials)} if systemd_credential else None
    done = subprocess.run([sys.executable, "-m", "edge_infer", "run", "--config", str(config), "--log-level", "debug",
                           "--model", str(models / "mobilenet_v1_0.5_160_quant.tflite")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    try:
        assert done.returncode == 0, done.stderr
        message = subscriber.wait_for(lambda m: m.topic.endswith("/classification"))[0]
        assert message.json()["top"][0]["label"] == "macaw"
    finally:
        subscriber.close()
    assert PASSWORD not in done.stderr + done.stdout


def test_a_wrong_password_is_reported_and_classification_goes_on(secure_broker, tmp_path, models, images):
    server, ca = secure_broker
    config = write_config(tmp_path / "c.yaml", f"  host: 127.0.0.1\n  port: {server.port}\n  tls: true\n"
                          f"  ca_file: {ca}\n  username: edge\n  password_env: TEST_MQTT_PASSWORD",
                          loop_source(images), outputs="[stdout, mqtt]")
    process = start_cli(config, models / "mobilenet_v1_0.25_128_quant.tflite", tmp_path, "--log-level", "debug",
                        env={"TEST_MQTT_PASSWORD": "wrong-" + PASSWORD})
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert len(stdout.splitlines()) > 10  # stdout kept getting results
    assert "broker refused the connection" in stderr
    assert PASSWORD not in stderr


def test_an_unreadable_password_file_is_a_config_error(cli, tmp_path, models, images):
    config = write_config(tmp_path / "c.yaml", f"  username: edge\n  password_file: {tmp_path / 'missing'}",
                          f"  type: images\n  path: {images / 'parrot.jpg'}")
    done = cli("run", "--config", str(config), "--model", str(models / "mobilenet_v1_0.25_128_quant.tflite"))
    assert done.status == 2
    assert "mqtt.password_file: cannot read" in error_lines(done.stderr)[0]


def retained_status(port: int) -> str | None:
    """What a client connecting now is told on the status topic (retained), or None."""
    late = Subscriber(port)
    try:
        found = late.wait_for(lambda m: m.topic == f"{BASE}/status", timeout=1.0)
        return found[-1].payload
    except AssertionError:
        return None
    finally:
        late.close()


def test_sigterm_at_any_moment_leaves_stopped_or_nothing(broker, tmp_path, models, images):
    config = write_config(tmp_path / "c.yaml", f"  port: {broker.port}\n  discovery: false", loop_source(images))
    seen = []
    python_up = python_start_up_s()
    for delay in (python_up + extra for extra in (0.0, 0.25, 0.55, 0.85, 1.15, 1.45, 2.0, 3.0)):  # start-up .. loop
        clear = Subscriber(broker.port)
        clear.client.publish(f"{BASE}/status", b"", qos=1, retain=True).wait_for_publish(5)  # forget the last run
        clear.close()
        process = start_cli(config, models / "mobilenet_v1_0.25_128_quant.tflite", tmp_path)
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        # Before our handler exists SIGTERM's default action ends the process: systemd counts that as clean.
        clean = (0, -signal.SIGTERM) if delay == python_up else (0,)
        assert process.returncode in clean and "Traceback" not in stderr, stderr
        status = retained_status(broker.port)
        seen.append(status)
        assert status in ("stopped", None), (delay, status)
    assert "stopped" in seen  # the later signals came after the connection


def test_a_broker_that_never_answers_is_reported(tmp_path, models, images):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # takes the TCP connection, never says a word of MQTT
    try:
        config = write_config(tmp_path / "c.yaml", f"  port: {silent.getsockname()[1]}", loop_source(images))
        process = start_cli(config, models / "mobilenet_v1_0.25_128_quant.tflite", tmp_path)
        time.sleep(8)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        silent.close()
    assert process.returncode == 0
    [warning] = [line for line in stderr.splitlines() if "has not answered in 5 s" in line]
    assert warning.startswith("edge-infer: warning: mqtt: localhost:")


def test_the_first_stats_come_soon_after_connecting_and_count_the_backlog(broker, subscriber, tmp_path, models,
                                                                         images):
    config = write_config(tmp_path / "c.yaml", f"  port: {broker.port}\n  stats_interval: 600", loop_source(images))
    process = start_cli(config, models / "mobilenet_v1_0.25_128_quant.tflite", tmp_path)
    try:
        online = subscriber.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == "online", timeout=30)
        stats = subscriber.wait_for(lambda m: m.topic == f"{BASE}/stats", timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert stats[0].at - online[0].at < 3.0  # not after stats_interval (600 s)
    assert stats[0].json()["mqtt_backlog"] == 0


# --- Home Assistant: what it accepts, discovery again when it comes online, events, snapshots -----

# What Home Assistant's MQTT platforms accept in a discovery config, from homeassistant/components/mqtt:
# config.py (MQTT_BASE_SCHEMA, MQTT_RO_SCHEMA), schemas.py (MQTT_ENTITY_COMMON_SCHEMA, the availability and
# device schemas), sensor.py, event.py and image.py. Its discovery schemas drop unknown keys without a word
# (vol.REMOVE_EXTRA): a misspelt key would silently do nothing there, so here it fails.
HA_BASE = {"qos", "encoding", "group"}
HA_COMMON = {"availability", "availability_mode", "availability_template", "availability_topic",
             "payload_available", "payload_not_available", "device", "origin", "enabled_by_default",
             "entity_category", "icon", "json_attributes_topic", "json_attributes_template", "object_id",
             "unique_id", "default_entity_id"}
HA_PLATFORMS: dict[str, tuple[set[str], set[str]]] = {  # platform: (required, allowed)
    "sensor": ({"state_topic"}, HA_BASE | HA_COMMON | {
        "state_topic", "value_template", "device_class", "expire_after", "force_update", "last_reset_value_template",
        "name", "options", "suggested_display_precision", "state_class", "unit_of_measurement"}),
    "event": ({"state_topic", "event_types"}, HA_BASE | HA_COMMON | {
        "state_topic", "value_template", "device_class", "name", "event_types"}),
    "image": (set(), HA_BASE | HA_COMMON | {"content_type", "name", "url_topic", "image_topic", "image_encoding",
                                             "url_template"}),
}
HA_AVAILABILITY_ENTRY = {"topic", "payload_available", "payload_not_available", "value_template"}
HA_DEVICE = {"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
             "serial_number", "sw_version", "via_device", "suggested_area", "configuration_url"}


def check_home_assistant_schema(topic: str, config: dict) -> None:
    prefix, platform, node, key, tail = topic.split("/")
    assert prefix == "homeassistant" and tail == "config" and node == f"edge_infer_{DEVICE}", topic
    required, allowed = HA_PLATFORMS[platform]
    assert required <= set(config), (topic, required - set(config))
    assert set(config) <= allowed, (topic, set(config) - allowed)
    assert "availability_topic" not in config or "availability" not in config  # exclusive
    for entry in config["availability"]:
        assert "topic" in entry and set(entry) <= HA_AVAILABILITY_ENTRY, entry
    assert set(config["device"]) <= HA_DEVICE and config["device"]["identifiers"], config["device"]
    assert isinstance(config["unique_id"], str) and isinstance(config["name"], str)
    if platform == "event":
        assert config["event_types"] and all(isinstance(t, str) for t in config["event_types"])
    if platform == "image":
        assert ("image_topic" in config) != ("url_topic" in config)  # exactly one
        assert "content_type" not in config or "url_topic" not in config
        assert config.get("image_encoding", "b64") == "b64"
    if "json_attributes_template" in config:
        assert "json_attributes_topic" in config
    # origin: name required, then sw_version and support_url (schemas.py, MQTT_ORIGIN_INFO_SCHEMA)
    assert config["origin"]["name"] and set(config["origin"]) <= {"name", "sw_version", "support_url"}
    # sensor.py: an enum sensor lists its options and has neither a state class nor a unit; a sensor's
    # entity_category may only be diagnostic (config is for entities that change settings)
    if config.get("device_class") == "enum":
        assert config["options"] and not {"state_class", "unit_of_measurement"} & set(config)
    if platform == "sensor":
        assert config.get("entity_category", "diagnostic") == "diagnostic"


@pytest.mark.parametrize("snapshots", [False, True])
def test_discovery_configs_follow_home_assistants_schemas(snapshots: bool):
    messages = discovery_messages("homeassistant", DEVICE, TOPICS, "mobilenet", snapshots=snapshots)
    for topic, config in messages.items():
        check_home_assistant_schema(topic, json.loads(json.dumps(config)))
    platforms = sorted(topic.split("/")[1] for topic in messages)
    assert platforms == ["event", *(["image"] if snapshots else []), "sensor", "sensor", "sensor", "sensor"]
    label = messages[f"homeassistant/sensor/edge_infer_{DEVICE}/label/config"]
    # The top-k as the label's attributes, from the classification JSON ({"top": [...]}).
    assert label["json_attributes_topic"] == TOPICS["classification"]
    assert label["json_attributes_template"] == "{{ {'top': value_json.top} | tojson }}"
    event = messages[f"homeassistant/event/edge_infer_{DEVICE}/label_changed/config"]
    assert event["state_topic"] == TOPICS["event"] and event["event_types"] == ["label_changed"]
    if snapshots:
        image = messages[f"homeassistant/image/edge_infer_{DEVICE}/snapshot/config"]
        assert image["image_topic"] == TOPICS["snapshot"] and image["content_type"] == "image/jpeg"


def discovery_configs(subscriber: Subscriber, after: float = 0.0) -> dict[str, dict]:
    return {m.topic: m.json() for m in subscriber.messages
            if m.topic.startswith("homeassistant/") and m.topic.endswith("/config") and m.payload and m.at > after}


def all_discovery_configs(subscriber: Subscriber, after: float = 0.0) -> dict[str, dict]:
    """The configs sent after `after`, once five have come (they arrive one by one), and a moment for any more."""
    deadline = time.monotonic() + 15
    while len(discovery_configs(subscriber, after)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    return discovery_configs(subscriber, after)


def test_discovery_is_sent_again_when_home_assistant_comes_online(broker, subscriber):
    output = MqttOutput(MqttConfig(port=broker.port, device=DEVICE, stats_interval=0), CONTEXT)
    try:
        first = all_discovery_configs(subscriber)
        assert len(first) == 5, sorted(first)
        ha = Subscriber(broker.port)  # stands in for Home Assistant's own client
        try:
            said_offline = time.monotonic()
            ha.client.publish("homeassistant/status", "offline", qos=1).wait_for_publish(5)
            time.sleep(1.0)
            assert discovery_configs(subscriber, after=said_offline) == {}  # "offline" asks for nothing
            said_online = time.monotonic()
            ha.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
            again = all_discovery_configs(subscriber, after=said_online)
        finally:
            ha.close()
        assert again == first  # every entity, as first announced
    finally:
        output.close()


def test_each_new_top_label_fires_a_home_assistant_event(broker, subscriber):
    output = MqttOutput(MqttConfig(port=broker.port, device=DEVICE, stats_interval=0, max_per_second=0),
                        CONTEXT)
    try:
        subscriber.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == "online")
        time.sleep(0.3)
        for seq, label in enumerate(["cat", "cat", "dog", "dog", "dog", "cat"], start=1):
            output.publish(result(label, seq))
        deadline = time.monotonic() + 10
        while len(subscriber.on(f"{BASE}/event")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        output.close()
    events = subscriber.on(f"{BASE}/event")
    assert [e.json() for e in events] == [{"event_type": "label_changed", "label": label, "score": 0.9}
                                          for label in ("cat", "dog", "cat")]
    assert not any(e.retain for e in events)  # Home Assistant ignores retained events
    late = Subscriber(broker.port)
    time.sleep(0.5)
    assert late.on("/event") == []  # and none is retained for a late subscriber
    late.close()


def test_the_newest_snapshot_waits_for_the_broker_and_is_retained(tmp_path: Path):
    from test_snapshots import BinarySubscriber, payload_bytes

    need("mosquitto")
    server = Broker(tmp_path)  # not started yet
    output = MqttOutput(MqttConfig(port=server.port, device=DEVICE, stats_interval=0), CONTEXT,
                        snapshots=True)
    try:
        output.publish_snapshot(b"\xff\xd8 older \xff\xd9")
        output.publish_snapshot(b"\xff\xd8 newest \x80\x81 \xff\xd9")  # not UTF-8: sent as bytes
        server.start()
        listener = BinarySubscriber(server.port)
        try:
            listener.wait_for(lambda m: m.topic == f"{BASE}/snapshot", timeout=40)
            time.sleep(0.3)
            sent = [payload_bytes(m) for m in listener.on(f"{BASE}/snapshot")]
        finally:
            listener.close()
        late = BinarySubscriber(server.port)
        try:
            retained = late.wait_for(lambda m: m.topic == f"{BASE}/snapshot")
            late.wait_for(lambda m: m.topic.endswith("/snapshot/config"))
        finally:
            late.close()
    finally:
        output.close()
        server.stop()
    assert sent == [b"\xff\xd8 newest \x80\x81 \xff\xd9"]  # only the newest waited
    assert retained[-1].retain and payload_bytes(retained[-1]) == sent[0]


def test_the_image_entity_is_removed_when_snapshots_are_off(broker):
    context = CONTEXT
    image_topic = f"homeassistant/image/edge_infer_{DEVICE}/snapshot/config"
    with_snapshots = MqttOutput(MqttConfig(port=broker.port, device=DEVICE, stats_interval=0), context, snapshots=True)
    late = Subscriber(broker.port)
    late.wait_for(lambda m: m.topic == image_topic)
    late.close()
    with_snapshots.close()
    without = MqttOutput(MqttConfig(port=broker.port, device=DEVICE, stats_interval=0), context)
    try:
        deadline = time.monotonic() + 10
        while not without.connected:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # its discovery is out
        later = Subscriber(broker.port)
        later.wait_for(lambda m: m.topic.endswith("/label_changed/config"))
        time.sleep(0.5)
        assert [m for m in later.messages if m.topic == image_topic] == []  # no retained config left
        later.close()
    finally:
        without.close()


# --- several cameras ---------------------------------------------------------------------------------------

def cameras_config(path: Path, port: int, stream: str, garden: Path) -> Path:
    path.write_text(f"""outputs: [mqtt]
mqtt: {{port: {port}, device: {DEVICE}, stats_interval: 1}}
postprocess: {{top_k: 1}}
cameras:
  yard:
    source: {{type: opencv, device: "{stream}"}}
    regions:
      feeder: {{box: [0, 0, 0.5, 1]}}
      perch: {{box: [0.5, 0, 0.5, 1]}}
  garden:
    source: {{type: images, path: {garden}, loop: true}}
""")
    return path


def test_cameras_publish_per_region_with_a_home_assistant_device_per_camera(broker, subscriber, tmp_path, models,
                                                                            images):
    yard = MjpegServer(side_by_side(images, "bird.bmp", "parrot.jpg"), fps=10)
    yard.start()
    config = cameras_config(tmp_path / "c.yaml", broker.port, yard.url, images / "sunflower.bmp")
    process = start_cli(config, models / "mobilenet_v2_1.0_224_quant.tflite", tmp_path)
    try:
        for place, label in (("yard/feeder", "chickadee"), ("yard/perch", "macaw"), ("garden", "daisy")):
            [first, *_] = subscriber.wait_for(lambda m, place=place: m.topic == f"{BASE}/{place}/classification")
            record = first.json()
            assert record["top"][0]["label"] == label
            assert (record["camera"], record["region"]) == (place.split("/")[0], (place.split("/") + [None])[1])
        assert not subscriber.on(f"{BASE}/classification")  # a cameras run has no whole-run classification topic

        def discovery(m):
            return m.topic.startswith("homeassistant/") and m.topic.endswith("/config")

        configs = {m.topic: m.json() for m in subscriber.wait_for(discovery)}
        devices = {tuple(c["device"]["identifiers"]) for c in configs.values()}
        assert devices == {(f"edge_infer_{DEVICE}_yard",), (f"edge_infer_{DEVICE}_garden",)}
        feeder = configs[f"homeassistant/sensor/edge_infer_{DEVICE}_yard/feeder_label/config"]
        assert feeder["state_topic"] == f"{BASE}/yard/feeder/classification" and feeder["availability_mode"] == "all"
        assert [a["topic"] for a in feeder["availability"]] == [f"{BASE}/status", f"{BASE}/yard/status"]
        garden_keys = {topic.split("/")[-2] for topic in configs if f"edge_infer_{DEVICE}_garden/" in topic}
        assert garden_keys == {"label", "score", "label_changed", "fps", "backend"}
        assert len({c["unique_id"] for c in configs.values()}) == len(configs)
        # Each camera's retained status and its own stats.
        subscriber.wait_for(lambda m: m.topic == f"{BASE}/yard/status" and m.payload == "online")
        late = Subscriber(broker.port)  # a Home Assistant that starts later still finds the camera's status
        try:
            late.wait_for(lambda m: m.topic == f"{BASE}/yard/status" and m.payload == "online" and m.retain)
        finally:
            late.close()
        stats = subscriber.wait_for(lambda m: m.topic == f"{BASE}/garden/stats")[-1].json()
        assert stats["frames"] > 0 and stats["backend"] == "cpu"
        # The yard's camera goes away: its entities go unavailable; the garden goes on.
        yard.stop()
        went = subscriber.wait_for(lambda m: m.topic == f"{BASE}/yard/status" and m.payload == "offline", timeout=30)
        during = len(subscriber.on(f"{BASE}/garden/stats"))
        subscriber.wait_for(lambda m: m.topic == f"{BASE}/garden/stats" and m.at > went[0].at + 1.5)
        assert len(subscriber.on(f"{BASE}/garden/stats")) > during
        yard.start()
        subscriber.wait_for(lambda m: m.topic == f"{BASE}/yard/status" and m.payload == "online" and m.at > went[0].at,
                            timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        yard.stop()
    assert process.returncode == 0, stderr
    subscriber.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == "stopped")

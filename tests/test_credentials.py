"""Secrets read from files: systemd's credentials directory, loose permissions, a stream's password file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import LiveRun, side_by_side
from mjpeg import MjpegServer

from edge_infer.errors import ConfigError
from edge_infer.outputs.mqtt import MqttConfig
from edge_infer.outputs.mqtt.client import make_client
from edge_infer.security.credentials import read_secret, url_with_password

PASSWORD = "p@ss:w/rd%"  # every character that means something in a URL


def test_a_credential_is_read_from_systemds_directory(tmp_path: Path):
    (tmp_path / "mqtt").write_text("s3cret\n")
    (tmp_path / "mqtt").chmod(0o600)
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert read_secret("${CREDENTIALS_DIRECTORY}/mqtt", "mqtt.password_file", environ) == "s3cret"
    assert read_secret("$CREDENTIALS_DIRECTORY/mqtt", "mqtt.password_file", environ) == "s3cret"
    with pytest.raises(ConfigError, match="names systemd's credentials directory, and there is none: run it as "
                                          "the service with LoadCredential="):
        read_secret("${CREDENTIALS_DIRECTORY}/mqtt", "mqtt.password_file", {})
    with pytest.raises(ConfigError, match="^mqtt.password_file: cannot read '.*nothing': No such file"):
        read_secret(str(tmp_path / "nothing"), "mqtt.password_file", {})


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o640, False), (0o644, True), (0o604, True)])
def test_a_secret_others_can_read_is_warned_about(tmp_path: Path, caplog, mode: int, warned: bool):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(mode)  # the file's group is this process's own: 0640 is how the service reads it
    with caplog.at_level(logging.WARNING):
        assert read_secret(str(secret), "web.credentials_file") == "s3cret"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warnings) == warned, warnings
    if warned:
        assert warnings[0].startswith(f"web.credentials_file: {secret} can be read by every user of this machine")
        assert "s3cret" not in warnings[0]


def test_a_password_without_tls_to_another_machine_is_warned_about(caplog, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "s3cret")
    with caplog.at_level(logging.WARNING):
        for host, tls in (("127.0.0.1", False), ("localhost", False), ("::1", False), ("broker.lan", True)):
            make_client(MqttConfig(host=host, username="edge", password_env="TEST_MQTT_PASSWORD", tls=tls), "t")
        assert not caplog.records
        make_client(MqttConfig(host="192.168.1.5", username="edge", password_env="TEST_MQTT_PASSWORD"), "t")
    assert [r.getMessage() for r in caplog.records] == [
        "mqtt: the password goes to 192.168.1.5 unencrypted: set mqtt.tls: true (and the broker's TLS listener, "
        "usually port 8883)"]


def test_the_password_goes_into_the_urls_user_information():
    assert url_with_password("rtsp://admin@cam:554/s?x=1", PASSWORD, "k") == \
        "rtsp://admin:p%40ss%3Aw%2Frd%25@cam:554/s?x=1"
    with pytest.raises(ConfigError, match="names no user"):
        url_with_password("rtsp://cam/s", PASSWORD, "k")
    with pytest.raises(ConfigError, match="has a password in it already"):
        url_with_password("rtsp://admin:old@cam/s", PASSWORD, "k")


def test_a_stream_password_from_systemds_credentials_opens_the_camera(models: Path, images: Path, tmp_path: Path):
    """A camera that asks for basic auth, its password in LoadCredential='s directory, not in the config."""
    camera = MjpegServer(side_by_side(images, "bird.bmp", "parrot.jpg"), fps=15, credentials=f"viewer:{PASSWORD}")
    camera.start()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "porch").write_text(PASSWORD + "\n")
    (credentials / "porch").chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model: {{path: {models / "mobilenet_v1_0.25_128_quant.tflite"}, num_threads: 1}}
cameras:
  porch:
    source:
      type: opencv
      device: "{camera.url.replace("http://", "http://viewer@")}"
      password_file: "${{CREDENTIALS_DIRECTORY}}/porch"
    regions:
      perch: {{box: [0.5, 0, 0.5, 1]}}
run: {{max_frames: 3}}
""")
    run = LiveRun(config, tmp_path, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    try:
        stderr = run.finished(60)
    finally:
        camera.stop()
    assert run.process.returncode == 0, stderr
    assert [r["top"][0]["label"] for r in run.results] == ["macaw"] * 3
    assert PASSWORD not in stderr and "p%40ss" not in stderr


def test_a_password_file_for_a_camera_that_is_not_a_stream_is_refused(tmp_path: Path):
    from edge_infer.sources.opencv import OpenCVConfig, OpenCVSource

    (tmp_path / "pw").write_text("x")
    with pytest.raises(ConfigError, match="only a stream's URL takes a password"):
        OpenCVSource(OpenCVConfig(device=0, password_file=str(tmp_path / "pw")))

"""A stream's password never leaves memory: not in a log line, an error, a status, a payload or doctor's report."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from broker import Subscriber
from conftest import LiveRun, side_by_side
from mjpeg import MjpegServer

from edge_infer.security.redact import redact
from edge_infer.service.doctor.report import Check

PASSWORD = "S3cr3t-pw"
V1 = "mobilenet_v1_0.25_128_quant.tflite"


@pytest.mark.parametrize(("text", "shown"), [
    ("rtsp://admin:pw@192.168.1.20:554/stream1", "rtsp://***@192.168.1.20:554/stream1"),
    ("cannot open stream http://u:p@ss#x@cam/v.mjpg: check", "cannot open stream http://***@cam/v.mjpg: check"),
    ("rtsp://token@cam/ and rtsps://a:b@cam2", "rtsp://***@cam/ and rtsps://***@cam2"),
    ("http://cam/path@2x.jpg", "http://cam/path@2x.jpg"),  # an @ in the path is not user information
    ("/dev/video0 and mail@example.org", "/dev/video0 and mail@example.org"),
])
def test_user_information_is_removed_from_urls(text: str, shown: str):
    assert redact(text) == shown


def test_doctor_never_shows_a_url_password():
    check = Check("camera", "fail", f"cannot open stream rtsp://cam:{PASSWORD}@cam.local/s",
                  fix=f"check rtsp://cam:{PASSWORD}@cam.local/s")
    assert PASSWORD not in json.dumps(check.as_json()) and "rtsp://***@cam.local/s" in check.detail


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_stream_password_is_in_no_log_line_status_or_payload(models: Path, images: Path, tmp_path: Path, broker):
    """A camera that streams and one that cannot be opened, both with a password in their URLs, through every
    output: stdout, MQTT with Home Assistant discovery, and the live page's status, metrics and page."""
    camera = MjpegServer(side_by_side(images, "bird.bmp", "parrot.jpg"), fps=15)
    camera.start()
    web_port = free_port()
    working = camera.url.replace("http://", f"http://viewer:{PASSWORD}@")
    missing = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/stream1"
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model: {{path: {models / V1}, num_threads: 1}}
cameras:
  porch:
    source: {{type: opencv, device: "{working}"}}
    regions:
      door: {{box: [0, 0, 0.5, 1]}}
  gate:
    source: {{type: opencv, device: "{missing}"}}
outputs: [stdout, mqtt, web]
mqtt: {{host: 127.0.0.1, port: {broker.port}, device: yard}}
web: {{host: 127.0.0.1, port: {web_port}}}
log_level: debug
""")
    subscriber = Subscriber(broker.port)
    run = LiveRun(config, tmp_path)
    try:
        run.wait_for("region", "door")
        subscriber.wait_for(lambda m: m.topic.endswith("/stats"))
        pages = [urllib.request.urlopen(f"http://127.0.0.1:{web_port}{path}", timeout=10).read().decode()
                 for path in ("/api/status", "/metrics", "/")]
    finally:
        stderr = run.stop()
        camera.stop()
        subscriber.close()
    said = [stderr, json.dumps(run.results), *pages, *(m.topic + m.payload for m in subscriber.messages)]
    assert not [text for text in said if PASSWORD in text or "viewer:" in text or "admin:" in text]
    assert f"opencv stream {working.replace(f'viewer:{PASSWORD}', '***')}" in stderr  # named, without the secret
    assert "rtsp://***@127.0.0.1" in stderr  # the camera that cannot be opened is reported, without it too


def test_the_journal_gets_priorities_and_no_password(models: Path, tmp_path: Path):
    """Under systemd, stderr is the journal's stream (JOURNAL_STREAM names its device and inode): each line starts
    with its syslog priority, so `journalctl -p warning` filters; elsewhere lines stay `edge-infer: error: ...`."""
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/stream1"
    for journal in (True, False):
        log = tmp_path / f"stderr-{journal}"
        with log.open("w") as stderr:
            status = os.fstat(stderr.fileno())
            env = {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino + (0 if journal else 1)}"}
            done = subprocess.run([sys.executable, "-m", "edge_infer", "run", "--source", url, "--model",
                                   str(models / V1)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                  stderr=stderr, stdin=subprocess.DEVNULL, timeout=60)
        lines = log.read_text().splitlines()
        assert done.returncode != 0 and lines and PASSWORD not in log.read_text()
        assert "rtsp://***@127.0.0.1" in log.read_text()  # the camera that cannot be opened is named, without it
        if journal:
            assert all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines), lines
            assert any(line.startswith("<3>") for line in lines) and "edge-infer:" not in lines[-1]
        else:
            assert lines[-1].startswith("edge-infer: error: ")


def test_warnings_and_info_get_their_own_priorities(tmp_path: Path):
    import logging

    from edge_infer.cli import configure_logging

    log = tmp_path / "stderr"
    with log.open("w") as stderr:
        status = os.fstat(stderr.fileno())
        configure_logging({"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}, stderr)
        logger = logging.getLogger("edge_infer.test")
        logger.warning("camera porch: lost http://u:%s@cam/s", PASSWORD)
        logger.info("two\nlines")
        logger.error("gone")
    configure_logging()
    assert log.read_text().splitlines() == ["<4>camera porch: lost http://***@cam/s", "<6>two", "<6>lines", "<3>gone"]

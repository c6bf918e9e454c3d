"""Live sources that fail come back without ending the run: a real MJPEG stream over HTTP, served on
loopback by the test, stopped mid-run and started again; and the reconnect logic with scripted faults."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import NotifySocket
from mjpeg import MjpegServer

from edge_infer.errors import SourceError
from edge_infer.sources import reconnect
from edge_infer.sources.base import SourceHints
from edge_infer.sources.reconnect import ReconnectingSource
from edge_infer.values import Frame


class Lines:
    """Collects a process's output lines as they come."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        threading.Thread(target=lambda: [self.lines.append(line) for line in stream], daemon=True).start()

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.lines):
                return True
            time.sleep(0.05)
        return False


@pytest.fixture
def stream(images: Path):
    server = MjpegServer(images / "parrot.jpg")
    server.start()
    yield server
    server.stop()


def start_run(url: str, models: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge_infer", "run", "--source", url, "--model",
                             str(models / "mobilenet_v1_0.25_128_quant.tflite"), "--top-k", "1"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})


def test_a_stream_that_goes_away_and_comes_back_resumes_without_ending_the_run(stream, models, tmp_path):
    process = start_run(stream.url, models, tmp_path)
    out, err = Lines(process.stdout), Lines(process.stderr)
    try:
        assert out.wait_for(lambda lines: len(lines) >= 3, 60), "".join(err.lines)
        stream.stop()
        assert err.wait_for(lambda lines: any("source lost: " in line for line in lines), 20), "".join(err.lines)
        time.sleep(3)  # several reconnect attempts fail meanwhile
        before = len(out.lines)
        stream.start()
        assert out.wait_for(lambda lines: len(lines) > before + 2, 40), "".join(err.lines)
        assert process.poll() is None  # the run never ended
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    assert process.returncode == 0
    results = [json.loads(line) for line in out.lines]
    assert {r["top"][0]["label"] for r in results} == {"macaw"}
    frames = [r["frame"] for r in results]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)  # numbered across the outage
    log = "".join(err.lines)
    assert log.count("source lost: ") == 1 and log.count(" is back after ") == 1  # once each, not once per retry
    assert "1 source outage(s)" in log  # the final summary counts it


def test_a_stream_that_never_comes_back_retries_until_sigterm(stream, models, tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    process = start_run(stream.url, models, tmp_path, {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    out, err = Lines(process.stdout), Lines(process.stderr)
    assert out.wait_for(lambda lines: len(lines) >= 2, 60), "".join(err.lines)
    stream.stop()
    assert err.wait_for(lambda lines: any("source lost: " in line for line in lines), 20), "".join(err.lines)
    lost_at = time.monotonic()
    notify.drain(4.0)  # retries at 1, 2 (and 4) s
    assert process.poll() is None
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(15)
    assert process.returncode == 0 and time.monotonic() - sent < 3
    # systemd's watchdog is fed while the run waits for its source: no restart for an outage.
    pings = [at for at, message in notify.messages if message == "WATCHDOG=1" and at > lost_at + 0.5]
    assert len(pings) >= 4
    assert "".join(err.lines).count("source lost: ") == 1


def test_the_stats_carry_the_source_health(stream, models):
    from edge_infer.config import Config
    from edge_infer.pipeline.classifier import ModelConfig
    from edge_infer.run import open_run
    from edge_infer.schema import Origin
    from edge_infer.sources.registry import build_source_spec

    config = Config(model=ModelConfig(path=str(models / "mobilenet_v1_0.25_128_quant.tflite")),
                    source=build_source_spec({"type": "opencv", "device": stream.url}, Origin(), ("source",)))
    with open_run(config, outputs=[], environ={}) as run:
        assert isinstance(run.source, ReconnectingSource)  # a stream is live: it reconnects
        snapshot = run.status().to_json_dict()
    assert snapshot["source"] == {"state": "streaming", "outages": 0, "outage_s": 0.0,
                                  "since_s": snapshot["source"]["since_s"]}


# --- the reconnect logic, with scripted faults -----------------------------------------------------

HINTS = SourceHints(128, 128, "center")


class ScriptedCamera:
    """Delivers `frames` frames and then fails, like a camera pulled out of its socket. Like a Pi camera's lores
    stream, it serves models up to the `hints` it was opened for."""

    live = True
    description = "scripted camera"

    def __init__(self, frames: int, hints: SourceHints = HINTS) -> None:
        self.frames, self.sent, self.skipped, self.closed = frames, 0, 1, False
        self.hints = hints

    def retarget(self, hints: SourceHints) -> bool:
        return hints.width <= self.hints.width and hints.height <= self.hints.height

    def read(self) -> Frame | None:
        if self.sent == self.frames:
            raise SourceError("scripted camera stopped delivering frames")
        self.sent += 1
        return Frame(self.sent, np.zeros((2, 2, 3), np.uint8), 0.0)

    def close(self) -> None:
        self.closed = True


def test_a_lost_camera_is_reopened_with_backoff(monkeypatch, caplog):
    monkeypatch.setattr(reconnect, "FIRST_RETRY_S", 0.05)
    cameras = [ScriptedCamera(2)]
    attempts: list[float] = []

    def reopen(hints: SourceHints) -> ScriptedCamera:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            raise SourceError("no such device")
        cameras.append(ScriptedCamera(3))
        return cameras[-1]

    stop = threading.Event()
    source = ReconnectingSource(cameras[0], reopen, stop, hints=HINTS)
    with caplog.at_level(logging.DEBUG, logger="edge_infer.sources.reconnect"):
        seqs = [source.read().seq for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]  # numbered across the outage
    assert cameras[0].closed and len(attempts) == 4
    gaps = np.diff(attempts)
    assert all(later > earlier * 1.5 for earlier, later in zip(gaps, gaps[1:], strict=False))  # backing off
    health = source.health()
    assert health.state == "streaming" and health.outages == 1 and health.outage_s > 0
    assert source.skipped == 2  # the lost camera's and the new one's
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and warnings[0].startswith("source lost: scripted camera stopped")
    assert "is back after" in warnings[1]


def test_stop_ends_the_wait_for_a_source_that_does_not_come_back(monkeypatch):
    monkeypatch.setattr(reconnect, "FIRST_RETRY_S", 0.05)

    def reopen(hints: SourceHints) -> ScriptedCamera:
        raise SourceError("no such device")

    stop = threading.Event()
    source = ReconnectingSource(ScriptedCamera(0), reopen, stop, hints=HINTS)
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - started < 2.0
    assert source.reconnecting and source.health().state == "reconnecting"


def test_a_source_that_cannot_serve_a_larger_model_is_opened_again_for_it(caplog):
    cameras = [ScriptedCamera(10)]

    def reopen(hints: SourceHints) -> ScriptedCamera:
        cameras.append(ScriptedCamera(10, hints))
        return cameras[-1]

    source = ReconnectingSource(cameras[0], reopen, threading.Event(), hints=HINTS)
    assert [source.read().seq for _ in range(2)] == [1, 2]
    assert source.retarget(SourceHints(96, 96, "center")) and source.read().seq == 3  # smaller: served as it is
    assert len(cameras) == 1
    with caplog.at_level(logging.INFO, logger="edge_infer.sources.reconnect"):
        assert source.retarget(SourceHints(224, 224, "center"))
        assert [source.read().seq for _ in range(2)] == [4, 5]  # numbered on
    assert len(cameras) == 2 and cameras[0].closed and cameras[1].hints == SourceHints(224, 224, "center")
    assert cameras[1].sent == 2 and source.skipped == 2
    assert source.health().outages == 0 and not source.reconnecting  # a model's change, not an outage
    assert "scripted camera: opening it again for the model's 224x224 input" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_source_that_fails_to_open_again_for_a_larger_model_is_lost_and_retried(monkeypatch, caplog):
    monkeypatch.setattr(reconnect, "FIRST_RETRY_S", 0.05)
    attempts: list[SourceHints] = []

    def reopen(hints: SourceHints) -> ScriptedCamera:
        attempts.append(hints)
        if len(attempts) == 1:
            raise SourceError("Device or resource busy")
        return ScriptedCamera(10, hints)

    source = ReconnectingSource(ScriptedCamera(10), reopen, threading.Event(), hints=HINTS)
    source.read()
    source.retarget(SourceHints(224, 224, "center"))
    assert source.read().seq == 2
    assert attempts == [SourceHints(224, 224, "center")] * 2  # retried for the new model too
    assert source.health().outages == 1
    assert "source lost: Device or resource busy" in caplog.text

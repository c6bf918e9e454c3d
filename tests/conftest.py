"""Shared test fixtures: the real models and images in ../shared, and the real CLI in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.sources.base import Source

REPO = Path(__file__).resolve().parent.parent


def filled(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` scaled to cover width x height, the overflow cut evenly (as crop: center does)."""
    scale = max(width / image.shape[1], height / image.shape[0])
    scaled = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                        interpolation=cv2.INTER_AREA)
    top, left = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
    return scaled[top: top + height, left: left + width]


def side_by_side(images: Path, left: str, right: str, half: int = 320) -> np.ndarray:
    """A 2*half x half frame with one photo in each half: regions over each half have known labels."""
    return np.hstack([filled(cv2.imread(str(images / name)), half, half) for name in (left, right)])


def write_video(path: Path, frames: Iterable[np.ndarray], fourcc: str = "MJPG") -> Path:
    """A 10 fps video of `frames` (BGR, all of the first one's size), written by OpenCV."""
    writer = None
    for frame in frames:
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, frame.shape[1::-1])
            assert writer.isOpened()
        writer.write(frame)
    assert writer is not None, "no frames"
    writer.release()
    return path


def read_all(source: Source) -> list[np.ndarray]:
    """Every frame of a file source, copied (its buffers go back to its pool), then the source closed."""
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame.image.copy())
        frame.release()
    source.close()
    return frames


def test_data_dir() -> Path:
    return Path(os.environ.get("EDGE_INFER_TEST_DATA", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared (or $EDGE_INFER_TEST_DATA): missing data skips locally and fails under CI=true."""
    path = test_data_dir()
    if not (path / "models").is_dir() or not (path / "images").is_dir():
        message = f"test data not found at {path}: set EDGE_INFER_TEST_DATA to the folder with models/ and images/"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def need(tool: str) -> str:
    """A system tool the test needs (apt installs it in .ci/run): skips locally, fails under CI=true."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (see the README's Tests section)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def models(shared: Path) -> Path:
    return shared / "models"


@pytest.fixture(scope="session")
def images(shared: Path) -> Path:
    return shared / "images"


class ListOutput:
    """An output that keeps every result, in order."""

    name = "list"

    def __init__(self) -> None:
        self.results: list = []

    def publish(self, result) -> None:
        self.results.append(result)

    def close(self) -> None:
        pass


@dataclass
class CliResult:
    status: int
    results: list[dict]
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120,
            json_lines: bool = True) -> CliResult:
    """`python -m edge_infer ARGS` in `cwd`; with json_lines, every stdout line must be JSON (logs go to stderr)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("EDGE_INFER_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "edge_infer", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    results = [json.loads(line) for line in done.stdout.splitlines()] if json_lines else []
    return CliResult(done.returncode, results, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path: Path):
    """Runs the CLI in an empty directory, so no ./config.yaml is picked up by accident."""

    def invoke(*args: str, **kwargs) -> CliResult:
        return run_cli(*args, cwd=tmp_path, **kwargs)

    return invoke


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("edge-infer: error:")]


class NotifySocket:
    """Stands in for systemd's NOTIFY_SOCKET: a datagram socket that collects what the service says."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []

    def drain(self, seconds: float = 0.3) -> list[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                self.messages.append((time.monotonic(), self.socket.recv(4096).decode()))
        return [m for _, m in self.messages]


def python_start_up_s() -> float:
    """Twice the time a bare interpreter takes to start on this machine now: a signal sent earlier reaches
    Python's own start-up, not any code of ours, so tests of signal handling begin after it."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return 2 * (time.monotonic() - started)


class FakeClock:
    """A clock the test moves by hand (`clock.now += 1.0`), for code that takes a clock."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def broker(tmp_path: Path):
    """A real Mosquitto on a free loopback port (tests/broker.py), stopped after the test."""
    from broker import Broker

    need("mosquitto")
    server = Broker(tmp_path)
    server.start()
    yield server
    server.stop()


class LiveRun:
    """`edge-infer run --config CONFIG` in the background; its results and its stderr collected as they come
    (by threads of their own, so neither pipe fills up and stalls the run)."""

    def __init__(self, config: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "edge_infer", "run", "--config", str(config)],
                                        cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.results: list[dict] = []
        self._stderr: list[str] = []
        stdout, stderr = self.process.stdout, self.process.stderr
        assert stdout is not None and stderr is not None
        self._readers = [threading.Thread(target=lambda: [self.results.append(json.loads(line)) for line in stdout]),
                         threading.Thread(target=lambda: self._stderr.extend(stderr))]
        for reader in self._readers:
            reader.start()

    def wait_for(self, key: str, value: str, timeout: float = 30) -> None:
        """Until the newest result's `key` is `value`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.results and self.results[-1][key] == value:
                return
            time.sleep(0.05)
        raise AssertionError(f"no results with {key} {value}; last: {self.results[-1] if self.results else None}")

    def finished(self, timeout: float = 15) -> str:
        """Its stderr, once it has exited by itself."""
        self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return "".join(self._stderr)

    def stop(self) -> str:
        """SIGTERM, then its stderr once it has exited."""
        self.process.send_signal(signal.SIGTERM)
        return self.finished()

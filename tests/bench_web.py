"""What the live view costs the pipeline: FPS with one viewer watching /stream.mjpg against nobody watching,
in one `edge-infer run` (outputs: [web]) on a looping 640x480 video, in alternating windows, so a busy
neighbour on a shared machine moves both alike. Not collected by pytest (no test_ prefix).

    .venv/bin/python tests/bench_web.py                     # defaults: V2 1.0 224, max_fps 10, width 640
    .venv/bin/python tests/bench_web.py --max-fps 30 --rounds 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_infer.service.board import board_model  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_video(path: Path, photo: Path, frames: int = 120) -> None:
    """A 640x480 camera-like clip: the photo panning slowly, so every frame (and its JPEG) differs."""
    image = cv2.imread(str(photo))
    image = cv2.resize(image, (800, int(image.shape[0] * 800 / image.shape[1])))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for n in range(frames):
        x, y = n % 160, (n * 2) % max(1, image.shape[0] - 480)
        writer.write(np.ascontiguousarray(image[y:y + 480, x:x + 640]))
    writer.release()


def status(url: str) -> dict:
    with urllib.request.urlopen(url + "/api/status", timeout=10) as response:
        return json.loads(response.read())


def fps(a: dict, b: dict) -> float:
    return (b["stats"]["frames"] - a["stats"]["frames"]) / (b["stats"]["uptime_s"] - a["stats"]["uptime_s"])


class Viewer:
    """Reads /stream.mjpg as fast as it comes, in its own thread; counts the JPEGs."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.socket.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.file = self.socket.makefile("rb")
        self.frames = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while not self.stop.is_set():
                line = self.file.readline()
                if not line:
                    return
                if line.startswith(b"Content-Length:"):
                    length = int(line.split(b":")[1])
                    self.file.readline()
                    self.file.read(length)
                    self.frames += 1
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()
        self.thread.join(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(os.environ.get("EDGE_INFER_TEST_DATA", REPO.parent / "shared"))
    parser.add_argument("--model", default=str(data / "models" / "mobilenet_v2_1.0_224_quant.tflite"))
    parser.add_argument("--photo", default=str(data / "images" / "parrot.jpg"))
    parser.add_argument("--rounds", type=int, default=6, help="alternating pairs of windows")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each window")
    parser.add_argument("--max-fps", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: all cores)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        write_video(video, Path(args.photo))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        threads = f"\n  num_threads: {args.threads}" if args.threads else ""
        config = Path(tmp) / "config.yaml"
        config.write_text(f"outputs: [web]\nmodel:\n  path: {args.model}{threads}\n"
                          f"source:\n  type: opencv\n  device: {video}\n  loop: true\n"
                          f"web:\n  port: {port}\n  max_fps: {args.max_fps}\n  width: {args.width}\n")
        process = subprocess.Popen([sys.executable, "-m", "edge_infer", "run", "--config", str(config)], cwd=tmp,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if status(url)["result"] is not None:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"edge-infer did not start: {process.stderr.read() if process.stderr else ''}")
                time.sleep(0.2)
            time.sleep(2)  # warm up
            rates: dict[str, list[float]] = {"off": [], "one viewer": []}
            received: list[float] = []
            for _ in range(args.rounds):
                for kind in rates:
                    viewer = Viewer(port) if kind == "one viewer" else None
                    time.sleep(0.5)
                    start, seen = status(url), viewer.frames if viewer else 0
                    time.sleep(args.seconds)
                    end = status(url)
                    rates[kind].append(fps(start, end))
                    if viewer is not None:
                        seconds = end["stats"]["uptime_s"] - start["stats"]["uptime_s"]
                        received.append((viewer.frames - seen) / seconds)
                        viewer.close()
            model = end["model"]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(15)

    off, on = statistics.median(rates["off"]), statistics.median(rates["one viewer"])
    print(f"machine: {board_model()}, {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}, OpenCV {cv2.__version__}")
    print(f"model {model}, 640x480 video looped, web max_fps {args.max_fps:g}, width {args.width}, "
          f"{args.rounds} x {args.seconds:g} s windows each, alternating")
    print(f"pipeline FPS, nobody watching: median {off:.1f}  ({', '.join(f'{r:.0f}' for r in rates['off'])})")
    print(f"pipeline FPS, one viewer:      median {on:.1f}  ({', '.join(f'{r:.0f}' for r in rates['one viewer'])})")
    print(f"stream frames per second the viewer received: median {statistics.median(received):.1f}")
    print(f"ratio (one viewer / nobody): {on / off:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

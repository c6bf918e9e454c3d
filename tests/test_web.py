"""The live view (outputs: [web]) against a real `edge-infer run` subprocess: a real browser (headless Chromium)
on the page, MJPEG clients on the stream, Prometheus's own parser on /metrics, and the bad input it refuses."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from broker import Broker, free_port
from conftest import REPO, FakeClock, error_lines, need, side_by_side

from edge_infer.outputs.base import OutputContext
from edge_infer.outputs.web import BOUNDARY, FrameGrabber, Histogram, JpegHub, WebConfig, WebOutput, render_metrics
from edge_infer.values import BoardHealth, Class, Classification, Frame, FrameCounts, RunStatus, SourceHealth, Timing

CONTEXT = OutputContext(lambda: RunStatus("m", "cpu"))  # an output's run: model m on the CPU

MODEL = "mobilenet_v1_0.25_128_quant.tflite"
GOLDEN = "macaw"  # parrot.jpg with MobileNet V1 0.25 128
PARROT_SIZE = (256, 465)  # parrot.jpg (512x929) as the images source decodes it for a 128 px model (JPEG at 1/2)


# --- a real run --------------------------------------------------------------------------------

class LiveRun:
    """`edge-infer run` with outputs: [web] on a looping image directory, in a subprocess."""

    def __init__(self, tmp: Path, models: Path, images: Path | None, web: str = "", outputs: str = "[web]",
                 extra: str = "", threads: int = 1, model: str = MODEL, env: dict[str, str] | None = None) -> None:
        """`images`: a looping images source; None: `extra` holds the sources (a `cameras:` section)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "config.yaml"
        source = f"source:\n  type: images\n  path: {images}\n  loop: true\n" if images is not None else ""
        config.write_text(f"outputs: {outputs}\nmodel:\n  num_threads: {threads}\n{source}"
                          f"web:\n  port: {self.port}\n{web}\n{extra}")
        self.stderr_path = tmp / "stderr.txt"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_infer", "run", "--config", str(config), "--model", str(models / model)],
            cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr_path.open("w"),
            env={**{k: v for k, v in os.environ.items() if k != "EDGE_INFER_CONFIG"}, **(env or {})})
        self.headers: dict[str, str] = {}

    def wait_ready(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.stderr()
            try:
                status = self.status()
                if status["result"] is not None:
                    return status
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"no result within {timeout} s: {self.stderr()}")

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url + path, headers={**self.headers, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def status(self) -> dict:
        code, _, body = self.get("/api/status")
        assert code == 200, code
        return json.loads(body)

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> float:
        """SIGTERM; returns how long the process took to exit, which must be cleanly."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(15)
        took = time.monotonic() - sent
        assert self.process.returncode == 0, self.stderr()
        assert "Traceback" not in self.stderr()
        return took


def image_dir(tmp: Path, images: Path, name: str = "parrot.jpg") -> Path:
    folder = tmp / "images"  # its own folder: a screenshot saved beside it would be classified too
    folder.mkdir()
    shutil.copy(images / name, folder / name)
    return folder


def running(run: LiveRun) -> Iterator[LiveRun]:
    """A module's shared run: ready when yielded, killed after the module's tests if still running."""
    try:
        run.wait_ready()
        yield run
    finally:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait(10)


@pytest.fixture(scope="module")
def live(tmp_path_factory, models: Path, images: Path) -> Iterator[LiveRun]:
    """One run shared by the tests that only watch it; max_fps 5 and width 256, to check both."""
    tmp = tmp_path_factory.mktemp("live")
    yield from running(LiveRun(tmp, models, image_dir(tmp, images), web="  max_fps: 5\n  width: 256"))


class MjpegClient:
    """Reads /stream.mjpg part by part over a plain socket, as a browser does (or stops reading, as a stalled one)."""

    def __init__(self, port: int, path: str = "/stream.mjpg", receive_buffer: int | None = None,
                 authorization: str | None = None) -> None:
        self.socket = socket.socket()
        if receive_buffer is not None:  # before connecting, so the TCP window stays small
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.socket.settimeout(10)
        self.socket.connect(("127.0.0.1", port))
        auth = f"Authorization: {authorization}\r\n" if authorization else ""
        self.socket.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
        self.file = self.socket.makefile("rb")
        self.status_line = self.file.readline().decode().strip()
        self.headers = self._headers()

    def _headers(self) -> dict[str, str]:
        headers = {}
        while (line := self.file.readline().decode().strip()) != "":
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        return headers

    def next_jpeg(self) -> bytes:
        while (line := self.file.readline()) != f"--{BOUNDARY}\r\n".encode():
            assert line, "the stream ended"
        part = self._headers()
        assert part["content-type"] == "image/jpeg"
        data = self.file.read(int(part["content-length"]))
        assert self.file.read(2) == b"\r\n"
        return data

    def close(self) -> None:
        self.file.close()
        self.socket.close()


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


# --- a real browser ----------------------------------------------------------------------------

def chromium(*args: str, user_data: Path, window: str = "412,915") -> subprocess.CompletedProcess:
    browser = need("chromium")
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={user_data}", f"--window-size={window}", "--virtual-time-budget=5000",
                           *args], capture_output=True, text=True, timeout=120)


def test_the_page_in_a_real_browser_shows_the_label_and_the_live_picture(live: LiveRun, tmp_path: Path):
    dom = chromium("--dump-dom", live.url + "/", user_data=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # Filled in by the page's script from /api/status (the HTML itself says "–").
    assert f'<span id="label">{GOLDEN}</span>' in dom.stdout
    assert '<dd id="model">mobilenet_v1_0.25_128_quant</dd>' in dom.stdout
    assert '<dd id="backend">cpu</dd>' in dom.stdout
    assert '<span id="state" class="pill ok">live</span>' in dom.stdout
    assert 'name="viewport"' in dom.stdout  # laid out for a phone, not zoomed out

    shot = tmp_path / "phone.png"
    done = chromium(f"--screenshot={shot}", live.url + "/", user_data=tmp_path / "profile")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    picture = cv2.imread(str(shot))
    assert picture.shape[:2] == (915, 412)
    # The picture area (below the header, inside the margins): the parrot, not the black placeholder.
    region = picture[80:480, 60:350]
    assert float(region.std()) > 30, region.std()
    assert len(np.unique(region.reshape(-1, 3) // 32, axis=0)) > 40  # many colours: a photo, not a flat box
    if os.environ.get("EDGE_INFER_UPDATE_DOCS") == "1":  # the README's screenshot, on request only
        docs = tmp_path / "web.png"
        done = chromium(f"--screenshot={docs}", live.url + "/", user_data=tmp_path / "profile", window="1000,720")
        assert docs.stat().st_size < 300_000
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(docs, REPO / "docs" / "web.png")


# --- the stream, the snapshot, the status --------------------------------------------------------

def test_two_viewers_get_jpeg_parts_at_the_capped_rate_and_size(live: LiveRun):
    first, second = MjpegClient(live.port), MjpegClient(live.port)
    try:
        assert first.status_line.endswith("200 OK")
        assert first.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        started = time.monotonic()
        frames = [[decode(first.next_jpeg()), decode(second.next_jpeg())] for _ in range(8)]
        elapsed = time.monotonic() - started
        assert live.status()["viewers"] == 2
    finally:
        first.close()
        second.close()
    for pair in frames:
        for image in pair:
            assert (image.shape[1], image.shape[0]) == PARROT_SIZE  # width 256: the frame's own, not scaled up
    # max_fps 5: 8 frames each take at least 7 intervals (one may be waiting already).
    assert elapsed > 7 / 5 * 0.8, elapsed
    # The label is drawn on the picture: the top-left corner is the dark caption box with white text.
    corner = frames[-1][0][:20, :60]
    assert corner.max() > 200 and np.median(corner) < 60


def wait_for_viewers(live: LiveRun, count: int, timeout: float = 2.0) -> float:
    """Seconds until /api/status counts `count` viewers."""
    started = time.monotonic()
    while live.status()["viewers"] != count:
        assert time.monotonic() - started < timeout, f"not {count} viewers after {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_closed_viewer_ends_its_thread(live: LiveRun):
    wait_for_viewers(live, 0)
    viewer = MjpegClient(live.port)
    viewer.next_jpeg()
    assert live.status()["viewers"] == 1
    viewer.close()
    assert wait_for_viewers(live, 0) < 1.0  # at the next frame (5 fps) or the next second at the latest


def test_snapshot_jpg_is_the_newest_frame_at_full_size(live: LiveRun):
    code, headers, body = live.get("/snapshot.jpg")
    assert code == 200 and headers["Content-Type"] == "image/jpeg"
    image = decode(body)
    assert (image.shape[1], image.shape[0]) == PARROT_SIZE


def test_status_has_the_result_the_stats_the_model_and_the_backend(live: LiveRun):
    status = live.status()
    assert status["result"]["top"][0]["label"] == GOLDEN
    assert status["model"] == "mobilenet_v1_0.25_128_quant" and status["backend"] == "cpu"
    assert status["stats"]["frames"] > 0 and status["stats"]["fps"] > 0
    assert status["mqtt_connected"] is None  # no MQTT output in this run
    code, headers, body = live.get("/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<script src=\"app.js\"" in body and b"http" not in body.split(b"<body>")[0]  # nothing from a CDN
    for asset in ("/app.js", "/style.css"):
        assert live.get(asset)[0] == 200
    assert live.get("/nothing-here")[0] == 404


def test_metrics_parse_and_agree_with_the_status(live: LiveRun):
    from prometheus_client.parser import text_string_to_metric_families

    before = live.status()["stats"]
    time.sleep(0.6)  # the stats are shared for 0.5 s: make sure /metrics takes a newer snapshot
    code, headers, body = live.get("/metrics")
    time.sleep(0.6)
    after = live.status()["stats"]
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    kinds = {name: family.type for name, family in families.items()}
    assert kinds["edge_infer_frames"] == "counter" and kinds["edge_infer_dropped_frames"] == "counter"
    assert kinds["edge_infer_output_errors"] == "counter" and kinds["edge_infer_inference_seconds"] == "histogram"
    for gauge in ("edge_infer_fps", "edge_infer_source_up", "edge_infer_info", "edge_infer_stream_viewers"):
        assert kinds[gauge] == "gauge"
    assert "edge_infer_mqtt_connected" not in families  # no MQTT output in this run

    def value(name: str, sample: str | None = None, **labels: str) -> float:
        return next(s.value for s in families[name].samples
                    if s.name == (sample or name) and all(s.labels.get(k) == v for k, v in labels.items()))

    frames = value("edge_infer_frames", "edge_infer_frames_total")
    assert before["frames"] <= frames <= after["frames"]
    assert value("edge_infer_dropped_frames", "edge_infer_dropped_frames_total") == after["dropped_frames"] == 0
    assert value("edge_infer_source_up") == 1
    assert value("edge_infer_info", model="mobilenet_v1_0.25_128_quant", backend="cpu") == 1
    assert value("edge_infer_fps") > 0
    # Every result observed once: the histogram counts the frames (the newest may be on its way).
    count = value("edge_infer_inference_seconds", "edge_infer_inference_seconds_count")
    assert frames - 2 <= count <= after["frames"]
    buckets = [(float(s.labels["le"]), s.value) for s in families["edge_infer_inference_seconds"].samples
               if s.name.endswith("_bucket")]
    assert [b for b, _ in buckets] == sorted(b for b, _ in buckets) and buckets[-1] == (float("inf"), count)
    assert all(a <= b for (_, a), (_, b) in zip(buckets, buckets[1:], strict=False))
    total = value("edge_infer_inference_seconds", "edge_infer_inference_seconds_sum")
    p50_s = after["inference_ms"]["p50"] / 1000
    assert 0.2 * p50_s < total / count < 20 * p50_s  # the mean is of the order of the median


def read_until(viewer: MjpegClient, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            viewer.next_jpeg()
    except (OSError, ValueError, AssertionError):  # closed under it at the end of the window
        pass


def fps_between(a: dict, b: dict) -> float:
    return (b["stats"]["frames"] - a["stats"]["frames"]) / max(1e-3, b["stats"]["uptime_s"] - a["stats"]["uptime_s"])


def test_a_stalled_viewer_does_not_slow_the_pipeline(live: LiveRun):
    """FPS in alternating windows: nobody watching, a viewer that stopped reading, a viewer reading; ratios of
    medians from the same run, so a busy neighbour moves all three alike."""
    wait_for_viewers(live, 0)
    rates: dict[str, list[float]] = {"none": [], "stalled": [], "reading": []}
    for _ in range(3):
        for kind in rates:
            viewer = None
            stop = threading.Event()
            if kind == "stalled":
                viewer = MjpegClient(live.port, receive_buffer=4096)  # connected, reads nothing more
            elif kind == "reading":
                viewer = MjpegClient(live.port)
                threading.Thread(target=read_until, args=(viewer, stop), daemon=True).start()
            time.sleep(0.6)  # past the 0.5 s the stats are shared for
            start = live.status()
            time.sleep(2.0)
            rates[kind].append(fps_between(start, live.status()))
            stop.set()
            if viewer is not None:
                viewer.socket.shutdown(socket.SHUT_RDWR)
                viewer.close()
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    print("fps medians:", medians)
    assert medians["none"] > 0
    assert medians["stalled"] / medians["none"] > 0.75, rates
    assert medians["reading"] / medians["none"] > 0.6, rates  # 5 fps of 256 px JPEGs: a few ms a second


def test_a_stalled_viewer_does_not_grow_memory_or_hold_up_the_others(tmp_path: Path, models: Path, images: Path):
    """Large frames (1536x2787 px, 95 % JPEGs of ~1 MB at up to 30 fps): had the stream queued frames for a viewer
    that stopped reading, 10 s of them would be well over 100 MB, and the floor of the process's RSS would rise
    with them. The decoded frames (13 MB each) come and go: a few are alive at any moment, and glibc keeps freed
    ones in its per-thread arenas once its dynamic mmap threshold has risen to their size (mallopt(3),
    M_MMAP_THRESHOLD). So the threshold is fixed below their size, which makes RSS follow what is alive, and the
    floor (the least RSS over 2 s of samples) is compared, early against late."""
    folder = tmp_path / "big"
    folder.mkdir()
    parrot = cv2.imread(str(images / "parrot.jpg"))
    cv2.imwrite(str(folder / "parrot.png"), cv2.resize(parrot, (1536, 2787), interpolation=cv2.INTER_CUBIC))
    run = LiveRun(tmp_path, models, folder, web="  max_fps: 30\n  width: 1536\n  jpeg_quality: 95",
                  env={"MALLOC_MMAP_THRESHOLD_": str(1 << 20)})
    stalled = reading = None
    try:
        run.wait_ready()
        stalled = MjpegClient(run.port, receive_buffer=4096)
        reading = MjpegClient(run.port)
        sizes = [len(reading.next_jpeg()) for _ in range(5)]
        assert min(sizes) > 200_000, sizes  # the frames are as large as this test needs
        time.sleep(1.0)
        samples: list[tuple[float, int]] = []  # (seconds in, RSS)
        received, started = 0, time.monotonic()
        while time.monotonic() - started < 10:
            reading.next_jpeg()
            received += 1
            samples.append((time.monotonic() - started, run.rss_bytes()))
        assert run.status()["viewers"] == 2  # the stalled one is still connected (dropped after 20 s)
        assert received >= 10, received  # the reading viewer kept getting frames meanwhile
        early = min(rss for at, rss in samples if at < 2)
        late = min(rss for at, rss in samples if at > samples[-1][0] - 2)
        print("rss floor MB", early / 1e6, late / 1e6, "received", received, "sizes", sizes)
        assert late - early < 40e6, (early, late)
        took = run.stop()  # with both viewers still connected
        assert took < 2.0, took
    finally:
        for client in (stalled, reading):
            if client is not None:
                client.close()
        if run.process.poll() is None:
            run.process.kill()


def test_sigterm_with_a_viewer_watching_exits_promptly(tmp_path: Path, models: Path, images: Path):
    run = LiveRun(tmp_path, models, image_dir(tmp_path, images))
    viewer = None
    try:
        run.wait_ready()
        viewer = MjpegClient(run.port)
        viewer.next_jpeg()
        assert run.stop() < 2.0
    finally:
        if viewer is not None:
            viewer.close()
        if run.process.poll() is None:
            run.process.kill()


# --- basic auth ------------------------------------------------------------------------------------

def test_basic_auth_guards_every_endpoint(tmp_path: Path, models: Path, images: Path):
    credentials = tmp_path / "web-credentials"
    credentials.write_text("viewer:correct horse:battery\n")  # the password may hold a colon
    run = LiveRun(tmp_path, models, image_dir(tmp_path, images), web=f"  credentials_file: {credentials}")
    good = "Basic " + base64.b64encode(b"viewer:correct horse:battery").decode()
    wrong = "Basic " + base64.b64encode(b"viewer:correct horse").decode()
    try:
        run.headers = {"Authorization": good}
        run.wait_ready()
        for number, path in enumerate(("/", "/api/status", "/metrics", "/snapshot.jpg", "/app.js")):
            code, headers, _ = run.get(path, headers={"Authorization": ""})
            assert code == 401 and headers["WWW-Authenticate"].startswith('Basic realm="edge-infer"'), path
            # each wrong password costs a second (below): one of each kind is enough, on paths taken in turn
            assert run.get(path, headers={"Authorization": (wrong, "Basic !!!")[number % 2]})[0] == 401, path
            assert run.get(path)[0] == 200, path
            assert run.get(path, headers={"Authorization": "basic" + good[5:]})[0] == 200, path  # any case
        started = time.monotonic()
        assert run.get("/api/status", headers={"Authorization": wrong})[0] == 401
        assert time.monotonic() - started >= 0.9  # a wrong password is answered late: guessing goes slowly
        refused = MjpegClient(run.port)
        assert refused.status_line.endswith("401 Unauthorized")
        refused.close()
        viewer = MjpegClient(run.port, authorization=good)
        assert viewer.status_line.endswith("200 OK")
        decode(viewer.next_jpeg())
        viewer.close()
        run.stop()
    finally:
        if run.process.poll() is None:
            run.process.kill()
    assert "correct horse" not in run.stderr()


def raw_request(port: int, request: str) -> tuple[str, dict[str, str], bytes]:
    """One request written byte for byte (a browser would not send these Host headers); the status line,
    the headers and whatever body came before the server closed or 2 s passed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request.encode())
        connection.settimeout(2)
        data = b""
        try:
            while chunk := connection.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data and b"Content-Length: 0" in data:
                    break
        except TimeoutError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return status, {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


def test_only_this_machines_names_and_addresses_are_served(tmp_path: Path, models: Path, images: Path):
    """DNS rebinding: a page on evil.example rebinds its name to 127.0.0.1 and reads the status with the
    browser's Host: evil.example. Names of this machine, IP addresses and web.allowed_hosts are served."""
    run = LiveRun(tmp_path, models, image_dir(tmp_path, images), web="  allowed_hosts: [cams.example.org]")
    try:
        run.wait_ready()
        for host in ("evil.example", f"evil.example:{run.port}", "127.0.0.1.evil.example", "localhost.evil"):
            status, _, body = raw_request(run.port, f"GET /api/status HTTP/1.1\r\nHost: {host}\r\n\r\n")
            assert status.endswith("421 Misdirected Request") and b"web.allowed_hosts" in body, host
            assert b"result" not in body
        for host in (f"127.0.0.1:{run.port}", "localhost", f"[::1]:{run.port}", "192.168.1.20:8080",
                     socket.gethostname(), "CAMS.example.org"):
            status, _, body = raw_request(run.port, f"GET /api/status HTTP/1.1\r\nHost: {host}\r\n"
                                                    "Connection: close\r\n\r\n")
            assert status.endswith("200 OK") and json.loads(body)["result"] is not None, host
    finally:
        run.stop()


def test_a_request_trickling_in_is_cut_off_and_the_page_stays_served(live: LiveRun):
    """A byte a second never trips the socket's timeout; the deadline for the whole head does."""
    from edge_infer.outputs.web.server import REQUEST_HEAD_S

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as slow:
        closed_after = None
        for byte in b"GET /api/status HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                slow.sendall(bytes([byte]))
                slow.settimeout(1.0)
                if slow.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue  # still open: the next byte
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None and REQUEST_HEAD_S - 1 <= closed_after <= REQUEST_HEAD_S + 5, closed_after
    assert live.get("/api/status")[0] == 200


def test_head_gets_the_headers_of_get_without_a_body(live: LiveRun):
    for path, kind in (("/", "text/html"), ("/api/status", "application/json"), ("/stream.mjpg", "multipart/")):
        status, headers, body = raw_request(live.port, f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                       "Connection: close\r\n\r\n")
        assert status.endswith("200 OK") and headers["content-type"].startswith(kind) and body == b"", path
    assert int(raw_request(live.port, "HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")[1]
               ["content-length"]) == len(live.get("/")[2])


def test_viewers_are_capped_and_the_page_stays_responsive_under_forty_clients(tmp_path: Path, models: Path,
                                                                               images: Path):
    run = LiveRun(tmp_path, models, image_dir(tmp_path, images), web="  max_viewers: 3")
    viewers: list[MjpegClient] = []
    stop = threading.Event()
    try:
        run.wait_ready()
        viewers = [MjpegClient(run.port) for _ in range(5)]
        assert [v.status_line.split()[1] for v in viewers] == ["200"] * 3 + ["503"] * 2
        assert "web.max_viewers" in viewers[3].file.read(int(viewers[3].headers["content-length"])).decode()
        decode(viewers[0].next_jpeg())
        viewers[0].close()  # a slot comes free
        deadline = time.monotonic() + 10
        while (late := MjpegClient(run.port)).status_line.split()[1] != "200":
            late.close()
            assert time.monotonic() < deadline, "the closed viewer's slot never came free"
            time.sleep(0.2)
        viewers.append(late)

        def hammer() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    run.get(random.choice(["/api/status", "/snapshot.jpg", "/stream.mjpg", "/"]), timeout=2)

        clients = [threading.Thread(target=hammer, daemon=True) for _ in range(40)]
        for client in clients:
            client.start()
        time.sleep(1.0)
        took = []
        for _ in range(5):
            started = time.monotonic()
            with contextlib.suppress(OSError):
                assert run.get("/api/status", timeout=5)[0] == 200
            took.append(time.monotonic() - started)
        threads = int(next(line.split()[1] for line in Path(f"/proc/{run.process.pid}/status").read_text()
                           .splitlines() if line.startswith("Threads:")))
        stop.set()
        for client in clients:
            client.join(10)
        assert statistics.median(took) < 1.0, took
        assert threads < 60, threads  # 40 clients, yet at most 32 connection threads beside the run's own
    finally:
        stop.set()
        for viewer in viewers:
            viewer.close()
        run.stop()


# --- MQTT's state in the metrics ----------------------------------------------------------------

def test_metrics_say_whether_mqtt_is_connected(tmp_path: Path, models: Path, images: Path):
    need("mosquitto")
    broker = Broker(tmp_path)
    broker.start()
    run = LiveRun(tmp_path, models, image_dir(tmp_path, images), outputs="[web, mqtt]",
                  extra=f"mqtt:\n  port: {broker.port}\n  device: webtest\n")

    def connected() -> float:
        text = run.get("/metrics")[2].decode()
        return float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("edge_infer_mqtt_connected ")))

    def wait_until_connected_is(value: float) -> None:
        deadline = time.monotonic() + 15
        while connected() != value:
            assert time.monotonic() < deadline, f"edge_infer_mqtt_connected never became {value}"
            time.sleep(0.2)

    try:
        run.wait_ready()
        wait_until_connected_is(1)
        assert run.status()["mqtt_connected"] is True
        broker.stop()
        wait_until_connected_is(0)
        assert run.status()["mqtt_connected"] is False
        run.stop()
    finally:
        broker.stop()
        if run.process.poll() is None:
            run.process.kill()


# --- bad input: exit 2, one line, before anything starts ----------------------------------------

def bad_web_config(tmp_path: Path, images: Path, web: str) -> Path:
    config = tmp_path / "bad.yaml"
    config.write_text(f"outputs: [stdout, web]\nsource:\n  type: images\n  path: {images / 'parrot.jpg'}\n"
                      f"web:\n{web}\n")
    return config


def expect_config_error(cli, config: Path, models: Path, message: str) -> None:
    done = cli("run", "--config", str(config), "--model", str(models / MODEL))
    assert done.status == 2, done.stderr
    [line] = error_lines(done.stderr)
    assert message in line, line
    assert done.results == []  # nothing classified: the run never started
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_a_config_error(cli, tmp_path: Path, models: Path, images: Path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        config = bad_web_config(tmp_path, images, f"  port: {port}")
        expect_config_error(cli, config, models, f"web.port: 127.0.0.1:{port} is already in use")
    finally:
        taken.close()


def test_an_address_this_machine_does_not_have_is_a_config_error(cli, tmp_path: Path, models: Path, images: Path):
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): only a bind is attempted, nothing is sent anywhere.
    config = bad_web_config(tmp_path, images, f"  host: 192.0.2.1\n  port: {free_port()}")
    expect_config_error(cli, config, models, "web.host: 192.0.2.1 is not an address of this machine")


@pytest.mark.parametrize("kind, message", [
    ("missing", "web.credentials_file: cannot read '{path}': No such file or directory"),
    ("directory", "web.credentials_file: cannot read '{path}': Is a directory"),
    ("no colon", "web.credentials_file: '{path}' must hold one line, user:password"),
    ("two lines", "web.credentials_file: '{path}' must hold one line, user:password"),
    ("empty password", "web.credentials_file: '{path}' has an empty password"),
    ("unreadable", "web.credentials_file: cannot read '{path}': Permission denied"),
])
def test_bad_credentials_files_are_config_errors(cli, tmp_path: Path, models: Path, images: Path, kind: str,
                                                 message: str):
    path = tmp_path / "credentials"
    if kind == "directory":
        path.mkdir()
    elif kind == "no colon":
        path.write_text("viewer\n")
    elif kind == "two lines":
        path.write_text("a:b\nc:d\n")
    elif kind == "empty password":
        path.write_text("viewer:\n")
    elif kind == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path.write_text("a:b\n")
        path.chmod(0)
    config = bad_web_config(tmp_path, images, f"  credentials_file: {path}\n  port: {free_port()}")
    expect_config_error(cli, config, models, message.format(path=path))


# --- the parts, in process -----------------------------------------------------------------------

def frame(seq: int, image: np.ndarray) -> Frame:
    return Frame(seq=seq, image=image, ts=0.0)


def test_the_grabber_copies_only_on_demand_at_the_capped_rate_into_two_reused_buffers():
    clock, demand = FakeClock(100.0), [False]
    grabber = FrameGrabber(10.0, lambda: demand[0], clock)
    image = np.zeros((48, 64, 3), np.uint8)
    for seq in range(30):  # nobody watching: nothing copied
        grabber.see_frame(frame(seq, image))
        clock.now += 1 / 30
    assert grabber.seq == 0
    demand[0] = True
    for seq in range(90):  # 3 s of a 30 fps camera under a 10 fps cap
        image[...] = seq
        grabber.see_frame(frame(seq, image))
        clock.now += 1 / 30
    assert 29 <= grabber.seq <= 31  # a schedule: 10 fps, not the 7.5 a minimum gap of 1/10 s would give
    buffers = [id(b) for b in grabber._buffers]
    taken = grabber.take(0, 0)
    assert taken is not None
    reading, _ = taken
    value = int(reading[0, 0, 0])
    for seq in range(30):  # the encoder reads: the capture thread writes only the other buffer
        image[...] = 200
        grabber.see_frame(frame(seq, image))
        clock.now += 1 / 10
    assert int(reading[0, 0, 0]) == value
    grabber.done()
    assert [id(b) for b in grabber._buffers] == buffers  # no new buffer in steady state
    assert grabber.take(grabber.seq, 0) is None  # nothing newer


def test_snapshots_asked_for_together_share_one_encode(monkeypatch: pytest.MonkeyPatch):
    from edge_infer.outputs.web import frames

    encodes = []
    monkeypatch.setattr(frames, "encode_jpeg", lambda image, quality: encodes.append(image.copy()) or b"jpeg")
    clock = FakeClock(100.0)
    view = frames.CameraView(None, {}, 10.0, 640, 80, threading.Event(), clock)
    image = np.full((48, 64, 3), 7, np.uint8)

    def frame_soon(seq: int) -> None:  # the camera delivers while the snapshots wait for a fresh frame
        time.sleep(0.2)
        view.grabber.see_frame(frame(seq, image))

    threading.Thread(target=frame_soon, args=(1,)).start()
    threads = [threading.Thread(target=lambda: view.snapshot()) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(encodes) == 1 and int(encodes[0][-1, -1, 0]) == 7
    clock.now += frames.SNAPSHOT_REUSE_S  # older than that: the next request encodes the newest frame again
    image[...] = 9
    threading.Thread(target=frame_soon, args=(2,)).start()
    assert view.snapshot() == b"jpeg" and len(encodes) == 2 and int(encodes[1][-1, -1, 0]) == 9


def test_a_slow_viewer_skips_to_the_newest_jpeg():
    hub = JpegHub()
    with hub.viewer() as seq:
        for n in range(5):
            hub.put(b"jpeg %d" % n)
        newer = hub.wait_newer(seq, 0)
        assert newer == (b"jpeg 4", 5)  # not "jpeg 0": nothing was queued for it
        assert hub.wait_newer(5, 0.01) is None
        assert hub.viewers == 1
    assert hub.viewers == 0


def test_histogram_buckets_are_upper_inclusive_and_cumulative():
    histogram = Histogram((0.001, 0.01))
    for value in (0.0005, 0.001, 0.002, 0.01, 0.5):
        histogram.observe(value)
    counts, total = histogram.snapshot()
    assert counts == [2, 4, 5] and total == pytest.approx(0.5135)


def test_metrics_carry_the_board_the_source_and_mqtt():
    from prometheus_client.parser import text_string_to_metric_families

    status = RunStatus('model "x"\\y', "cpu", FrameCounts(frames=7, dropped_frames=3, output_errors=1, fps=12.5,
                                                          uptime_s=4.2),
                       source=SourceHealth("reconnecting", 1, 2.0, 2.0),
                       board=BoardHealth(61.3, {"under_voltage": True, "throttled": False},
                                         {"under_voltage": 4, "throttled": 0}))
    text = render_metrics(status, Histogram((0.01,)), False, 2)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("edge_infer_cpu_temperature_celsius", ())] == 61.3
    assert samples[("edge_infer_throttled", (("flag", "under_voltage"),))] == 1
    assert samples[("edge_infer_throttled", (("flag", "throttled"),))] == 0
    assert samples[("edge_infer_throttle_events_total", (("condition", "under_voltage"),))] == 4
    assert samples[("edge_infer_source_up", ())] == 0
    assert samples[("edge_infer_mqtt_connected", ())] == 0
    assert samples[("edge_infer_stream_viewers", ())] == 2
    assert samples[("edge_infer_dropped_frames_total", ())] == 3
    info = next(labels for (name, labels) in samples if name == "edge_infer_info")
    assert dict(info)["model"] == 'model "x"\\y'  # escaped in the text, read back intact


def test_the_output_never_raises_into_the_capture_thread(unused_port: int, monkeypatch):
    output = WebOutput(WebConfig(port=unused_port), CONTEXT)
    try:
        def broken(_frame: Frame) -> None:
            raise MemoryError("no room for a copy")

        monkeypatch.setattr(output.grabber, "see_frame", broken)
        output.see_frame(frame(1, np.zeros((8, 8, 3), np.uint8)))
        output.see_frame(frame(2, np.zeros((8, 8, 3), np.uint8)))
        output.publish(Classification(1, 0.0, "m", "cpu", (Class(1, "cat", 0.9),), Timing(0.1, 2.0, 0.1)))
        assert output.histogram.snapshot()[0][-1] == 1
    finally:
        output.close()


@pytest.fixture
def unused_port() -> int:
    return free_port()


# --- several cameras ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cameras_run(tmp_path_factory, models: Path, images: Path) -> Iterator[LiveRun]:
    """Two cameras: a yard with two regions (a chickadee on the left, a macaw on the right) and a garden."""
    tmp = tmp_path_factory.mktemp("cameras")
    (tmp / "yard").mkdir()
    cv2.imwrite(str(tmp / "yard" / "yard.png"), side_by_side(images, "bird.bmp", "parrot.jpg"))
    (tmp / "garden").mkdir()
    shutil.copy(images / "sunflower.bmp", tmp / "garden" / "sunflower.bmp")
    run = LiveRun(tmp, models, None, web="  max_fps: 5", model="mobilenet_v2_1.0_224_quant.tflite", extra=f"""
cameras:
  yard:
    source: {{type: images, path: {tmp / "yard"}, loop: true}}
    regions:
      feeder: {{box: [0, 0, 0.5, 1]}}
      perch: {{box: [0.5, 0, 0.5, 1]}}
  garden:
    source: {{type: images, path: {tmp / "garden"}, loop: true}}
""")
    yield from running(run)


def region_labels(status: dict) -> dict[tuple[str, str | None], str | None]:
    return {(camera["name"], region["name"]): region["result"]["top"][0]["label"] if region["result"] else None
            for camera in status["cameras"] for region in camera["regions"]}


GOLDEN_REGIONS = {("yard", "feeder"): "chickadee", ("yard", "perch"): "macaw", ("garden", None): "daisy"}


def test_status_has_every_camera_with_its_regions_and_their_labels(cameras_run: LiveRun):
    deadline = time.monotonic() + 30
    # The stats are shared for half a second between pollers: wait for a snapshot taken after both classified.
    while region_labels(status := cameras_run.status()) != GOLDEN_REGIONS or not all(
            camera["stats"].get("frames") for camera in status["cameras"]):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    yard, garden = status["cameras"]
    assert [region["box"] for region in yard["regions"]] == [[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 0.5, 1.0]]
    assert yard["streaming"] and garden["streaming"]
    assert set(status["stats"]["cameras"]) == {"yard", "garden"}


def test_each_camera_has_its_own_stream_and_snapshot(cameras_run: LiveRun, images: Path):
    yard_client = MjpegClient(cameras_run.port, "/stream.mjpg?camera=yard")
    garden_client = MjpegClient(cameras_run.port, "/stream.mjpg?camera=garden")
    try:
        yard, garden = decode(yard_client.next_jpeg()), decode(garden_client.next_jpeg())
    finally:
        yard_client.close()
        garden_client.close()
    assert yard.shape[:2] == (320, 640) and garden.shape[:2] == (340, 512)
    # Each region's outline is drawn in orange (BGR 0, 200, 255): the boxes' shared edge down the middle.
    def orange_in_the_middle(image: np.ndarray) -> float:
        return float(np.all(np.abs(image[:, 318:323].astype(int) - (0, 200, 255)) < 60, axis=2).mean())

    assert orange_in_the_middle(yard) > 0.3 > orange_in_the_middle(side_by_side(images, "bird.bmp", "parrot.jpg"))
    sunflower = cv2.imread(str(images / "sunflower.bmp"))
    assert np.abs(garden[100:].astype(int) - sunflower[100:].astype(int)).mean() < 20  # the garden's own picture
    code, headers, body = cameras_run.get("/snapshot.jpg?camera=yard")
    assert code == 200 and headers["Content-Type"] == "image/jpeg" and decode(body).shape[:2] == (320, 640)
    code, _, body = cameras_run.get("/stream.mjpg?camera=porch")
    assert code == 404 and b"the cameras are yard, garden" in body


def test_metrics_are_labelled_by_camera_and_region(cameras_run: LiveRun):
    from prometheus_client.parser import text_string_to_metric_families

    cameras_run.wait_ready()
    code, _, body = cameras_run.get("/metrics")
    assert code == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples[("edge_infer_frames_total", (("camera", "yard"),))] > 0
    assert samples[("edge_infer_source_up", (("camera", "garden"),))] == 1
    assert samples[("edge_infer_region_results_total", (("camera", "yard"), ("region", "perch")))] > 0
    assert 0 < samples[("edge_infer_region_top_score", (("camera", "garden"), ("region", "")))] <= 1


def test_the_page_shows_every_camera_and_each_regions_label(cameras_run: LiveRun, tmp_path: Path):
    cameras_run.wait_ready()
    dom = chromium("--dump-dom", cameras_run.url + "/", user_data=tmp_path / "profile", window="1000,1100")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-camera="yard"' in dom.stdout and 'data-camera="garden"' in dom.stdout
    for label in ("chickadee", "macaw", "daisy"):
        assert f'<span class="label">{label} <span class="muted">' in dom.stdout, label
    assert "stream.mjpg?camera=garden" in dom.stdout
    shot = tmp_path / "cameras.png"
    done = chromium(f"--screenshot={shot}", cameras_run.url + "/", user_data=tmp_path / "profile", window="1000,1100")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    picture = cv2.imread(str(shot))
    # The cards one above the other in the wide column: each shows its camera's own picture (not the black
    # placeholder), the yard's with the orange outline of its regions.
    yard, garden = picture[120:370, 40:600], picture[560:900, 40:600]
    for card in (yard, garden):
        assert len(np.unique(card.reshape(-1, 3) // 32, axis=0)) > 40
    assert np.all(np.abs(yard.astype(int) - (0, 200, 255)) < 60, axis=2).mean() > 0.005
    assert "Source</dt><dd id=\"source\">2 cameras, 2 live" in dom.stdout

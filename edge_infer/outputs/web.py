"""The live view: a web page, an MJPEG stream, a snapshot, the status as JSON and Prometheus metrics.

`outputs: [..., web]` serves, on `web.host`:`web.port` (default 127.0.0.1:8080):
`/` (the page), `/stream.mjpg`, `/snapshot.jpg`, `/api/status` and `/metrics`.

The server is the standard library's `http.server.ThreadingHTTPServer`: no dependency to install,
pure Python (so it runs on any Pi and any Python the runtime runs on), one thread per connection
(a viewer blocked on a slow network blocks only its own thread), and a handful of viewers is all
a camera on a Pi ever has. The stream's frames are JPEGs that OpenCV already encodes, so nothing
here needs an asynchronous framework or a media server.

The pipeline never waits for the live view:
- capture thread, `see_frame`: only while a viewer waits for a picture (or a `/snapshot.jpg` asked)
  and at most `max_fps` times a second, copies the frame into one of two reused buffers (the other
  one may be in the encoder's hands); otherwise it returns after one comparison;
- one encoder thread per server (not per viewer) scales the newest copy to `width`, draws the newest
  label on it and encodes one JPEG, shared by every viewer through a sequence number;
- each viewer's own handler thread waits for the next sequence number and writes it. A slow
  viewer simply gets the newest JPEG when it is ready again (it skips frames, nothing is queued
  for it); a stalled one costs nothing (no viewer waiting: no copy, no encoding) and is dropped
  after STALLED_VIEWER_S; a closed tab ends its thread at the next frame or within a second.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import errno
import hmac
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np

from .. import __version__
from ..errors import ConfigError
from ..values import Classification, Frame
from .base import OutputContext
from .snapshots import annotate, encode_jpeg

log = logging.getLogger(__name__)

BOUNDARY = "edge-infer-frame"
STALLED_VIEWER_S = 20.0  # a viewer that takes nothing for this long is disconnected (and a slow request line)
WAIT_STEP_S = 0.5  # how often waiting threads look at the stop event and for a closed connection
SNAPSHOT_WAIT_S = 2.0  # /snapshot.jpg waits this long for a fresh frame, then serves the newest it has
STATUS_MAX_AGE_S = 0.5  # /api/status and /metrics share one stats snapshot this old at most (board reads cost)
SERVE_POLL_S = 0.2  # serve_forever's shutdown check: close() must stay well inside the 2 s SIGTERM budget
# Seconds; MobileNets take 0.2 ms (x86, 0.25_128) to 200 ms (a Pi 3, V2 224).
INFERENCE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
HTML, JS, CSS = "text/html; charset=utf-8", "text/javascript; charset=utf-8", "text/css; charset=utf-8"
STATIC = {"/": ("index.html", HTML), "/index.html": ("index.html", HTML), "/app.js": ("app.js", JS),
          "/style.css": ("style.css", CSS)}
# The page loads nothing from elsewhere (no CDN): say so, so an injected script could not either.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors *"}


@dataclass(frozen=True)
class WebConfig:
    # 127.0.0.1: this machine only; 0.0.0.0 (or ::): every network; set credentials_file then
    host: str = field(default="127.0.0.1", metadata={"min_length": 1, "max_length": 253})
    port: int = field(default=8080, metadata={"min": 1, "max": 65535})
    max_fps: float = field(default=10.0, metadata={"min": 0.1, "max": 60.0})  # the stream's rate cap
    width: int = field(default=640, metadata={"min": 32, "max": 7680})  # stream width (never scaled up)
    credentials_file: str | None = field(default=None, metadata={"min_length": 1})  # one line: user:password
    jpeg_quality: int = field(default=80, metadata={"min": 1, "max": 100})


def read_credentials(path: str) -> tuple[bytes, bytes]:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"web.credentials_file: cannot read '{path}': {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"web.credentials_file: '{path}' is not UTF-8 text") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1 or ":" not in lines[0] or lines[0].startswith(":"):
        raise ConfigError(f"web.credentials_file: '{path}' must hold one line, user:password")
    user, password = lines[0].split(":", 1)
    if not password:
        raise ConfigError(f"web.credentials_file: '{path}' has an empty password")
    return user.encode(), password.encode()


# --- frames: capture thread -> encoder -> viewers --------------------------------------------------

class FrameGrabber:
    """The capture thread's side: the newest frame in one of two reused buffers, copied only on demand."""

    def __init__(self, max_fps: float, demand: Callable[[], bool], clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / max_fps
        self._demand = demand
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._buffers: list[np.ndarray | None] = [None, None]
        self._newest = -1  # the buffer holding the newest copy; -1: none yet
        self._reading = -1  # the buffer the encoder reads: the capture thread writes the other one
        self._next_at = float("-inf")
        self._wanted_until = float("-inf")  # a /snapshot.jpg asked for a fresh frame
        self.seq = 0  # copies made so far
        self.copies_failed = 0

    def want(self, seconds: float) -> None:
        self._wanted_until = self._clock() + seconds

    def see_frame(self, frame: Frame) -> None:
        now = self._clock()
        # Unlocked reads: a stale value costs or saves one copy, never correctness.
        if now < self._next_at or not (now < self._wanted_until or self._demand()):
            return
        image = frame.image
        with self._cond:
            # A schedule, not a minimum gap: a 30 fps camera under a 10 fps cap gives 10, not 7.5.
            self._next_at = max(self._next_at, now - self._interval) + self._interval
            target = (self._newest + 1) % 2 if self._reading < 0 else 1 - self._reading
            buffer = self._buffers[target]
            if buffer is None or buffer.shape != image.shape or buffer.dtype != image.dtype:
                buffer = self._buffers[target] = np.empty_like(image)  # first frame, or the source changed size
            np.copyto(buffer, image)
            self._newest = target
            self.seq += 1
            self._cond.notify_all()

    def take(self, after: int, timeout: float) -> tuple[np.ndarray, int] | None:
        """Encoder: the newest copy if newer than `after` (waiting up to `timeout`); call `done` after reading it."""
        with self._cond:
            if self.seq == after:
                self._cond.wait(timeout)
            if self.seq == after or self._newest < 0:
                return None
            self._reading = self._newest
            return self._buffers[self._reading], self.seq  # type: ignore[return-value]

    def done(self) -> None:
        with self._cond:
            self._reading = -1

    def copy_newest(self, newer_than: int, timeout: float) -> np.ndarray | None:
        """A copy of a frame newer than `newer_than` if one comes within `timeout`, else of the newest one."""
        with self._cond:
            self._cond.wait_for(lambda: self.seq > newer_than, timeout)
            if self._newest < 0:
                return None
            buffer = self._buffers[self._newest]
            return None if buffer is None else buffer.copy()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class JpegHub:
    """The newest encoded frame, shared by every viewer; viewers waiting for one are the demand for frames."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jpeg = b""
        self.seq = 0
        self.waiting = 0  # viewers waiting for the next JPEG: read by the capture thread
        self.viewers = 0

    def put(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg = jpeg
            self.seq += 1
            self._cond.notify_all()

    def wait_newer(self, seq: int, timeout: float) -> tuple[bytes, int] | None:
        with self._cond:
            if self.seq == seq:
                self.waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self.waiting -= 1
            return (self._jpeg, self.seq) if self.seq != seq else None

    @contextmanager
    def viewer(self) -> Iterator[int]:
        """Count a viewer while it is connected; yields the current sequence, so it starts with a fresh frame."""
        with self._cond:
            self.viewers += 1
            seq = self.seq
        try:
            yield seq
        finally:
            with self._cond:
                self.viewers -= 1

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Histogram:
    """A Prometheus histogram, observed on the inference thread and read by /metrics (under a lock, so the
    buckets, the count and the sum always agree)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        slot = bisect.bisect_left(self.bounds, value)  # le: a value equal to a bound belongs to it
        with self._lock:
            self._counts[slot] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[int], float]:
        """Cumulative counts per bound and +Inf, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running)
        return cumulative, total


# --- what the endpoints say ----------------------------------------------------------------------

def label_value(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


def render_metrics(stats: Mapping[str, Any], histogram: Histogram, model: str, backend: str,
                   mqtt_connected: bool | None, viewers: int) -> str:
    """The Prometheus text exposition format (version 0.0.4), written by hand: no dependency at run time."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {number(value)}" for labels, value in samples)

    metric("edge_infer_info", "gauge", "The running edge-infer: model, backend and version (always 1).",
           [(f'{{model="{label_value(model)}",backend="{label_value(backend)}",'
             f'version="{label_value(__version__)}"}}', 1)])
    metric("edge_infer_frames_total", "counter", "Frames classified since the start.",
           [("", int(stats.get("frames", 0)))])
    metric("edge_infer_dropped_frames_total", "counter",
           "Frames a live source delivered that inference had no time for (newest-frame mode).",
           [("", int(stats.get("dropped_frames", 0)))])
    metric("edge_infer_output_errors_total", "counter", "Results an output failed to take.",
           [("", int(stats.get("output_errors", 0)))])
    cumulative, total = histogram.snapshot()
    bounds = zip(histogram.bounds, cumulative[:-1], strict=True)
    buckets = [(f'{{le="{number(bound)}"}}', count) for bound, count in bounds]
    lines.append("# HELP edge_infer_inference_seconds Time the interpreter took per frame (invoke only).")
    lines.append("# TYPE edge_infer_inference_seconds histogram")
    lines.extend(f"edge_infer_inference_seconds_bucket{labels} {count}" for labels, count in buckets)
    lines.append(f'edge_infer_inference_seconds_bucket{{le="+Inf"}} {cumulative[-1]}')
    lines.append(f"edge_infer_inference_seconds_sum {number(total)}")
    lines.append(f"edge_infer_inference_seconds_count {cumulative[-1]}")
    metric("edge_infer_fps", "gauge", "Frames classified per second, over the last 300 frames.",
           [("", float(stats.get("fps", 0.0)))])
    metric("edge_infer_uptime_seconds", "gauge", "Seconds since the run started.",
           [("", float(stats.get("uptime_s", 0.0)))])
    if "cpu_temp_c" in stats:
        metric("edge_infer_cpu_temperature_celsius", "gauge", "SoC temperature.", [("", float(stats["cpu_temp_c"]))])
    throttled = stats.get("throttled")
    if isinstance(throttled, Mapping):
        metric("edge_infer_throttled", "gauge", "Raspberry Pi firmware throttling flags (1: set).",
               [(f'{{flag="{label_value(flag)}"}}', int(bool(on))) for flag, on in throttled.items()])
    source = stats.get("source")
    up = source.get("state", "streaming") == "streaming" if isinstance(source, Mapping) else True
    metric("edge_infer_source_up", "gauge", "1 while the source delivers frames, 0 while it reconnects.",
           [("", int(up))])
    if mqtt_connected is not None:
        metric("edge_infer_mqtt_connected", "gauge", "1 while connected to the MQTT broker.",
               [("", int(mqtt_connected))])
    metric("edge_infer_stream_viewers", "gauge", "Clients watching /stream.mjpg.", [("", viewers)])
    return "\n".join(lines) + "\n"


# --- the server ----------------------------------------------------------------------------------

class WebServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck viewer never holds up the process's exit
    web: WebOutput


class WebServer6(WebServer):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    server: WebServer
    server_version = "edge-infer"
    sys_version = ""  # no Python version in the Server header
    timeout = STALLED_VIEWER_S  # the socket's: a stalled request or viewer ends its thread

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("web: %s %s", self.address_string(), format % args)  # stderr carries edge-infer's lines only

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        web = self.server.web
        if not web.authorized(self.headers.get("Authorization")):
            self.send_response(HTTPStatus.UNAUTHORIZED)
            self.send_header("WWW-Authenticate", 'Basic realm="edge-infer", charset="UTF-8"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = urlsplit(self.path).path
        try:
            if path in STATIC:
                name, kind = STATIC[path]
                self.reply(web.static[name], kind)
            elif path == "/stream.mjpg":
                self.stream(web)
            elif path == "/snapshot.jpg":
                jpeg = web.snapshot()
                if jpeg is None:
                    self.reply(b"no frame yet\n", "text/plain; charset=utf-8", HTTPStatus.SERVICE_UNAVAILABLE)
                else:
                    self.reply(jpeg, "image/jpeg")
            elif path == "/api/status":
                self.reply(json.dumps(web.status()).encode(), "application/json")
            elif path == "/metrics":
                self.reply(web.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/favicon.ico":
                self.reply(b"", "image/x-icon", HTTPStatus.NO_CONTENT)
            else:
                self.reply(b"not found\n", "text/plain; charset=utf-8", HTTPStatus.NOT_FOUND)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away
        except Exception as exc:  # a bug in an endpoint: one failed request, never a failed run
            log.warning("web: %s failed: %s: %s", path, type(exc).__name__, exc)
            log.debug("web request failed", exc_info=True)

    def reply(self, body: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # live data; the page is small and changes with upgrades
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if status != HTTPStatus.NO_CONTENT:
            self.wfile.write(body)

    def stream(self, web: WebOutput) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        with web.hub.viewer() as seq:
            while not web.stopping.is_set():
                newer = web.hub.wait_newer(seq, WAIT_STEP_S)
                # A closed tab: noticed now, not only when a write fails (the first write after the close
                # still succeeds, into the socket's buffer), nor only once frames come again.
                if peer_closed(self.connection):
                    return
                if newer is None:
                    continue
                jpeg, seq = newer
                # One write per part; a slow viewer blocks here (its own thread) and skips what it missed.
                self.wfile.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                 % (BOUNDARY.encode(), len(jpeg), jpeg))


def peer_closed(connection: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def open_server(config: WebConfig) -> WebServer:
    """Bind now, so a port in use or an address this machine does not have stops the run before it starts."""
    try:
        family = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror as exc:
        raise ConfigError(f"web.host: cannot resolve '{config.host}': {exc.strerror}") from exc
    server_class = WebServer6 if family == socket.AF_INET6 else WebServer
    try:
        return server_class((config.host, config.port), Handler)
    except OSError as exc:
        where = f"{config.host}:{config.port}"
        if exc.errno == errno.EADDRINUSE:
            message = (f"web.port: {where} is already in use (another edge-infer, or another server): "
                       "stop it or choose another web.port")
        elif exc.errno == errno.EADDRNOTAVAIL:
            message = (f"web.host: {config.host} is not an address of this machine: use 127.0.0.1 (this machine "
                       "only), 0.0.0.0 (every network) or one of its own addresses")
        elif exc.errno == errno.EACCES:
            message = f"web.port: listening on {where} is not permitted (ports below 1024 need privileges)"
        else:
            message = f"web: cannot listen on {where}: {exc.strerror or exc}"
        raise ConfigError(message) from exc


class WebOutput:
    """The live view as an output: `publish` keeps the newest result, `see_frame` feeds the stream."""

    name = "web"

    def __init__(self, config: WebConfig, context: OutputContext,
                 mqtt_connected: Callable[[], bool] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._context = context
        self._mqtt_connected = mqtt_connected  # None: the run has no MQTT output
        self._clock = clock
        self._credentials = read_credentials(config.credentials_file) if config.credentials_file else None
        self.static = {name: load_static(name) for name, _ in STATIC.values()}
        self.stopping = threading.Event()  # shared by every thread of the server
        self.hub = JpegHub()
        self.grabber = FrameGrabber(config.max_fps, lambda: self.hub.waiting > 0, clock)
        self.histogram = Histogram(INFERENCE_BUCKETS)
        self._result: Classification | None = None
        self._stats: tuple[float, dict[str, object]] = (float("-inf"), {})
        self._stats_lock = threading.Lock()
        self._scaled: np.ndarray | None = None
        self._watch_failed = False
        self._server = open_server(config)  # last: everything it serves exists
        self._server.web = self
        self._threads = [threading.Thread(target=self._server.serve_forever, args=(SERVE_POLL_S,), name="web-server",
                                          daemon=True),
                         threading.Thread(target=self._encode, name="web-encoder", daemon=True)]
        for thread in self._threads:
            thread.start()
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        log.info("web: live view on http://%s:%s/ (stream, snapshot, status, metrics)", shown, port)
        if config.host not in ("127.0.0.1", "localhost", "::1") and self._credentials is None:
            log.warning("web: serving %s without web.credentials_file: anyone who can reach it can watch the "
                        "camera", config.host)

    # -- the pipeline's side: both must return at once --

    def publish(self, result: Classification) -> None:
        self._result = result  # one reference: readers on other threads see the old or the new result
        self.histogram.observe(result.timing.inference_ms / 1000.0)

    def see_frame(self, frame: Frame) -> None:
        try:
            self.grabber.see_frame(frame)
        except Exception as exc:  # an exception here would end the capture thread, and the run
            if not self._watch_failed:
                self._watch_failed = True
                log.warning("web: cannot copy frames for the stream (%s: %s)", type(exc).__name__, exc)

    # -- the server's side --

    def _encode(self) -> None:
        """The encoder thread: newest frame + newest result -> one JPEG for every viewer."""
        seq = 0
        while not self.stopping.is_set():
            taken = self.grabber.take(seq, WAIT_STEP_S)
            if taken is None:
                continue
            image, seq = taken
            try:
                picture = self._scale(image)  # our own copy: the grabber's buffer goes back at once
            finally:
                self.grabber.done()
            try:
                self.hub.put(encode_jpeg(annotate(picture, self._result), self._config.jpeg_quality))
            except Exception as exc:
                log.warning("web: could not encode a frame: %s", exc)

    def _scale(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if width > self._config.width:
            size = (self._config.width, max(1, round(height * self._config.width / width)))
        else:
            size = (width, height)
        shape = (size[1], size[0], *image.shape[2:])
        if self._scaled is None or self._scaled.shape != shape or self._scaled.dtype != image.dtype:
            self._scaled = np.empty(shape, image.dtype)  # reused from now on
        if size == (width, height):
            np.copyto(self._scaled, image)
        else:
            cv2.resize(image, size, dst=self._scaled, interpolation=cv2.INTER_AREA)
        return self._scaled

    def snapshot(self) -> bytes | None:
        """The newest frame at full size, encoded now, with the newest label on it."""
        seq = self.grabber.seq
        self.grabber.want(SNAPSHOT_WAIT_S)
        image = self.grabber.copy_newest(seq, SNAPSHOT_WAIT_S)
        if image is None:
            return None
        return encode_jpeg(annotate(image, self._result), self._config.jpeg_quality)

    def stats(self) -> dict[str, object]:
        """The run's stats, shared for STATUS_MAX_AGE_S by every poller (reading the board's state costs)."""
        now = self._clock()
        with self._stats_lock:
            taken_at, stats = self._stats
            if now - taken_at > STATUS_MAX_AGE_S:
                stats = self._context.stats()
                self._stats = (now, stats)
            return stats

    def mqtt_connected(self) -> bool | None:
        return None if self._mqtt_connected is None else bool(self._mqtt_connected())

    def status(self) -> dict[str, object]:
        result = self._result
        stats = self.stats()
        return {"result": result.to_json_dict() if result is not None else None, "stats": stats,
                **self.running(stats), "mqtt_connected": self.mqtt_connected(), "viewers": self.hub.viewers,
                "version": __version__}

    def metrics(self) -> str:
        stats = self.stats()
        running = self.running(stats)
        return render_metrics(stats, self.histogram, running["model"], running["backend"], self.mqtt_connected(),
                              self.hub.viewers)

    def running(self, stats: Mapping[str, object]) -> dict[str, str]:
        """The model and backend in use: the run's stats name them (the thermal guard and the Edge TPU
        failover change them); the ones the output was opened with are only the fallback."""
        return {"model": str(stats.get("model", self._context.model)),
                "backend": str(stats.get("backend", self._context.backend))}

    def authorized(self, header: str | None) -> bool:
        if self._credentials is None:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # Both compared, in constant time: the answer's timing tells nothing about either.
        user_ok = hmac.compare_digest(user, self._credentials[0])
        return hmac.compare_digest(password, self._credentials[1]) and user_ok

    def close(self) -> None:
        self.stopping.set()
        self.grabber.wake()
        self.hub.wake()
        self._server.shutdown()  # returns within SERVE_POLL_S
        self._server.server_close()
        for thread in self._threads:
            thread.join(WAIT_STEP_S)


def load_static(name: str) -> bytes:
    return resources.files("edge_infer.outputs").joinpath("web_static", name).read_bytes()

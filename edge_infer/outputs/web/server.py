"""The live view's HTTP server: the standard library's threaded server, its handler, and basic auth's file.

`http.server.ThreadingHTTPServer`: no dependency to install, pure Python (so it runs on any Pi and
any Python the runtime runs on), one thread per connection (a viewer blocked on a slow network
blocks only its own thread), and a handful of viewers is all a camera on a Pi ever has.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ...errors import ConfigError
from ...security.credentials import read_secret
from .frames import WAIT_STEP_S, CameraView

if TYPE_CHECKING:
    from .config import WebConfig
    from .output import WebOutput

log = logging.getLogger(__name__)

BOUNDARY = "edge-infer-frame"
MAX_CONNECTIONS = 32  # open connections (each a thread): the viewers, the page's requests, and room for both
REQUEST_HEAD_S = 10.0  # from when a connection may send its request to the end of the headers
FAILED_LOGIN_DELAY_S = 1.0  # a wrong password is answered this much later: guessing goes slowly
STALLED_VIEWER_S = 20.0  # a viewer that takes nothing for this long is disconnected (and a slow request line)
# What is read and dropped of a body refused for its size, for at most REFUSED_BODY_S: see `discard_body`.
REFUSED_BODY_BYTES = 16 << 20
REFUSED_BODY_S = 2.0
HTML, JS, CSS = "text/html; charset=utf-8", "text/javascript; charset=utf-8", "text/css; charset=utf-8"
STATIC = {"/": ("index.html", HTML), "/index.html": ("index.html", HTML), "/app.js": ("app.js", JS),
          "/teach.js": ("teach.js", JS),
          "/style.css": ("style.css", CSS)}
# The page loads nothing from elsewhere (no CDN): say so, so an injected script could not either.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors *"}


def read_credentials(path: str) -> tuple[bytes, bytes]:
    lines = [line for line in read_secret(path, "web.credentials_file").splitlines() if line.strip()]
    if len(lines) != 1 or ":" not in lines[0] or lines[0].startswith(":"):
        raise ConfigError(f"web.credentials_file: '{path}' must hold one line, user:password")
    user, password = lines[0].split(":", 1)
    if not password:
        raise ConfigError(f"web.credentials_file: '{path}' has an empty password")
    return user.encode(), password.encode()


class WebServer(ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS of them: a connection beyond is closed at once."""

    daemon_threads = True  # a stuck viewer never holds up the process's exit
    request_queue_size = 64  # the listen backlog (socketserver's 5 refuses a page's burst of requests)
    web: WebOutput

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            self.shutdown_request(request)  # 300 half-sent requests must not become 300 threads
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


class WebServer6(WebServer):
    address_family = socket.AF_INET6


class HeadDeadline:
    """The request line and headers must all arrive within REQUEST_HEAD_S: a client that sends a byte just
    before each socket timeout would otherwise hold its connection (and a thread) for ever."""

    def __init__(self, raw: Any, connection: socket.socket) -> None:
        self._raw = raw
        self._connection = connection
        self.deadline = float("inf")

    def readline(self, limit: int = -1) -> bytes:
        """A line, read at most one recv at a time (BufferedReader.peek), so the deadline is checked between
        any two bytes that arrive."""
        line = bytearray()
        while limit < 0 or len(line) < limit:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request's head took too long")
            self._connection.settimeout(min(remaining, STALLED_VIEWER_S))
            waiting = self._raw.peek(1)
            if not waiting:  # the client closed
                break
            end = waiting.find(b"\n")
            wanted = len(waiting) if end < 0 else end + 1
            line += self._raw.read(wanted if limit < 0 else min(wanted, limit - len(line)))
            if line.endswith(b"\n"):
                break
        return bytes(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class Handler(BaseHTTPRequestHandler):
    server: WebServer
    server_version = "edge-infer"
    sys_version = ""  # no Python version in the Server header
    timeout = STALLED_VIEWER_S  # the socket's: a stalled request or viewer ends its thread
    rfile: Any

    def setup(self) -> None:
        super().setup()
        self.rfile = HeadDeadline(self.rfile, self.connection)

    def handle_one_request(self) -> None:
        self.rfile.deadline = time.monotonic() + REQUEST_HEAD_S  # the next request on a kept-alive connection too
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # the head is in: the stream's writes get the usual timeout again
        self.rfile.deadline = float("inf")
        self.connection.settimeout(STALLED_VIEWER_S)
        return parsed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("web: %s %s", self.address_string(), format % args)  # stderr carries edge-infer's lines only

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET(head=True)

    def admitted(self, web: WebOutput) -> bool:
        """The Host is one of this server's names and the password (if one is set) is right; else answered."""
        host = self.headers.get("Host")
        if host is not None and not web.allows_host(host):
            self.reply(f"{host_name(host)!r} is not a name of this server: open it by its address or add the name "
                       "to web.allowed_hosts\n".encode(), "text/plain; charset=utf-8", HTTPStatus.MISDIRECTED_REQUEST)
            return False
        authorization = self.headers.get("Authorization")
        if not web.authorized(authorization):
            if authorization:
                time.sleep(FAILED_LOGIN_DELAY_S)
            self.send_response(HTTPStatus.UNAUTHORIZED)
            self.send_header("WWW-Authenticate", 'Basic realm="edge-infer", charset="UTF-8"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        return True

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        """The Teach panel's write actions (teach.py); nothing else takes a body."""
        web = self.server.web
        self._head = False
        if not self.admitted(web):
            return
        url = urlsplit(self.path)
        teach = web.teach
        text = "text/plain; charset=utf-8"
        origin = self.headers.get("Origin")
        length = self.headers.get("Content-Length", "")
        with self.contained(url.path):
            if teach is None or not url.path.startswith("/api/teach/"):
                self.reply(b"not found\n", text, HTTPStatus.NOT_FOUND)
            elif origin is not None and host_name(urlsplit(origin).netloc) != host_name(self.headers.get("Host", "")):
                self.reply(b"a write from another site's page is refused\n", text, HTTPStatus.FORBIDDEN)
            elif not length.isdigit():
                self.reply(b"Content-Length is required\n", text, HTTPStatus.LENGTH_REQUIRED)
            elif int(length) > teach.body_limit(url.path):
                self.close_connection = True  # the body is not read whole: the connection cannot be reused
                self.reply(f"at most {teach.body_limit(url.path)} bytes (teach.max_upload_megabytes)\n".encode(), text,
                           HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                self.discard_body(int(length))
            else:
                body = self.rfile.read(int(length))
                reply = teach.post(url.path, parse_qs(url.query), self.headers, body)
                self.reply(reply.body, reply.kind, reply.status)

    def discard_body(self, length: int) -> None:
        """Read and drop what the client still sends of a refused body (bounded in bytes and time), as nginx's
        lingering close does: a socket closed with unread data resets the connection, and a client still sending
        (a browser, urllib) then gets "connection reset" or a broken pipe instead of the answer."""
        self.connection.settimeout(REFUSED_BODY_S)
        remaining = min(length, REFUSED_BODY_BYTES)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    @contextlib.contextmanager
    def contained(self, path: str) -> Iterator[None]:
        """A client that went away ends its request quietly; a bug in an endpoint is one failed request, never
        a failed run."""
        try:
            yield
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        except Exception as exc:
            log.warning("web: %s %s failed: %s: %s", self.command, path, type(exc).__name__, exc)
            log.debug("web request failed", exc_info=True)

    def do_GET(self, head: bool = False) -> None:  # noqa: N802 - http.server's naming
        web = self.server.web
        self._head = head
        if not self.admitted(web):
            return
        url = urlsplit(self.path)
        path = url.path
        with self.contained(path):
            if path in STATIC:
                name, kind = STATIC[path]
                self.reply(web.static[name], kind)
            elif path in ("/stream.mjpg", "/snapshot.jpg"):
                camera = parse_qs(url.query).get("camera", [None])[-1]
                view = web.view(camera)
                if view is None:
                    known = ", ".join(str(name) for name in web.views)
                    self.reply(f"no camera {camera!r}: the cameras are {known}\n".encode(), "text/plain; charset=utf-8",
                               HTTPStatus.NOT_FOUND)
                elif path == "/stream.mjpg":
                    self.stream(web, view)
                elif (jpeg := view.snapshot()) is None:
                    self.reply(b"no frame yet\n", "text/plain; charset=utf-8", HTTPStatus.SERVICE_UNAVAILABLE)
                else:
                    self.reply(jpeg, "image/jpeg")
            elif path == "/api/status":
                self.reply(json.dumps(web.status()).encode(), "application/json")
            elif path.startswith("/api/teach") and web.teach is not None:
                reply = web.teach.get(path, parse_qs(url.query))
                self.reply(reply.body, reply.kind, reply.status)
            elif path == "/metrics":
                self.reply(web.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/favicon.ico":
                self.reply(b"", "image/x-icon", HTTPStatus.NO_CONTENT)
            else:
                self.reply(b"not found\n", "text/plain; charset=utf-8", HTTPStatus.NOT_FOUND)

    def reply(self, body: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # live data; the page is small and changes with upgrades
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if status != HTTPStatus.NO_CONTENT and not self._head:
            self.wfile.write(body)

    def stream(self, web: WebOutput, view: CameraView) -> None:
        if not web.viewer_slots.acquire(blocking=False):
            self.send_response(HTTPStatus.SERVICE_UNAVAILABLE)
            self.send_header("Retry-After", "10")
            body = (f"{web.max_viewers} viewers are watching already (web.max_viewers): try again later\n").encode()
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not self._head:
                self.wfile.write(body)
            return
        try:
            self.stream_frames(web, view)
        finally:
            web.viewer_slots.release()

    def stream_frames(self, web: WebOutput, view: CameraView) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self._head:
            return
        with view.hub.viewer() as seq:
            while not web.stopping.is_set():
                newer = view.hub.wait_newer(seq, WAIT_STEP_S)
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


def host_name(host: str) -> str:
    """The name in a Host header: without its port, an IPv6 address without its brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def own_names(bound: str, extra: Sequence[str]) -> frozenset[str]:
    """The names this server answers to: the loopback names, the machine's own, and the user's."""
    hostname = socket.gethostname().lower()
    names = {"localhost", hostname, f"{hostname}.local", bound.lower(), *(name.lower() for name in extra)}
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn().lower())
    return frozenset(names)


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


def load_static(name: str) -> bytes:
    return resources.files("edge_infer.outputs.web").joinpath("static", name).read_bytes()

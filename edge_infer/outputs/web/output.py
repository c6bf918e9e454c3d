"""The live view: a web page, an MJPEG stream and a snapshot per camera, the status as JSON and Prometheus metrics.

`outputs: [..., web]` serves, on `web.host`:`web.port` (default 127.0.0.1:8080):
`/` (the page), `/stream.mjpg`, `/snapshot.jpg` (each with `?camera=NAME` in a `cameras:` run; the
first camera without), `/api/status` and `/metrics`. The pipeline never waits for the live view
(frames.py says how the pictures flow; server.py serves them).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ... import __version__
from ...values import Box, CameraStatus, Classification, Frame, RunStatus
from ..base import BrokerLink, OutputContext, Peers
from .config import WebConfig
from .frames import CameraView
from .metrics import INFERENCE_BUCKETS, Histogram, RegionCounts, render_metrics
from .server import STATIC, host_name, is_address, load_static, open_server, own_names, read_credentials

if TYPE_CHECKING:
    from .teach import TeachApi

log = logging.getLogger(__name__)

STATUS_MAX_AGE_S = 0.5  # /api/status and /metrics share one stats snapshot this old at most (board reads cost)
SERVE_POLL_S = 0.2  # serve_forever's shutdown check: close() must stay well inside the 2 s SIGTERM budget


class WebOutput:
    """The live view as an output: `publish` keeps each camera's newest results, `see_frame` feeds its stream."""

    name = "web"

    def __init__(self, config: WebConfig, context: OutputContext,
                 mqtt_connected: Callable[[], bool | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._context = context
        self._mqtt_connected = mqtt_connected  # says None (or is None) when the run has no MQTT output
        self._clock = clock
        self._credentials = read_credentials(config.credentials_file) if config.credentials_file else None
        self.static = {name: load_static(name) for name, _ in STATIC.values()}
        self.stopping = threading.Event()  # shared by every thread of the server
        # One view per camera, in the configuration's order; a plain `source:` run has one, named None.
        layout = context.cameras or ()
        self.views: dict[str | None, CameraView] = {
            camera.name: CameraView(camera.name, camera.regions, config.max_fps, config.width, config.jpeg_quality,
                                    self.stopping, clock) for camera in layout
        } or {None: CameraView(None, {}, config.max_fps, config.width, config.jpeg_quality, self.stopping, clock)}
        self.histogram = Histogram(INFERENCE_BUCKETS)
        self._result: Classification | None = None  # the newest of any camera
        self._status: tuple[float, RunStatus | None] = (float("-inf"), None)
        self._status_lock = threading.Lock()
        self._watch_failed = False
        self.max_viewers = config.max_viewers
        self.viewer_slots = threading.BoundedSemaphore(config.max_viewers)
        self._names = own_names(config.host, config.allowed_hosts)
        self.teach: TeachApi | None = None
        if context.teach is not None:
            from .teach import TeachApi  # a run without the panel does not load it

            self.teach = TeachApi(context.teach, self.views, config.host, self._credentials is not None)
        self._server = open_server(config)  # last: everything it serves exists
        self._server.web = self
        self._server_thread = threading.Thread(target=self._server.serve_forever, args=(SERVE_POLL_S,),
                                               name="web-server", daemon=True)
        self._server_thread.start()
        for view in self.views.values():
            view.start()
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        log.info("web: live view on http://%s:%s/ (stream, snapshot, status, metrics)", shown, port)
        if config.host not in ("127.0.0.1", "localhost", "::1") and self._credentials is None:
            log.warning("web: serving %s without web.credentials_file: anyone who can reach it can watch the "
                        "camera", config.host)

    def view(self, camera: str | None) -> CameraView | None:
        """The camera's view; None (no ?camera=) is the first camera."""
        return next(iter(self.views.values())) if camera is None else self.views.get(camera)

    @property
    def grabber(self):  # noqa: ANN201 - the first camera's, for a plain run
        return self.view(None).grabber  # type: ignore[union-attr]

    @property
    def hub(self):  # noqa: ANN201 - the first camera's, for a plain run
        return self.view(None).hub  # type: ignore[union-attr]

    # -- the pipeline's side: both must return at once --

    def publish(self, result: Classification) -> None:
        self._result = result  # one reference: readers on other threads see the old or the new result
        view = self.views.get(result.camera)
        if view is not None:
            view.results.add(result)
        self.histogram.observe(result.timing.inference_ms / 1000.0)

    def see_frame(self, frame: Frame, camera: str | None = None) -> None:
        try:
            view = self.views.get(camera)
            if view is not None:
                view.grabber.see_frame(frame)
        except Exception as exc:  # an exception here would end the capture thread, and the run
            if not self._watch_failed:
                self._watch_failed = True
                log.warning("web: cannot copy frames for the stream (%s: %s)", type(exc).__name__, exc)

    # -- the server's side --

    def snapshot(self, camera: str | None = None) -> bytes | None:
        """The camera's newest frame at full size, encoded now, with its own results on it."""
        view = self.view(camera)
        return None if view is None else view.snapshot()

    def run_status(self) -> RunStatus:
        """The run's status, shared for STATUS_MAX_AGE_S by every poller (reading the board's state costs)."""
        now = self._clock()
        with self._status_lock:
            taken_at, status = self._status
            if status is None or now - taken_at > STATUS_MAX_AGE_S:
                status = self._context.status()
                self._status = (now, status)
            return status

    def mqtt_connected(self) -> bool | None:
        """None: the run has no MQTT output."""
        return None if self._mqtt_connected is None else self._mqtt_connected()

    @property
    def viewers(self) -> int:
        return sum(view.hub.viewers for view in self.views.values())

    def status(self) -> dict[str, object]:
        """/api/status: the newest result, the run's status, the model and backend in use."""
        result = self._result
        run = self.run_status()
        status: dict[str, object] = {
            "result": result.to_json_dict() if result is not None else None, "stats": run.to_json_dict(),
            "model": run.model, "backend": run.backend, "mqtt_connected": self.mqtt_connected(),
            "viewers": self.viewers, "version": __version__}
        if self._context.cameras:
            status["cameras"] = [self.camera_status(view, run.camera(str(view.name))) for view in self.views.values()]
        return status

    @staticmethod
    def camera_status(view: CameraView, camera: CameraStatus | None) -> dict[str, object]:
        """A camera on /api/status: its stats, whether it streams, and each region's box and newest result."""
        newest = view.results.newest
        boxes = view.boxes or {None: Box.WHOLE}
        regions = [{"name": name, "box": [box.x, box.y, box.width, box.height],
                    "result": result.to_json_dict() if (result := newest.get(name)) is not None else None}
                   for name, box in boxes.items()]
        return {"name": view.name, "streaming": camera is None or camera.streaming,
                "stats": camera.to_json_dict() if camera is not None else {}, "regions": regions,
                "viewers": view.hub.viewers}

    def metrics(self) -> str:
        regions: dict[tuple[str, str], RegionCounts] = {}
        if self._context.cameras:
            for view in self.views.values():
                newest = view.results.newest
                for region in view.boxes or {None: None}:
                    result = newest.get(region)
                    score = result.top[0].score if result is not None and result.top else 0.0
                    regions[(str(view.name), region or "")] = RegionCounts(view.results.total.get(region, 0), score)
        return render_metrics(self.run_status(), self.histogram, self.mqtt_connected(), self.viewers, regions)

    def allows_host(self, host: str) -> bool:
        """A Host header naming this server: any IP address (a rebinding attack needs a name), or one of its names.
        A page on another site that rebinds its own name to this machine sends that name, and is refused."""
        name = host_name(host)
        return is_address(name) or name in self._names

    def authorized(self, header: str | None) -> bool:
        if self._credentials is None:
            return True
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":  # the scheme is case-insensitive (RFC 9110, 11.1)
            return False
        try:
            user, _, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # Both compared, in constant time: the answer's timing tells nothing about either.
        user_ok = hmac.compare_digest(user, self._credentials[0])
        return hmac.compare_digest(password, self._credentials[1]) and user_ok

    def close(self) -> None:
        self.stopping.set()
        for view in self.views.values():
            view.close()
        self._server.shutdown()  # returns within SERVE_POLL_S
        self._server.server_close()
        self._server_thread.join(SERVE_POLL_S * 5)


def open_web(config: WebConfig, context: OutputContext, peers: Peers) -> WebOutput:
    def mqtt_connected() -> bool | None:
        link = peers.find(BrokerLink)
        return None if link is None else link.connected

    return WebOutput(config, context, mqtt_connected)

"""An IP camera for the tests: a real MJPEG stream (multipart/x-mixed-replace) over HTTP on loopback."""

from __future__ import annotations

import base64
import http.server
import socketserver
import threading
import time
from pathlib import Path

import cv2
import numpy as np


class MjpegServer:
    """An IP camera's MJPEG stream (multipart/x-mixed-replace) of one picture at `fps`, on a loopback port
    that outlives stop() and start(), as a camera that reboots keeps its address."""

    def __init__(self, image: Path | np.ndarray, fps: float = 20.0, credentials: str | None = None) -> None:
        self.interval = 1.0 / fps
        self.show(image)
        self.port = 0
        # "user:password": HTTP basic auth, as IP cameras ask for it (anything else gets 401)
        self.authorization = "Basic " + base64.b64encode(credentials.encode()).decode() if credentials else None
        self.serving = threading.Event()
        self.server: socketserver.ThreadingTCPServer | None = None

    def show(self, image: Path | np.ndarray) -> None:
        """From the next frame on, the camera sees `image`."""
        ok, jpeg = cv2.imencode(".jpg", image if isinstance(image, np.ndarray) else cv2.imread(str(image)))
        assert ok
        self.part = (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                     + jpeg.tobytes() + b"\r\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                if outer.authorization and self.headers.get("Authorization") != outer.authorization:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while outer.serving.is_set():
                        self.wfile.write(outer.part)
                        time.sleep(outer.interval)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        socketserver.ThreadingTCPServer.daemon_threads = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.serving.set()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.serving.clear()  # open streams end
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

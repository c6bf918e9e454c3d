"""The `web:` section of the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WebConfig:
    # 127.0.0.1: this machine only; 0.0.0.0 (or ::): every network; set credentials_file then
    host: str = field(default="127.0.0.1", metadata={"min_length": 1, "max_length": 253})
    port: int = field(default=8080, metadata={"min": 1, "max": 65535})
    max_fps: float = field(default=10.0, metadata={"min": 0.1, "max": 60.0})  # the stream's rate cap
    width: int = field(default=640, metadata={"min": 32, "max": 7680})  # stream width (never scaled up)
    credentials_file: str | None = field(default=None, metadata={"min_length": 1})  # one line: user:password
    jpeg_quality: int = field(default=80, metadata={"min": 1, "max": 100})
    max_viewers: int = field(default=8, metadata={"min": 1, "max": 64})  # open streams; more get 503
    # Host names the page may be reached by besides this machine's own names and any IP address (a reverse
    # proxy's, a DNS name of yours); others get 421, so a web page cannot read it through DNS rebinding.
    allowed_hosts: tuple[str, ...] = ()

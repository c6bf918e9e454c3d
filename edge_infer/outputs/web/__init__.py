"""The live view (`outputs: [..., web]`): the page, MJPEG streams and snapshots per camera, status and metrics.

config.py (the `web:` section), frames.py (capture copies, encoders, the shared JPEG), server.py (HTTP),
metrics.py (Prometheus text), output.py (the output that ties them to the run). The HTTP server's modules
load when a web output opens: a run without one does not carry them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import WebConfig

if TYPE_CHECKING:
    from ..base import OutputContext, Peers
    from .output import WebOutput

__all__ = ["WebConfig", "open_web"]

LAZY = {"frames": ("FrameGrabber", "JpegHub", "CameraView", "ResultHistory"),
        "metrics": ("Histogram", "render_metrics", "RegionCounts"),
        "output": ("WebOutput",),
        "server": ("BOUNDARY",)}


def open_web(config: WebConfig, context: OutputContext, peers: Peers) -> WebOutput:
    from .output import open_web as open_output

    return open_output(config, context, peers)


def __getattr__(name: str) -> Any:
    """The server's names, loaded on first use (PEP 562)."""
    for module, names in LAZY.items():
        if name in names:
            return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

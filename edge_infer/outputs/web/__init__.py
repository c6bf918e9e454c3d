"""The live view (`outputs: [..., web]`): the page, MJPEG streams and snapshots per camera, status and metrics.

config.py (the `web:` section), frames.py (capture copies, encoders, the shared JPEG), server.py (HTTP),
metrics.py (Prometheus text), output.py (the output that ties them to the run).
"""

from .config import WebConfig
from .frames import FrameGrabber, JpegHub
from .metrics import Histogram, render_metrics
from .output import WebOutput
from .server import BOUNDARY

__all__ = ["BOUNDARY", "FrameGrabber", "Histogram", "JpegHub", "WebConfig", "WebOutput", "render_metrics"]

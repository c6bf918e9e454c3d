"""picamera2/devices/imx500/__init__.py (without the postprocess_* helpers)."""

from .imx500 import IMX500, NetworkIntrinsics

__all__ = ["IMX500", "NetworkIntrinsics"]

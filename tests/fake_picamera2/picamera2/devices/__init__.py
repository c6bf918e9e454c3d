"""picamera2/devices/__init__.py: only the IMX500 (its import is not guarded, so a missing dependency of the
IMX500 helper fails `import picamera2.devices` as a whole)."""

from .imx500 import IMX500

__all__ = ["IMX500"]

"""edge-infer: on-device image classification for Raspberry Pi and other ARM boards."""

__version__ = "0.1.0"

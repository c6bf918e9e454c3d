"""Stands in for pykms (kmsxx's Python bindings, Raspberry Pi OS's python3-kms++), which Debian does not package.

picamera2's DRM preview imports it at import time and reads these pixel formats into its format table
(picamera2/previews/drm_preview.py:7-13, FMT_MAP at :51-61); edge-infer never shows a preview, so nothing else of
it is used.
"""


class PixelFormat:
    RGB888 = BGR888 = XRGB8888 = XBGR8888 = YUV420 = YVU420 = ABGR8888 = ARGB8888 = None

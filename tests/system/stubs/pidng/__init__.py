"""Stands in for PiDNG, whose PyPI release is a source package with a C extension: picamera2 imports two of its
names at import time (picamera2/request.py:14-15) and uses them only to save raw DNG files, which edge-infer never
does."""

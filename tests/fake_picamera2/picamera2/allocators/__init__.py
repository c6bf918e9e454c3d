"""picamera2/allocators/__init__.py's names; the stand-in's classes live in picamera2/__init__.py."""

from picamera2 import DmaAllocator, LibcameraAllocator

__all__ = ["DmaAllocator", "LibcameraAllocator"]

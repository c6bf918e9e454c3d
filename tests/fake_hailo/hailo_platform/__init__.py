"""Stand-in for HailoRT's `hailo_platform` package (hailo-ai/hailort v4.23.0,
hailort/libhailort/bindings/python/platform/hailo_platform/__init__.py): the names it exports that edge-infer and
picamera2's devices/hailo/hailo.py import, and its __version__ (the library's; the real package refuses to import
when _pyhailort's differs). The implementation, and the machine it pretends to have, are in pyhailort/pyhailort.py.
"""

from hailo_platform.pyhailort.pyhailort import (  # noqa: F401 - re-exported as upstream does
    HEF,
    Device,
    FormatOrder,
    FormatType,
    HailoRTException,
    HailoSchedulingAlgorithm,
    VDevice,
)

__version__ = "4.23.0"

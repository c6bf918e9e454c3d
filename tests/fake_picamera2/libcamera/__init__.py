"""Stands in for libcamera's Python bindings (src/py/libcamera) in the Picamera2 tests: the two
value types edge-infer passes to Picamera2, and the control enum it sets."""

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Transform:
    hflip: bool = False
    vflip: bool = False


@dataclass(frozen=True)
class ColorSpace:
    name: str

    # The static constructors of py_color_space.cpp:44-49.
    @staticmethod
    def Sycc() -> "ColorSpace":  # noqa: N802 - libcamera's names
        return ColorSpace("Sycc")

    @staticmethod
    def Smpte170m() -> "ColorSpace":  # noqa: N802
        return ColorSpace("Smpte170m")

    @staticmethod
    def Rec709() -> "ColorSpace":  # noqa: N802
        return ColorSpace("Rec709")


class controls:  # noqa: N801 - libcamera's name: a class of the _libcamera module, re-exported by __init__.py
    """py_controls_generated.cpp.in gives each enum control an enum <Name>Enum whose values drop the names'
    common prefix (gen-py-controls.py, extend_control); the values are control_ids_core.yaml's."""

    class AfModeEnum(enum.IntEnum):
        Manual = 0
        Auto = 1
        Continuous = 2

"""Stands in for libcamera's Python bindings (src/py/libcamera) in the Picamera2 tests: the two
value types edge-infer passes to Picamera2."""

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

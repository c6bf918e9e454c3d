"""Stands in for libcamera's Python bindings (src/py/libcamera) in the Picamera2 tests: the two
value types edge-infer passes to Picamera2, the control enum it sets, and the geometry types picamera2's IMX500
helper uses (py_geometry.cpp; the methods as src/libcamera/geometry.cpp has them). Like the bindings, the
geometry types take only integers (pybind11 refuses a float for an int) and no negative width or height
(unsigned int); to_tuple() is not theirs: picamera2/__init__.py:64-76 adds it."""

from __future__ import annotations

import enum
import operator
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
    def Sycc() -> ColorSpace:  # noqa: N802 - libcamera's names
        return ColorSpace("Sycc")

    @staticmethod
    def Smpte170m() -> ColorSpace:  # noqa: N802
        return ColorSpace("Smpte170m")

    @staticmethod
    def Rec709() -> ColorSpace:  # noqa: N802
        return ColorSpace("Rec709")


class controls:  # noqa: N801 - libcamera's name: a class of the _libcamera module, re-exported by __init__.py
    """py_controls_generated.cpp.in gives each enum control an enum <Name>Enum whose values drop the names'
    common prefix (gen-py-controls.py, extend_control); the values are control_ids_core.yaml's."""

    class AfModeEnum(enum.IntEnum):
        Manual = 0
        Auto = 1
        Continuous = 2


def _int(value: object, unsigned: bool = False) -> int:
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None or (unsigned and number < 0):
        raise TypeError(f"incompatible function arguments: {value!r} is not {'an unsigned ' if unsigned else 'an '}int")
    return number


class Point:
    def __init__(self, x: int = 0, y: int = 0) -> None:
        self.x, self.y = _int(x), _int(y)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __neg__(self) -> Point:
        return Point(-self.x, -self.y)

    def __repr__(self) -> str:
        return f"libcamera.Point({self.x}, {self.y})"


class Size:
    def __init__(self, width: int = 0, height: int = 0) -> None:
        self.width, self.height = _int(width, unsigned=True), _int(height, unsigned=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and (self.width, self.height) == (other.width, other.height)

    @property
    def is_null(self) -> bool:
        return not self.width and not self.height

    def bounded_to(self, bound: Size) -> Size:  # geometry.cpp Size::boundedTo
        return Size(min(self.width, bound.width), min(self.height, bound.height))

    def bounded_to_aspect_ratio(self, ratio: Size) -> Size:  # geometry.cpp:290-303
        assert ratio.width and ratio.height
        ratio1, ratio2 = self.width * ratio.height, ratio.width * self.height
        if ratio1 > ratio2:
            return Size(ratio2 // ratio.height, self.height)
        return Size(self.width, ratio1 // ratio.width)

    def centered_to(self, center: Point) -> Rectangle:  # geometry.cpp:339-345
        return Rectangle(center.x - self.width // 2, center.y - self.height // 2, self.width, self.height)

    def __repr__(self) -> str:
        return f"libcamera.Size({self.width}, {self.height})"


class Rectangle:
    def __init__(self, *args: object) -> None:
        """Rectangle(), Rectangle(Size), Rectangle(x, y, Size) or Rectangle(x, y, width, height) (py_geometry.cpp)."""
        if len(args) == 1 and isinstance(args[0], Size):
            args = (0, 0, args[0])
        if len(args) == 3 and isinstance(args[2], Size):
            args = (args[0], args[1], args[2].width, args[2].height)
        if len(args) not in (0, 4):
            raise TypeError(f"__init__(): incompatible constructor arguments: {args!r}")
        x, y, width, height = args or (0, 0, 0, 0)
        self.x, self.y = _int(x), _int(y)
        self.width, self.height = _int(width, unsigned=True), _int(height, unsigned=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rectangle) and (self.x, self.y, self.width, self.height) == (
            other.x, other.y, other.width, other.height)

    @property
    def is_null(self) -> bool:
        return not self.width and not self.height

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)

    @property
    def center(self) -> Point:  # geometry.cpp:703-706
        return Point(self.x + self.width // 2, self.y + self.height // 2)

    @property
    def topLeft(self) -> Point:  # noqa: N802 - libcamera's name
        return Point(self.x, self.y)

    def bounded_to(self, bound: Rectangle) -> Rectangle:  # geometry.cpp:773-784
        left, top = max(self.x, bound.x), max(self.y, bound.y)
        right = min(self.x + self.width, bound.x + bound.width)
        bottom = min(self.y + self.height, bound.y + bound.height)
        return Rectangle(left, top, max(right - left, 0), max(bottom - top, 0))

    def enclosed_in(self, boundary: Rectangle) -> Rectangle:  # geometry.cpp:804-815
        result = self.bounded_to(Rectangle(self.x, self.y, boundary.size))
        result.x = min(max(result.x, boundary.x), boundary.x + boundary.width - result.width)
        result.y = min(max(result.y, boundary.y), boundary.y + boundary.height - result.height)
        return result

    def scaled_by(self, numerator: Size, denominator: Size) -> Rectangle:  # geometry.cpp:828-835
        return Rectangle(self.x * numerator.width // denominator.width,
                         self.y * numerator.height // denominator.height,
                         self.width * numerator.width // denominator.width,
                         self.height * numerator.height // denominator.height)

    def translated_by(self, point: Point) -> Rectangle:  # geometry.cpp Rectangle::translatedBy
        return Rectangle(self.x + point.x, self.y + point.y, self.width, self.height)

    def __repr__(self) -> str:
        return f"libcamera.Rectangle({self.x}, {self.y}, {self.width}, {self.height})"

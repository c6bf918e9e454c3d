"""Frame -> input tensor: crop to the model's aspect, scale to its resolution, BGR -> RGB, quantize.

MobileNet's resolution multiplier rho sets the input to 224*rho (128/160/192/224); whatever the
camera gives is scaled to that here. Buffers are allocated once per frame size, and the result is
written straight into the interpreter's input tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from ..models.tensors import MOBILENET_NORMALIZATION, TensorSpec
from ..values import Box, Window, center_window


@dataclass(frozen=True)
class PreprocessConfig:
    crop: Literal["center", "stretch", "letterbox"] = "center"
    interpolation: Literal["box_linear", "area", "linear", "nearest", "cubic"] = "box_linear"
    # real input = (pixel - mean) / std. null: what the model's metadata says (models built by
    # `edge-infer models build`), else 127.5 / 127.5: MobileNets are trained on [-1, 1].
    mean: float | None = None
    std: float | None = field(default=None, metadata={"min": 1e-6})


def normalization(config: PreprocessConfig, packed: Mapping[str, object]) -> tuple[float, float]:
    """(mean, std): the configured values, else the model's own metadata, else MobileNet's [-1, 1]."""
    mean = config.mean if config.mean is not None else packed.get("mean", MOBILENET_NORMALIZATION[0])
    std = config.std if config.std is not None else packed.get("std", MOBILENET_NORMALIZATION[1])
    return float(mean), float(std)  # type: ignore[arg-type]

INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST,
                 "cubic": cv2.INTER_CUBIC, "box_linear": cv2.INTER_LINEAR}


@dataclass(frozen=True)
class ResizePlan:
    source: Window  # the part of the frame that is kept
    target: Window  # where it lands in the model's input (smaller than the input only for letterbox)


def plan_resize(frame_height: int, frame_width: int, input_height: int, input_width: int, crop: str) -> ResizePlan:
    """Which frame pixels go where, for crop = center (fill, cut the sides), stretch, or letterbox (fit, pad)."""
    whole_frame = Window(0, 0, frame_width, frame_height)
    whole_input = Window(0, 0, input_width, input_height)
    if crop == "stretch":
        return ResizePlan(whole_frame, whole_input)
    if crop == "center":
        return ResizePlan(center_window(frame_width, frame_height, input_width, input_height), whole_input)
    if crop == "letterbox":
        # The whole frame fits inside the input: the input's window with the frame's aspect ratio.
        fitted = center_window(input_width, input_height, frame_width, frame_height)
        return ResizePlan(whole_frame, Window(fitted.x, fitted.y, max(1, fitted.width), max(1, fitted.height)))
    raise ValueError(f"unknown crop mode {crop!r}")


def plan_region(frame_height: int, frame_width: int, box: Box, input_height: int, input_width: int,
                crop: str) -> ResizePlan:
    """`plan_resize` for the part of the frame inside `box`: the region is treated as a frame of its own."""
    x, y, width, height = box.pixels(frame_width, frame_height)
    plan = plan_resize(height, width, input_height, input_width, crop)
    kept = plan.source
    return ResizePlan(Window(kept.x + x, kept.y + y, kept.width, kept.height), plan.target)


def halvings(source: Window, width: int, height: int) -> tuple[Window, list[tuple[int, int]]]:
    """How "box_linear" shrinks `source` to (width, height): 2x2 box-filter halvings, then linear.

    INTER_AREA is an exact box filter but slow at fractional ratios; OpenCV's 2x case is a fast
    special path (0.11 ms for 720x720 -> 360x360 here, against 0.57 ms for 3x). So the window is
    halved while it stays at least twice the target, and INTER_LINEAR does the remaining factor
    below 2, where it no longer aliases. The window is trimmed to whole 2^n blocks (fewer than 2^n
    rows and columns, split between both sides) so every halving is exact.
    Returns the trimmed window and the size after each halving.
    """
    n = 0
    while source.width >= width << (n + 1) and source.height >= height << (n + 1):
        n += 1
    if n == 0:
        return source, []
    block = 1 << n
    trimmed_width, trimmed_height = source.width // block * block, source.height // block * block
    trimmed = Window(source.x + (source.width - trimmed_width) // 2, source.y + (source.height - trimmed_height) // 2,
                     trimmed_width, trimmed_height)
    return trimmed, [(trimmed_width >> i, trimmed_height >> i) for i in range(1, n + 1)]


def pixel_to_input(spec: TensorSpec, mean: float, std: float) -> tuple[float, float]:
    """(gain, offset) with tensor value = pixel * gain + offset.

    The model wants real = (pixel - mean) / std, stored as q = real / scale + zero_point when
    quantized. For the common uint8 MobileNets (scale 1/128, zero point 128, mean = std = 127.5)
    this is q ~= pixel, so the pixels go in as they are.
    """
    if spec.scale == 0:  # float input
        return 1.0 / std, -mean / std
    gain = 1.0 / (std * spec.scale)
    return gain, spec.zero_point - mean * gain


class Preprocessor:
    """Writes frames into an input tensor of `spec`. Not thread-safe: one per inference loop."""

    def __init__(self, spec: TensorSpec, *, crop: str = "center", interpolation: str = "box_linear",
                 mean: float = MOBILENET_NORMALIZATION[0], std: float = MOBILENET_NORMALIZATION[1],
                 box: Box = Box.WHOLE) -> None:
        self.height, self.width = spec.height, spec.width
        self.crop = crop
        self.box = box  # a region: only this part of each frame is read (a view, never a copy)
        self._interpolation = INTERPOLATION[interpolation]
        self._box_first = interpolation == "box_linear"
        self._dtype = spec.dtype
        gain, offset = pixel_to_input(spec, mean, std)
        # Within half a quantization step of a plain copy (or of a copy shifted by 128 for int8)
        # the exact arithmetic would round to the same values.
        near_unit_gain = abs(gain - 1.0) * 255 < 1.0
        if spec.dtype is np.uint8 and near_unit_gain and abs(offset) < 1.0:
            self._mode = "copy"
        elif spec.dtype is np.int8 and near_unit_gain and abs(offset + 128) < 1.0:
            self._mode = "flip_sign_bit"  # pixel - 128 as int8 is pixel XOR 0x80
        else:
            self._mode = "affine"
        self._gain, self._offset = np.float32(gain), np.float32(offset)
        self._pad_value = int(np.clip(round(mean), 0, 255))  # pads become ~0 after normalisation
        self._rgb = np.empty((self.height, self.width, 3), np.uint8)
        self._real = np.empty((self.height, self.width, 3), np.float32) if self._mode == "affine" else None
        self._frame_shape: tuple[int, int] | None = None
        self._plan: ResizePlan | None = None
        self._scaled: np.ndarray | None = None  # BGR at the target window's size
        self._halved: list[np.ndarray] = []  # BGR after each box_linear halving

    def _prepare(self, frame_shape: tuple[int, int]) -> tuple[ResizePlan, np.ndarray]:
        """Plan and buffers for this frame size; recomputed only when the size changes."""
        if frame_shape != self._frame_shape or self._plan is None or self._scaled is None:
            plan = plan_region(*frame_shape, self.box, self.height, self.width, self.crop)
            self._halved = []
            if self._box_first:
                trimmed, sizes = halvings(plan.source, plan.target.width, plan.target.height)
                plan = ResizePlan(trimmed, plan.target)
                self._halved = [np.empty((h, w, 3), np.uint8) for w, h in sizes]
            self._plan = plan
            self._scaled = np.empty((plan.target.height, plan.target.width, 3), np.uint8)
            self._frame_shape = frame_shape
            self._rgb.fill(self._pad_value)
        return self._plan, self._scaled

    def __call__(self, image: np.ndarray, out: np.ndarray) -> None:
        """Write BGR `image` (H, W, 3 uint8) into `out`, the (height, width, 3) input tensor view."""
        plan, scaled = self._prepare(image.shape[:2])
        src, dst = plan.source, plan.target
        crop = image[src.y: src.y + src.height, src.x: src.x + src.width]
        for halved in self._halved:
            crop = cv2.resize(crop, halved.shape[1::-1], dst=halved, interpolation=cv2.INTER_AREA)
        if crop.shape[:2] != scaled.shape[:2]:  # Picamera2's lores stream arrives at the right size
            crop = cv2.resize(crop, (dst.width, dst.height), dst=scaled, interpolation=self._interpolation)
        scaled = crop
        if dst.width == self.width and dst.height == self.height:
            if self._mode == "copy":
                cv2.cvtColor(scaled, cv2.COLOR_BGR2RGB, dst=out)
                return
            cv2.cvtColor(scaled, cv2.COLOR_BGR2RGB, dst=self._rgb)
        else:  # letterbox: the padding around the window was filled once in _prepare
            self._rgb[dst.y: dst.y + dst.height, dst.x: dst.x + dst.width] = scaled[..., ::-1]
        if self._mode == "copy":
            out[...] = self._rgb
        elif self._mode == "flip_sign_bit":
            np.bitwise_xor(self._rgb, 0x80, out=out.view(np.uint8))
        else:
            assert self._real is not None
            np.multiply(self._rgb, self._gain, out=self._real)
            self._real += self._offset
            if self._dtype is np.float32:
                out[...] = self._real
            else:
                info = np.iinfo(self._dtype)
                np.rint(self._real, out=self._real)
                np.clip(self._real, info.min, info.max, out=self._real)
                out[...] = self._real

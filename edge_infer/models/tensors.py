"""The input and output tensors of an image classifier, as the interpreter describes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError
from .files import ModelFile

SUPPORTED_DTYPES = (np.uint8, np.int8, np.float32)
# (mean, std): MobileNets are trained on pixels scaled to [-1, 1], i.e. (pixel - 127.5) / 127.5.
MOBILENET_NORMALIZATION = (127.5, 127.5)


@dataclass(frozen=True)
class TensorSpec:
    index: int
    shape: tuple[int, ...]
    dtype: type
    scale: float  # real = scale * (q - zero_point); scale 0 means not quantized
    zero_point: int

    # An image tensor is [1, height, width, channels].
    @property
    def height(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[2]


def tensor_spec(details: dict[str, Any]) -> TensorSpec:
    scale, zero_point = details.get("quantization", (0.0, 0))
    return TensorSpec(int(details["index"]), tuple(int(d) for d in details["shape"]),
                      np.dtype(details["dtype"]).type, float(scale), int(zero_point))


def classifier_tensors(model: ModelFile, inputs: list[dict[str, Any]],
                       outputs: list[dict[str, Any]]) -> tuple[TensorSpec, TensorSpec]:
    """The (input, output) of an image classifier: [1, H, W, 3] in, [1, classes] out."""
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"'{model.path}' is not an image classifier: it has {len(inputs)} inputs and "
                         f"{len(outputs)} outputs, a classifier has one of each")
    image, scores = tensor_spec(inputs[0]), tensor_spec(outputs[0])
    if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] != 3 or image.dtype not in SUPPORTED_DTYPES:
        raise ModelError(f"'{model.path}' is not an image classifier: its input is {list(image.shape)} "
                         f"{image.dtype.__name__}, not [1, height, width, 3] uint8/int8/float32")
    if len(scores.shape) != 2 or scores.shape[0] != 1 or scores.shape[1] < 2 or scores.dtype not in SUPPORTED_DTYPES:
        raise ModelError(f"'{model.path}' is not an image classifier: its output is {list(scores.shape)}, "
                         "not [1, classes] (a feature extractor or a detector?)")
    return image, scores

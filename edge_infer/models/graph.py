"""What a model computes, read from its graph: op histogram, multiply-accumulates and parameters.

MobileNet's cost model: a standard KxK convolution costs H*W*Cout*K*K*Cin MACs; the depthwise
separable one that replaces it costs H*W*Cin*K*K (depthwise) + H*W*Cin*Cout (pointwise 1x1).
The width multiplier alpha scales every Cin and Cout, so cost ~ alpha^2; the resolution multiplier
rho scales H and W, so cost ~ rho^2. Counting from the graph checks a file against those tables.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from .runtime import Interpreter


@dataclass(frozen=True)
class GraphCost:
    ops: dict[str, int]  # op name -> how many
    macs: int | None  # None when the graph is an accelerator's opaque custom op
    params: int | None

    @property
    def macs_m(self) -> float | None:
        return round(self.macs / 1e6, 2) if self.macs is not None else None

    @property
    def params_m(self) -> float | None:
        return round(self.params / 1e6, 3) if self.params is not None else None


def layer_cost(op: str, weights: tuple[int, ...], output: tuple[int, ...]) -> int:
    """MACs of one CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED, from its weight and output shapes."""
    if op == "CONV_2D":  # weights [Cout, Kh, Kw, Cin], output [1, H, W, Cout]
        _, kernel_h, kernel_w, channels_in = weights
        return int(np.prod(output)) * kernel_h * kernel_w * channels_in
    if op == "DEPTHWISE_CONV_2D":  # weights [1, Kh, Kw, Cout]: one KxK filter per output channel
        _, kernel_h, kernel_w, _ = weights
        return int(np.prod(output)) * kernel_h * kernel_w
    if op == "FULLY_CONNECTED":  # weights [Cout, Cin], output [..., Cout]
        return int(np.prod(output)) * weights[1]
    return 0


WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def graph_cost(ops: list[dict[str, Any]], tensors: list[dict[str, Any]]) -> GraphCost:
    """Cost from an interpreter's op details (`_get_ops_details()`) and tensor details."""
    histogram = Counter(op["op_name"] for op in ops)
    if any(name.startswith("edgetpu") or name.endswith("custom-op") for name in histogram):
        return GraphCost(dict(histogram), None, None)
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in tensors}
    macs = 0
    counted: set[int] = set()  # a weight tensor shared by two ops is one set of parameters
    params = 0
    for op in ops:
        if op["op_name"] not in WEIGHTED_OPS:
            continue
        inputs = [int(i) for i in op["inputs"] if i >= 0]
        macs += layer_cost(op["op_name"], shapes[inputs[1]], shapes[int(op["outputs"][0])])
        for tensor in inputs[1:]:  # weights, then bias
            if tensor not in counted:
                counted.add(tensor)
                params += int(np.prod(shapes[tensor]))
    return GraphCost(dict(histogram), macs, params)


def interpreter_cost(interpreter: Interpreter) -> GraphCost:
    """The cost of the graph an interpreter holds (the op details are LiteRT's own, underscored API)."""
    return graph_cost(interpreter._get_ops_details(), interpreter.get_tensor_details())  # type: ignore[attr-defined]

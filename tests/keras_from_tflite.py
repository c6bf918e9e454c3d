"""A trained Keras MobileNet V1 without the internet: the weights of a ../shared quantized model,
dequantized and put into keras.applications' architecture (the same network as TF-Slim's).

The TFLite model has each batch norm folded into its convolution (weights and bias), so the Keras
batch norms become identities that only add that bias.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def dequantized(interpreter, index: int) -> np.ndarray:
    detail = next(d for d in interpreter.get_tensor_details() if d["index"] == index)
    scale, zero_point = detail["quantization"]
    return (interpreter.get_tensor(index).astype(np.float32) - zero_point) * scale


def trained_mobilenet_v1(path: Path, alpha: float, resolution: int):
    import keras
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    layers = [op for op in interpreter._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    model = keras.applications.MobileNet(input_shape=(resolution, resolution, 3), alpha=alpha, weights=None,
                                         classes=1001)
    convolutions = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D,
                                                                           keras.layers.DepthwiseConv2D))]
    assert len(convolutions) == len(layers), (len(convolutions), len(layers))
    by_name = {layer.name: layer for layer in model.layers}
    for op, layer in zip(layers, convolutions, strict=True):
        weights = dequantized(interpreter, op["inputs"][1])
        bias = dequantized(interpreter, op["inputs"][2])
        # CONV_2D [out, h, w, in] -> [h, w, in, out]; DEPTHWISE_CONV_2D [1, h, w, c] -> [h, w, c, 1].
        kernel = weights.transpose(1, 2, 3, 0)
        if layer.name == "conv_preds":
            layer.set_weights([kernel, bias])
            continue
        layer.set_weights([kernel])
        norm = by_name[f"{layer.name}_bn"]
        channels = bias.shape[0]
        # (x - 0) / sqrt((1 - eps) + eps) * 1 + bias = x + bias
        norm.set_weights([np.ones(channels), bias, np.zeros(channels), np.full(channels, 1 - norm.epsilon)])
    return model

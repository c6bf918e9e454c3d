"""A MobileNet's TFLite graph cut at its embedding, and a new classifier head put on it.

A MobileNet classifier ends embedding -> logits (a 1x1 CONV_2D or a FULLY_CONNECTED over the pooled
features) -> [RESHAPE] -> SOFTMAX [-> QUANTIZE]; an embedding extractor (Coral's imprinting base) ends
at the pooled features. `embedding_point` finds the pooled features' tensor by walking back from the
output; `cut` keeps the operators up to it (the extractor `teach` computes embeddings with), and
`with_head` appends FULLY_CONNECTED + SOFTMAX with the taught weights, in the base's quantization:
- float base: float weights;
- uint8 base (TF1 quantization-aware MobileNets): uint8 weights with their own zero point, int32 bias,
  uint8 logits, uint8 softmax (scale 1/256, zero point 0, as TFLite's quantized SOFTMAX requires);
- int8 base (TF2 post-training quantization): int8 weights (zero point 0), int32 bias, int8 logits,
  int8 softmax (1/256, -128), then QUANTIZE to uint8 when the base's output was uint8.
The graph is edited with the TFLite schema's object API (ai_edge_litert.schema_py_generated), so no
TensorFlow is needed. The base's metadata describing its 1001 outputs is dropped; `teach` packs the
taught labels as `models build` does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EdgeInferError, ModelError
from ..models.files import TFLITE_ID

# Between the logits and the output: ops that only reshape, normalize or requantize the scores.
PASS_THROUGH = ("RESHAPE", "SQUEEZE", "SOFTMAX", "QUANTIZE", "DEQUANTIZE")
LOGITS = ("CONV_2D", "FULLY_CONNECTED")
SOFTMAX_SCALE = 1.0 / 256  # TFLite's quantized SOFTMAX output: [0, 1) in 256 steps


def schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:
        raise EdgeInferError("teaching needs the ai-edge-litert package (its TFLite schema): "
                             "pip install ai-edge-litert") from exc
    return schema_py_generated


@dataclass(frozen=True)
class Quantization:
    """A tensor's affine quantization (real = scale * (q - zero_point)); scale 0: a float tensor."""

    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return values.astype(np.float32)
        return (values.astype(np.float32) - self.zero_point) * self.scale


@dataclass(frozen=True)
class EmbeddingPoint:
    """Where a base model's embedding is: its tensor, the operator making it, its size and quantization,
    and the quantization of the base's output (kept by the taught model)."""

    tensor: int
    operator: int  # index of the op whose output it is; the cut keeps ops 0..operator
    size: int
    quantization: Quantization
    output_dtype: np.dtype


def builtin(code: Any) -> int:
    """An operator code's builtin op: the int32 field, or the old int8 one for files written before it."""
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def op_name(model: Any, op: Any) -> str:
    number = builtin(model.operatorCodes[op.opcodeIndex])
    return enum_names(schema().BuiltinOperator).get(number, str(number))


@functools.cache
def enum_names(kind: type) -> dict[int, str]:
    """A schema enum's values by name, read once (BuiltinOperator: 200 of them)."""
    return {value: name for name, value in vars(kind).items() if not name.startswith("_")}


# The tensor types a MobileNet embedding and the head use, by the schema's names.
TENSOR_DTYPES = {"UINT8": np.dtype(np.uint8), "INT8": np.dtype(np.int8), "FLOAT32": np.dtype(np.float32),
                 "INT32": np.dtype(np.int32)}


def tensor_quantization(tensor: Any) -> Quantization:
    s = schema()
    type_name = enum_names(s.TensorType).get(tensor.type, str(tensor.type))
    if type_name not in ("UINT8", "INT8", "FLOAT32"):
        raise ModelError(f"tensor {tensor.name!r} is {type_name}: a base for teaching is float32, uint8 or int8")
    dtype = TENSOR_DTYPES[type_name]
    q = tensor.quantization
    scales = [] if q is None or q.scale is None else list(q.scale)
    if len(scales) > 1:
        raise ModelError(f"tensor {tensor.name!r} is quantized per channel: not a MobileNet embedding")
    scale = float(scales[0]) if scales else 0.0
    zero_point = int(q.zeroPoint[0]) if scale and q.zeroPoint is not None and len(q.zeroPoint) else 0
    return Quantization(dtype, scale, zero_point)


def load(content: bytes) -> Any:
    model = schema().ModelT.InitFromPackedBuf(bytearray(content), 0)
    if len(model.subgraphs) != 1:
        raise ModelError(f"the base has {len(model.subgraphs)} subgraphs; a MobileNet has one")
    return model


def producers(graph: Any) -> dict[int, int]:
    return {int(out): number for number, op in enumerate(graph.operators) for out in op.outputs}


def embedding_point(content: bytes) -> EmbeddingPoint:
    """The pooled features a classifier's logits are computed from (or an extractor's output)."""
    model = load(content)
    graph = model.subgraphs[0]
    if len(graph.outputs) != 1 or len(graph.inputs) != 1:
        raise ModelError("the base is not a MobileNet: it has more than one input or output")
    if any(op_name(model, op) == "CUSTOM" for op in graph.operators):
        raise ModelError("the base is compiled for an accelerator (a custom op): teach on its CPU build, then "
                         "compile the taught model")
    made_by = producers(graph)
    output = int(graph.outputs[0])
    tensor = output
    while True:
        number = made_by.get(tensor)
        if number is None:
            raise ModelError("the base's output comes from no operator: not a MobileNet")
        op = graph.operators[number]
        name = op_name(model, op)
        if name in PASS_THROUGH:
            tensor = int(op.inputs[0])
            continue
        kernel = [int(d) for d in graph.tensors[int(op.inputs[1])].shape[1:3]] if len(op.inputs) > 1 else []
        if name in LOGITS and (name == "FULLY_CONNECTED" or kernel == [1, 1]):
            tensor = int(op.inputs[0])  # the logits' input: the embedding
            number = made_by[tensor]
        break  # an extractor: its output (after any requantization) is the embedding
    shape = [int(d) for d in graph.tensors[tensor].shape]
    if len(shape) not in (2, 4) or shape[0] != 1 or (len(shape) == 4 and shape[1:3] != [1, 1]):
        raise ModelError(f"the base's features before its logits are {shape}, not a pooled embedding "
                         "[1, 1, 1, C] or [1, C]: not a MobileNet classifier or embedding extractor")
    return EmbeddingPoint(tensor, number, shape[-1], tensor_quantization(graph.tensors[tensor]),
                          tensor_quantization(graph.tensors[output]).dtype)


def prune(model: Any, keep_ops: int, outputs: list[int]) -> None:
    """Keep operators 0..keep_ops-1, end the graph at `outputs`, and empty the buffers no kept op reads."""
    graph = model.subgraphs[0]
    graph.operators = graph.operators[:keep_ops]
    graph.outputs = np.array(outputs, np.int32)
    used = {int(graph.tensors[t].buffer) for op in graph.operators for t in op.inputs if t >= 0}
    used |= {int(graph.tensors[t].buffer) for t in graph.inputs}
    for number, tensor in enumerate(graph.tensors):
        if int(tensor.buffer) not in used and number not in outputs:
            model.buffers[tensor.buffer].data = None
    model.signatureDefs = None  # they name the base's outputs
    model.metadata = [m for m in (model.metadata or []) if m.name == b"min_runtime_version"]


def serialize(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_ID)
    return bytes(builder.Output())


def cut(content: bytes, point: EmbeddingPoint) -> bytes:
    """The base up to its embedding: an extractor whose output is the embedding tensor."""
    model = load(content)
    prune(model, point.operator + 1, [point.tensor])
    return serialize(model)


@dataclass(frozen=True)
class HeadWeights:
    """A linear classifier over the (dequantized) embedding: logits = embedding @ weights.T + bias."""

    weights: np.ndarray  # [classes, size] float32
    bias: np.ndarray  # [classes] float32
    logit_range: tuple[float, float]  # the logits seen in training, for the quantized output's scale


def operator_code(model: Any, name: str) -> int:
    s = schema()
    number = getattr(s.BuiltinOperator, name)
    for index, code in enumerate(model.operatorCodes):
        if builtin(code) == number:
            return index
    code = s.OperatorCodeT()
    code.builtinCode = number
    code.deprecatedBuiltinCode = min(number, 127)  # the old int8 field: placeholder above 127, as converters write
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def add_tensor(model: Any, name: str, shape: list[int], dtype: np.dtype, quantization: Quantization | None,
               data: np.ndarray | None = None) -> int:
    s = schema()
    graph = model.subgraphs[0]
    buffer = s.BufferT()
    buffer.data = None if data is None else np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
    model.buffers.append(buffer)
    tensor = s.TensorT()
    tensor.name = name.encode()
    tensor.shape = np.array(shape, np.int32)
    tensor.type = getattr(s.TensorType, next(name for name, known in TENSOR_DTYPES.items() if known == dtype))
    tensor.buffer = len(model.buffers) - 1
    if quantization is not None and quantization.quantized:
        params = s.QuantizationParametersT()
        params.scale = np.array([quantization.scale], np.float32)
        params.zeroPoint = np.array([quantization.zero_point], np.int64)
        tensor.quantization = params
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def add_op(model: Any, name: str, inputs: list[int], outputs: list[int], options_type: int | None = None,
           options: Any = None) -> None:
    s = schema()
    op = s.OperatorT()
    op.opcodeIndex = operator_code(model, name)
    op.inputs = np.array(inputs, np.int32)
    op.outputs = np.array(outputs, np.int32)
    if options_type is not None:
        op.builtinOptionsType = options_type
        op.builtinOptions = options
    model.subgraphs[0].operators.append(op)


def quantize_weights(weights: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, Quantization]:
    """Per-tensor affine weights: uint8 over [min, max] (with 0 exactly representable), int8 symmetric."""
    if dtype == np.int8:  # TFLite's int8 FULLY_CONNECTED wants symmetric weights (zero point 0)
        scale = max(float(np.abs(weights).max()), 1e-8) / 127
        return np.clip(np.round(weights / scale), -127, 127).astype(np.int8), Quantization(np.dtype(np.int8), scale, 0)
    low, high = min(float(weights.min()), 0.0), max(float(weights.max()), 0.0)
    scale = max(high - low, 1e-8) / 255
    zero_point = int(np.clip(round(-low / scale), 0, 255))
    q = np.clip(np.round(weights / scale) + zero_point, 0, 255).astype(np.uint8)
    return q, Quantization(np.dtype(np.uint8), scale, zero_point)


def output_quantization(low: float, high: float, dtype: np.dtype) -> Quantization:
    """Logits' quantization over [low, high] widened by a quarter each way (frames unlike the training set)."""
    span = max(high - low, 1e-3)
    low, high = min(low - span / 4, 0.0), max(high + span / 4, 0.0)
    scale = (high - low) / 255
    if dtype == np.int8:
        return Quantization(dtype, scale, int(np.clip(round(-128 - low / scale), -128, 127)))
    return Quantization(dtype, scale, int(np.clip(round(-low / scale), 0, 255)))


def with_head(content: bytes, point: EmbeddingPoint, head: HeadWeights) -> bytes:
    """The base cut at its embedding, with FULLY_CONNECTED + SOFTMAX computing the taught classes."""
    s = schema()
    model = load(content)
    prune(model, point.operator + 1, [point.tensor])
    classes = head.weights.shape[0]
    embedding = point.quantization
    if embedding.quantized:
        weights, weight_q = quantize_weights(head.weights, embedding.dtype)
        bias_scale = embedding.scale * weight_q.scale  # what the int32 accumulator counts in
        bias = np.round(head.bias / bias_scale).astype(np.int32)
        bias_q: Quantization | None = Quantization(np.dtype(np.int32), bias_scale, 0)
        logits_q: Quantization | None = output_quantization(*head.logit_range, embedding.dtype)
        scores_q = Quantization(embedding.dtype, SOFTMAX_SCALE, -128 if embedding.dtype == np.int8 else 0)
        logits_dtype = embedding.dtype
    else:
        weights, weight_q = head.weights.astype(np.float32), None
        bias, bias_q, logits_q, scores_q = head.bias.astype(np.float32), None, None, None
        logits_dtype = np.dtype(np.float32)
    weight_tensor = add_tensor(model, "teach/weights", [classes, point.size], weights.dtype, weight_q, weights)
    bias_tensor = add_tensor(model, "teach/bias", [classes], bias.dtype, bias_q, bias)
    logits = add_tensor(model, "teach/logits", [1, classes], logits_dtype, logits_q)
    options = s.FullyConnectedOptionsT()
    options.fusedActivationFunction = s.ActivationFunctionType.NONE
    add_op(model, "FULLY_CONNECTED", [point.tensor, weight_tensor, bias_tensor], [logits],
           s.BuiltinOptions.FullyConnectedOptions, options)
    scores = add_tensor(model, "teach/scores", [1, classes], logits_dtype, scores_q)
    softmax = s.SoftmaxOptionsT()
    softmax.beta = 1.0
    add_op(model, "SOFTMAX", [logits], [scores], s.BuiltinOptions.SoftmaxOptions, softmax)
    output = scores
    if scores_q is not None and scores_q.dtype == np.int8 and point.output_dtype == np.uint8:
        output = add_tensor(model, "teach/scores_uint8", [1, classes], np.dtype(np.uint8),
                            Quantization(np.dtype(np.uint8), SOFTMAX_SCALE, 0))
        add_op(model, "QUANTIZE", [scores], [output])
    model.subgraphs[0].outputs = np.array([output], np.int32)
    return serialize(model)

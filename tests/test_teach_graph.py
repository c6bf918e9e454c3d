"""teach/graph.py: the real MobileNets in ../shared cut at their embedding, and a head put on them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.errors import ModelError
from edge_infer.models.tensors import tensor_spec
from edge_infer.pipeline.preprocess import Preprocessor
from edge_infer.teach.graph import HeadWeights, cut, embedding_point, load, prune, serialize, with_head

BASES = {  # name: (embedding size, its dtype)
    "mobilenet_v1_0.25_128_quant": (256, np.uint8),  # TF1 quantization-aware: logits by a 1x1 CONV_2D
    "mobilenet_v2_1.0_224_quant": (1280, np.uint8),
    "tf2_mobilenet_v2_1.0_224_ptq": (1280, np.int8),  # TF2 post-training quantization, QUANTIZE to uint8 at the end
    "mobilenet_v1_1.0_224_quant_embedding_extractor": (1024, np.uint8),  # Coral's imprinting base: no logits
}


def interpreter(content: bytes, **options):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=1, **options)
    it.allocate_tensors()
    return it


def fill(it, image: np.ndarray) -> None:
    spec = tensor_spec(it.get_input_details()[0])
    Preprocessor(spec)(image, it.tensor(spec.index)()[0])


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")  # reading the base's inner tensor
@pytest.mark.parametrize("name", BASES)
def test_the_cut_computes_exactly_the_bases_own_embedding(models: Path, images: Path, name: str):
    content = (models / f"{name}.tflite").read_bytes()
    point = embedding_point(content)
    assert (point.size, point.quantization.dtype) == (BASES[name][0], np.dtype(BASES[name][1]))
    base = interpreter(content, experimental_preserve_all_tensors=True)
    extractor = interpreter(cut(content, point))
    for photo in ("parrot.jpg", "bird.bmp"):
        image = cv2.imread(str(images / photo))
        fill(base, image)
        fill(extractor, image)
        base.invoke()
        extractor.invoke()
        output = extractor.get_output_details()[0]
        assert list(output["shape"])[-1] == point.size
        np.testing.assert_array_equal(extractor.get_tensor(output["index"]).reshape(-1),
                                      base.get_tensor(point.tensor).reshape(-1))
    assert len(cut(content, point)) < len(content) or "extractor" in name  # the 1001-class logits are gone


@pytest.mark.parametrize("name", BASES)
def test_the_head_computes_softmax_of_the_taught_weights_in_the_bases_quantization(models: Path, images: Path,
                                                                                     name: str):
    content = (models / f"{name}.tflite").read_bytes()
    point = embedding_point(content)
    extractor = interpreter(cut(content, point))
    rng = np.random.default_rng(7)
    weights = rng.normal(0, 1, (4, point.size)).astype(np.float32) / np.sqrt(point.size)
    bias = np.array([0.5, -0.5, 0.0, 0.25], np.float32)
    embeddings, expected = [], []
    photos = [cv2.imread(str(images / p)) for p in ("parrot.jpg", "bird.bmp", "sunflower.bmp", "cat.bmp")]
    for image in photos:
        fill(extractor, image)
        extractor.invoke()
        out = extractor.get_output_details()[0]
        embeddings.append(point.quantization.dequantize(extractor.get_tensor(out["index"]).reshape(-1)))
    logits = np.stack(embeddings) @ weights.T * 8 + bias  # confident enough for the ranking to be clear
    taught = interpreter(with_head(content, point, HeadWeights(weights * 8, bias, (float(logits.min()),
                                                                                     float(logits.max())))))
    scores_detail = taught.get_output_details()[0]
    assert list(scores_detail["shape"]) == [1, 4]
    assert scores_detail["dtype"] == (np.float32 if not point.quantization.quantized else np.uint8)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected = exp / exp.sum(axis=1, keepdims=True)
    for image, want in zip(photos, expected, strict=True):
        fill(taught, image)
        taught.invoke()
        scale, zero_point = scores_detail["quantization"]
        raw = taught.get_tensor(scores_detail["index"])[0].astype(np.float32)
        got = (raw - zero_point) * scale if scale else raw
        assert np.abs(got - want).max() < 0.06, (got, want)  # within the quantization of weights and logits
        if np.diff(np.sort(want))[-1] > 0.1:  # a clear winner stays the winner
            assert np.argmax(got) == np.argmax(want)


def test_an_edge_tpu_build_and_a_model_that_is_no_mobilenet_are_refused(models: Path):
    with pytest.raises(ModelError, match="compiled for an accelerator.*teach on its CPU build"):
        embedding_point((models / "mobilenet_v1_0.25_128_quant_edgetpu.tflite").read_bytes())
    # V1 ended at its last pointwise convolution, [1, 4, 4, 256]: features, but not pooled ones.
    content = (models / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()
    model = load(content)
    last_conv = embedding_point(content).operator - 1
    prune(model, last_conv + 1, [int(model.subgraphs[0].operators[last_conv].outputs[0])])
    with pytest.raises(ModelError, match=r"are \[1, 4, 4, 256\], not a pooled embedding"):
        embedding_point(serialize(model))

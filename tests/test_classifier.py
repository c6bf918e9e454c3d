"""The classifier in-process, on the real runtime and models."""

import os
from dataclasses import replace
from pathlib import Path

import cv2
import pytest

from edge_infer.errors import RuntimeUnavailableError
from edge_infer.models.runtime import load_runtime
from edge_infer.pipeline.classifier import ModelConfig, load_classifier
from edge_infer.pipeline.postprocess import PostprocessConfig
from edge_infer.pipeline.preprocess import PreprocessConfig
from edge_infer.pipeline.stages import FrameClassifier
from edge_infer.values import Frame


def counting_runtime():
    """The real runtime, counting how many interpreters it is asked for."""
    runtime = load_runtime()
    created = []

    def interpreter(**kwargs):
        created.append(kwargs)
        return runtime.interpreter(**kwargs)

    return replace(runtime, interpreter=interpreter), created


def test_one_interpreter_serves_every_frame(models: Path, images: Path):
    runtime, created = counting_runtime()
    classifier = load_classifier(ModelConfig(path=str(models / "mobilenet_v1_0.5_160_quant.tflite")), runtime)
    stages = FrameClassifier(classifier, PreprocessConfig(), PostprocessConfig(top_k=1))
    labels = []
    for seq, name in enumerate(["parrot.jpg", "bird.bmp", "parrot.jpg", "sunflower.bmp"], start=1):
        prepared = stages.prepare(Frame(seq, cv2.imread(str(images / name)), 0.0))
        labels.append(stages.classify(prepared).top[0].label)
    assert labels == ["macaw", "chickadee", "macaw", "daisy"]
    assert len(created) == 1


def test_threads_default_to_the_usable_cores(models: Path):
    runtime, created = counting_runtime()
    classifier = load_classifier(ModelConfig(path=str(models / "mobilenet_v1_0.25_128_quant.tflite")), runtime)
    assert classifier.info.threads == len(os.sched_getaffinity(0)) == created[0]["num_threads"]


def test_runtime_falls_back_in_order():
    runtime = load_runtime(("no_such_runtime.interpreter", "ai_edge_litert.interpreter"))
    assert runtime.name.startswith("ai_edge_litert")


def test_no_runtime_says_what_to_install():
    with pytest.raises(RuntimeUnavailableError, match="pip install ai-edge-litert"):
        load_runtime(("no_such_runtime.interpreter", "another_missing.interpreter"))


def test_prepare_reuses_its_staging_buffers(models: Path, images: Path):
    classifier = load_classifier(ModelConfig(path=str(models / "mobilenet_v1_0.25_128_quant.tflite")))
    stages = FrameClassifier(classifier, PreprocessConfig(), PostprocessConfig(top_k=1))
    image = cv2.imread(str(images / "bird.bmp"))
    first = stages.prepare(Frame(1, image, 0.0))
    assert first.input.shape == (128, 128, 3) and first.preprocess_ms > 0
    address = first.input.__array_interface__["data"][0]
    assert stages.classify(first).top[0].label == "chickadee"  # classify hands the buffer back
    assert stages.prepare(Frame(2, image, 0.0)).input.__array_interface__["data"][0] == address

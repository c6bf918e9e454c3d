"""The region use case of teach: "is the dog in the drive?". The tests compose the region's crops from ../shared:
a street scene (three frames of a street camera) in the light of different hours, with or without a dog (cut
from its photo, at a random place and size, in its own light); teach "present" and "absent" on 20 each, then
the written model, run by the bare LiteRT interpreter, judges crops composed afresh on a frame it was not taught
on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.teach.train import TeachRequest, TeachResult, train

BASE = "mobilenet_v1_0.25_128_quant.tflite"  # small and fast: the region is a small part of a frame
SIDE = 256  # the region's crop, in camera pixels


def cut_out(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object and its mask: an ellipse over the photo's middle, feathered so it has no straight edges."""
    height, width = photo.shape[:2]
    mask = np.zeros((height, width), np.float32)
    cv2.ellipse(mask, (width // 2, height // 2), (int(width * 0.42), int(height * 0.46)), 0, 0, 360, 1.0, -1)
    return photo, cv2.GaussianBlur(mask, (0, 0), max(1.0, width / 40))


def relit(image: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    return cv2.convertScaleAbs(image, alpha=rng.uniform(1 - spread, 1 + spread), beta=rng.uniform(-30, 30))


def compose(background: np.ndarray, thing: tuple[np.ndarray, np.ndarray] | None,
            rng: np.random.Generator) -> np.ndarray:
    """The region at some hour: the background slightly moved and relit, and the object (if any) pasted at a
    random place and size in a light of its own."""
    scale = rng.uniform(1.0, 1.15)  # the camera's crop is never exactly the same
    scene = cv2.resize(background, None, fx=scale * SIDE / background.shape[1], fy=scale * SIDE / background.shape[0])
    y, x = rng.integers(0, scene.shape[0] - SIDE + 1), rng.integers(0, scene.shape[1] - SIDE + 1)
    scene = relit(scene[y: y + SIDE, x: x + SIDE], rng, 0.35).astype(np.float32)
    if thing is not None:
        photo, mask = thing
        size = int(SIDE * rng.uniform(0.3, 0.5))
        placed = cv2.resize(relit(photo, rng, 0.25), (size, size)).astype(np.float32)
        alpha = cv2.resize(mask, (size, size))[..., None]
        top, left = rng.integers(0, SIDE - size + 1), rng.integers(0, SIDE - size + 1)
        window = scene[top: top + size, left: left + size]
        window[...] = alpha * placed + (1 - alpha) * window
    return np.clip(scene, 0, 255).astype(np.uint8)


def write_region_dataset(shared: Path, folder: Path, frames: list[str], per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    dog = cut_out(cv2.imread(str(shared / "scenes" / "dog_segmentation.bmp")))
    backgrounds = [cv2.imread(str(shared / "scenes" / frame)) for frame in frames]
    for name, thing in (("present", dog), ("absent", None)):
        (folder / name).mkdir(parents=True)
        for number in range(per_class):
            image = compose(backgrounds[number % len(backgrounds)], thing, rng)
            cv2.imwrite(str(folder / name / f"{number:03d}.png"), image)
    return folder


@pytest.fixture(scope="module")
def taught(shared: Path, tmp_path_factory) -> tuple[TeachResult, Path]:
    folder = tmp_path_factory.mktemp("region")
    dataset = write_region_dataset(shared, folder / "dataset", ["traffic_0001.bmp", "traffic_0002.bmp"], 20, seed=1)
    result = train(TeachRequest(str(dataset), str(shared / "models" / BASE), str(folder / "dog.tflite"),
                                progress=False))
    return result, folder


def test_present_and_absent_are_learnt_with_high_held_out_accuracy(taught):
    result, _ = taught
    assert result.classes == ("absent", "present") and result.images == (20, 20)
    assert result.method == "softmax regression"
    assert result.evaluation is not None and result.evaluation.folds == 5
    assert result.evaluation.accuracy >= 0.9, result.evaluation.confusion
    assert min(result.evaluation.class_accuracy()) >= 0.85
    assert result.agreement >= 0.95


def test_the_written_model_judges_unseen_crops_of_another_frame_in_the_bare_interpreter(taught, shared: Path):
    from ai_edge_litert.interpreter import Interpreter

    from edge_infer.models.tensors import tensor_spec
    from edge_infer.pipeline.preprocess import Preprocessor

    result, folder = taught
    unseen = write_region_dataset(shared, folder / "unseen", ["traffic_0003.bmp"], 15, seed=2)
    interpreter = Interpreter(model_path=str(result.output))
    interpreter.allocate_tensors()
    spec = tensor_spec(interpreter.get_input_details()[0])
    preprocess = Preprocessor(spec)
    output = interpreter.get_output_details()[0]["index"]
    right = {}
    for index, name in enumerate(result.classes):
        paths = sorted((unseen / name).glob("*.png"))
        picked = []
        for path in paths:
            preprocess(cv2.imread(str(path)), interpreter.tensor(spec.index)()[0])
            interpreter.invoke()
            picked.append(int(np.argmax(interpreter.get_tensor(output)[0])))
        right[name] = picked.count(index) / len(paths)
    assert min(right.values()) >= 0.8 and sum(right.values()) / 2 >= 0.9, right

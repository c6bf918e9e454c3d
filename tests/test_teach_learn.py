"""teach/learn.py: imprinting, softmax regression and the held-out test, on embeddings made up to be known."""

from __future__ import annotations

import numpy as np

from edge_infer.teach.embed import Samples
from edge_infer.teach.graph import HeadWeights
from edge_infer.teach.learn import REGRESSION_MIN, dataset_advice, evaluate, fit, folds_of, imprint, predict


def clusters(per_class: int, centres: np.ndarray, spread: float, variants: int = 3, seed: int = 0) -> Samples:
    """`per_class` images per centre, each with `variants` augmented copies near it (ReLU-like: non-negative)."""
    rng = np.random.default_rng(seed)
    rows, labels, images, original = [], [], [], []
    image = 0
    for label, centre in enumerate(centres):
        for _ in range(per_class):
            picture = np.abs(centre + rng.normal(0, spread, centre.shape))
            for variant in range(variants):
                rows.append(np.abs(picture + rng.normal(0, spread / 4, centre.shape)) if variant else picture)
                labels.append(label)
                images.append(image)
                original.append(variant == 0)
            image += 1
    return Samples(np.array(rows, np.float32), np.array(labels), np.array(images), np.array(original))


CENTRES = np.abs(np.random.default_rng(42).normal(0, 1, (3, 64))) * 3


def test_a_few_shots_are_imprinted_and_recognized():
    samples = clusters(3, CENTRES, 0.5)
    trained = fit(samples, 3)
    assert trained.method == "imprinting"
    unseen = clusters(5, CENTRES, 0.5, variants=1, seed=1)
    assert (predict(trained.head, unseen.embeddings).argmax(axis=1) == unseen.labels).mean() == 1.0
    low, high = trained.head.logit_range
    assert low < high


def test_enough_samples_get_softmax_regression_that_beats_imprinting_on_overlapping_classes():
    close = np.stack([CENTRES[0], CENTRES[0] + CENTRES[1] * 0.3])  # overlapping: a boundary to learn
    samples = clusters(REGRESSION_MIN + 10, close, 1.5, seed=3)
    trained = fit(samples, 2)
    assert trained.method == "softmax regression"
    norm = float(np.linalg.norm(samples.embeddings, axis=1).mean())
    imprinted = HeadWeights((imprint(samples.embeddings / norm, samples.labels, 2) / norm).astype(np.float32),
                            np.zeros(2, np.float32), (0.0, 1.0))
    unseen = clusters(300, close, 1.5, variants=1, seed=4)

    def accuracy(head: HeadWeights) -> float:
        return float((predict(head, unseen.embeddings).argmax(axis=1) == unseen.labels).mean())

    assert accuracy(trained.head) > accuracy(imprinted) and accuracy(trained.head) > 0.8


def test_held_out_folds_keep_an_image_and_its_variants_together_and_test_each_image_once():
    samples = clusters(6, CENTRES, 0.5)
    fold = folds_of(samples, 3, 3)
    for image in set(samples.images.tolist()):
        assert len(set(fold[samples.images == image].tolist())) == 1
    evaluation = evaluate(samples, 3, folds=3)
    assert evaluation is not None and evaluation.folds == 3
    assert evaluation.confusion.sum() == 18 and evaluation.confusion.sum(axis=1).tolist() == [6, 6, 6]
    assert evaluation.accuracy == 1.0 and evaluation.class_accuracy().tolist() == [1.0, 1.0, 1.0]
    assert evaluate(clusters(1, CENTRES, 0.5), 3) is None  # one image in a class: nothing to hold out


def test_too_few_images_and_classes_alike_are_warned_about():
    alike = np.stack([CENTRES[0], CENTRES[0] * 1.01, CENTRES[2]])  # two classes of the same thing
    samples = clusters(4, alike, 0.3)
    said = dataset_advice(samples, ("open", "ajar", "closed"), evaluate(samples, 3))
    assert any(w.startswith("class open: only 4 image(s)") for w in said)
    assert [w for w in said if w.startswith("classes open and ajar look alike")]
    assert not [w for w in said if "closed look alike" in w]

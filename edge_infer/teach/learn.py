"""A linear head over MobileNet embeddings, learnt with numpy, and how well it does on images it did not see.

- Few shots: weight imprinting (Qi, Brown and Lowe, "Low-Shot Learning with Imprinted Weights", CVPR
  2018; the method of Coral's imprinting engine): each class's weight vector is the normalized mean of
  its normalized embeddings, so a class is recognized by the angle between its mean and the embedding.
  The scale of the logits (a temperature) is the one that best explains the training set.
- Enough samples (REGRESSION_MIN images per class): softmax regression (multinomial logistic
  regression with an L2 penalty), started from the imprinted weights, by full-batch Adam.
- Held-out accuracy: k-fold over the images (an image and its augmented variants are always on the same
  side), trained on the variants of the other folds, tested on the held-out images themselves.
Embeddings are divided by their mean length first, so one learning rate and one penalty fit every base.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .embed import Samples
from .graph import HeadWeights

REGRESSION_MIN = 10  # images per class from which softmax regression beats imprinting
FEW = 5  # fewer images than this in a class: warned about
TEMPERATURES = np.geomspace(1.0, 100.0, 41)
ALIKE_CONFUSION = 0.3  # two classes confused this often in held-out tests are "too alike"
ALIKE_COSINE = 0.97  # or class means this close in angle


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def class_means(x: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    return np.stack([unit(unit(x[labels == c]).mean(axis=0)) for c in range(classes)])


def imprint(x: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """[classes, size] weights: each class's normalized mean direction, times the best temperature.

    logits = s * w_c . x (x scaled to unit mean length): the same ranking as the cosine classifier,
    since |x| is common to every class of one input, and a confidence that follows the training set."""
    directions = class_means(x, labels, classes)
    cosines = x @ directions.T
    rows = np.arange(len(labels))
    # The temperature that maximizes the training set's likelihood (temperature scaling, one parameter).
    likelihoods = [np.log(softmax(s * cosines)[rows, labels] + 1e-12).mean() for s in TEMPERATURES]
    return directions * TEMPERATURES[int(np.argmax(likelihoods))]


def regress(x: np.ndarray, labels: np.ndarray, classes: int, weights: np.ndarray, penalty: float = 1e-4,
            steps: int = 300, rate: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression from `weights`: minimizes mean cross-entropy + penalty * |W|^2 with Adam."""
    # float32 like x: a float64 w would make numpy copy x to float64 twice per step (2 x 20 MB for 500 images).
    target = np.eye(classes, dtype=np.float32)[labels]
    w, b = weights.astype(np.float32), np.zeros(classes, np.float32)
    moments = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    for step in range(1, steps + 1):
        error = (softmax(x @ w.T + b) - target) / len(labels)  # d(mean cross-entropy)/d(logits)
        grads = (error.T @ x + 2 * penalty * w, error.sum(axis=0))
        for number, (param, grad) in enumerate(zip((w, b), grads, strict=True)):
            first, second = moments[2 * number], moments[2 * number + 1]
            first[...] = 0.9 * first + 0.1 * grad
            second[...] = 0.999 * second + 0.001 * grad * grad
            param -= rate * (first / (1 - 0.9 ** step)) / (np.sqrt(second / (1 - 0.999 ** step)) + 1e-8)
    return w, b


@dataclass(frozen=True)
class Trained:
    head: HeadWeights
    method: str  # "imprinting" or "softmax regression"


def fit(samples: Samples, classes: int) -> Trained:
    """The head for every sample: imprinting for few shots, softmax regression once every class has enough."""
    # The lengths without np.linalg.norm's squared copy of every embedding.
    norm = float(np.sqrt(np.einsum("ij,ij->i", samples.embeddings, samples.embeddings)).mean()) or 1.0
    x = samples.embeddings * np.float32(1 / norm)
    counts = samples.images_per_class(classes)
    weights = imprint(x, samples.labels, classes)
    bias = np.zeros(classes)
    method = "imprinting"
    if counts.min() >= REGRESSION_MIN:
        weights, bias = regress(x, samples.labels, classes, weights)
        method = "softmax regression"
    logits = x @ weights.T + bias
    # The head works on the raw embedding: fold the 1/norm into the weights.
    head = HeadWeights((weights / norm).astype(np.float32), bias.astype(np.float32),
                       (float(logits.min()), float(logits.max())))
    return Trained(head, method)


def predict(head: HeadWeights, embeddings: np.ndarray) -> np.ndarray:
    return softmax(embeddings @ head.weights.T + head.bias)


@dataclass(frozen=True)
class Evaluation:
    """Held-out results: confusion[true, predicted] counts over every image, once each."""

    folds: int
    confusion: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.confusion.sum(), 1))

    def class_accuracy(self) -> np.ndarray:
        return np.diag(self.confusion) / np.maximum(self.confusion.sum(axis=1), 1)


def folds_of(samples: Samples, classes: int, folds: int) -> np.ndarray:
    """A fold for every source image, dealt round-robin within each class (stratified)."""
    fold_of_image: dict[int, int] = {}
    for c in range(classes):
        for position, image in enumerate(sorted(set(samples.images[samples.labels == c].tolist()))):
            fold_of_image[image] = position % folds
    return np.array([fold_of_image[i] for i in samples.images])


def evaluate(samples: Samples, classes: int, folds: int = 5) -> Evaluation | None:
    """k-fold held-out accuracy (k at most the smallest class's image count); None with one image in a class."""
    smallest = int(samples.images_per_class(classes).min())
    folds = min(folds, smallest)
    if folds < 2:
        return None
    fold = folds_of(samples, classes, folds)
    confusion = np.zeros((classes, classes), np.int64)
    for k in range(folds):
        train, test = fold != k, (fold == k) & samples.original
        trained = fit(Samples(samples.embeddings[train], samples.labels[train], samples.images[train],
                              samples.original[train]), classes)
        predicted = predict(trained.head, samples.embeddings[test]).argmax(axis=1)
        np.add.at(confusion, (samples.labels[test], predicted), 1)
    return Evaluation(folds, confusion)


def dataset_advice(samples: Samples, classes: tuple[str, ...], evaluation: Evaluation | None) -> list[str]:
    """What to fix in the dataset: too few images, or classes the embedding cannot tell apart."""
    said = []
    counts = samples.images_per_class(len(classes))
    for name, count in zip(classes, counts, strict=True):
        if count < FEW:
            said.append(f"class {name}: only {count} image(s); {FEW} or more (of different moments) teach it better")
    means = class_means(samples.embeddings, samples.labels, len(classes))
    cosines = means @ means.T
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            confused = 0.0
            if evaluation is not None:
                rows = evaluation.confusion.sum(axis=1)
                confused = max(evaluation.confusion[a, b] / max(rows[a], 1),
                               evaluation.confusion[b, a] / max(rows[b], 1))
            if confused > ALIKE_CONFUSION or cosines[a, b] > ALIKE_COSINE:
                said.append(f"classes {classes[a]} and {classes[b]} look alike to the model ({confused:.0%} mixed up "
                            "in held-out tests): give each images where they differ, or merge them")
    return said

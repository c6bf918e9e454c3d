"""Output tensor -> ranked classes: dequantize, smooth over frames, top-k above a threshold."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..values import Class


@dataclass(frozen=True)
class PostprocessConfig:
    top_k: int = field(default=5, metadata={"min": 1, "max": 1000})
    threshold: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    smoothing: int = field(default=1, metadata={"min": 1, "max": 1000})  # frames averaged; 1 = off
    # A best score below this is no answer: the result's label is null and its top-k empty (a taught
    # model always picks one of its classes, even for a scene it was never shown). 0: off.
    unknown_below: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})


def dequantize(raw: np.ndarray, scale: float, zero_point: float, out: np.ndarray) -> np.ndarray:
    """real = scale * (q - zero_point), written into `out` (float32); a float output is copied as is."""
    if scale == 0:
        out[...] = raw
        return out
    np.subtract(raw, zero_point, out=out, dtype=np.float32)
    out *= scale
    return out


def top_k(scores: np.ndarray, k: int, threshold: float = 0.0) -> list[tuple[int, float]]:
    """The k best (index, score) pairs, best first, keeping scores >= threshold; ties go to the lower index."""
    n = scores.shape[0]
    k = min(k, n)
    # argpartition finds the k largest in O(n); only those k are then sorted.
    best = np.argpartition(scores, n - k)[n - k:]
    ranked = sorted(best.tolist(), key=lambda i: (-scores[i], i))
    return [(i, float(scores[i])) for i in ranked if scores[i] >= threshold]


class ScoreSmoother:
    """Moving average of the last `window` score vectors, so a live label does not flicker.

    Keeps a ring of past vectors and their running sum: each update costs one subtraction and
    one addition of a vector, whatever the window.
    """

    def __init__(self, window: int, num_classes: int) -> None:
        self._ring = np.zeros((window, num_classes), np.float64)
        self._sum = np.zeros(num_classes, np.float64)
        self._mean = np.zeros(num_classes, np.float32)
        self._next = 0
        self._filled = 0

    def update(self, scores: np.ndarray) -> np.ndarray:
        slot = self._ring[self._next]
        self._sum -= slot
        slot[...] = scores
        self._sum += slot
        self._next = (self._next + 1) % len(self._ring)
        self._filled = min(self._filled + 1, len(self._ring))
        np.divide(self._sum, self._filled, out=self._mean, casting="same_kind")
        return self._mean


def ranked_classes(scores: np.ndarray, labels: tuple[str, ...], k: int, threshold: float,
                   unknown_below: float = 0.0) -> tuple[Class, ...]:
    """The top-k as Class values; none at all when even the best scores under `unknown_below`."""
    ranked = top_k(scores, k, threshold)
    if ranked and ranked[0][1] < unknown_below:
        return ()
    return tuple(Class(index, labels[index], score) for index, score in ranked)

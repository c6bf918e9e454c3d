import numpy as np
import pytest

from edge_infer.pipeline.postprocess import ScoreSmoother, dequantize, ranked_classes, top_k


def test_dequantize_uint8_softmax():
    out = np.empty(3, np.float32)
    dequantize(np.array([0, 128, 255], np.uint8), 1 / 256, 0, out)
    np.testing.assert_allclose(out, [0.0, 0.5, 255 / 256])


def test_dequantize_int8_with_zero_point():
    out = np.empty(2, np.float32)
    dequantize(np.array([-128, 127], np.int8), 1 / 256, -128, out)
    np.testing.assert_allclose(out, [0.0, 255 / 256])


def test_dequantize_float_is_a_copy():
    out = np.empty(2, np.float32)
    dequantize(np.array([0.25, 0.75], np.float32), 0.0, 0, out)
    np.testing.assert_allclose(out, [0.25, 0.75])


def test_top_k_is_sorted_best_first():
    scores = np.array([0.1, 0.5, 0.05, 0.3, 0.05], np.float32)
    assert [i for i, _ in top_k(scores, 3)] == [1, 3, 0]


def test_top_k_breaks_ties_by_lower_index():
    scores = np.array([0.2, 0.4, 0.4, 0.0], np.float32)
    assert [i for i, _ in top_k(scores, 2)] == [1, 2]


def test_top_k_applies_the_threshold():
    scores = np.array([0.1, 0.6, 0.3], np.float32)
    assert top_k(scores, 3, threshold=0.25) == [(1, pytest.approx(0.6)), (2, pytest.approx(0.3))]


def test_top_k_larger_than_the_classes():
    assert len(top_k(np.array([0.5, 0.5], np.float32), 10)) == 2


def test_ranked_classes_carry_labels():
    classes = ranked_classes(np.array([0.1, 0.9], np.float32), ("background", "cat"), 1, 0.0)
    assert [(c.index, c.label) for c in classes] == [(1, "cat")]


def test_smoother_averages_the_last_window_only():
    smoother = ScoreSmoother(window=2, num_classes=2)
    np.testing.assert_allclose(smoother.update(np.array([1.0, 0.0])), [1.0, 0.0])  # mean of what it has seen
    np.testing.assert_allclose(smoother.update(np.array([0.0, 1.0])), [0.5, 0.5])
    np.testing.assert_allclose(smoother.update(np.array([0.0, 1.0])), [0.0, 1.0])  # the first vector left the window


def test_smoother_keeps_a_flickering_label_steady():
    smoother = ScoreSmoother(window=5, num_classes=2)
    winners = []
    for step in range(20):
        noisy = np.array([0.6, 0.4]) if (step + 1) % 4 else np.array([0.4, 0.6])  # every 4th frame flips
        winners.append(int(np.argmax(smoother.update(noisy))))
    assert winners == [0] * 20



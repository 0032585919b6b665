"""Accuracy, loss, confusion matrix and per-class scores, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlknobs.io.modelfile import load_model
from mlknobs.nn.evaluate import (
    accuracy_and_loss,
    confusion_matrix,
    evaluate,
    most_confused_pairs,
    per_class_scores,
    predictions_and_loss,
)
from mlknobs.nn.model import InputScaling, Params


def test_per_class_scores_by_hand():
    # rows = true class, columns = predicted
    confusion = np.array([[5, 1, 0],
                          [2, 3, 0],
                          [0, 0, 0]])       # class 2: absent and never predicted
    scores = per_class_scores(confusion)
    assert [s.support for s in scores] == [6, 5, 0]
    assert scores[0].precision == pytest.approx(5 / 7) and scores[0].recall == pytest.approx(5 / 6)
    assert scores[1].precision == pytest.approx(3 / 4) and scores[1].recall == pytest.approx(3 / 5)
    p, r = 5 / 7, 5 / 6
    assert scores[0].f1 == pytest.approx(2 * p * r / (p + r))
    assert (scores[2].precision, scores[2].recall, scores[2].f1) == (0.0, 0.0, 0.0)


def test_a_class_never_predicted_has_precision_zero_not_nan():
    confusion = np.array([[4, 0], [3, 0]])  # everything called class 0
    scores = per_class_scores(confusion)
    assert scores[1].precision == 0.0 and scores[1].recall == 0.0 and scores[1].f1 == 0.0
    assert scores[0].recall == 1.0 and scores[0].precision == pytest.approx(4 / 7)
    assert all(math.isfinite(v) for s in scores for v in (s.precision, s.recall, s.f1))


def test_confusion_matrix_counts_pairs():
    labels = np.array([0, 0, 1, 2, 2, 2], np.uint8)
    predictions = np.array([0, 1, 1, 2, 0, 2])
    expected = np.zeros((3, 3), int)
    for t, p in zip(labels, predictions):
        expected[t, p] += 1
    assert np.array_equal(confusion_matrix(labels, predictions, 3), expected)


def test_most_confused_pairs_are_off_diagonal_largest_first():
    confusion = np.array([[50, 3, 7],
                          [3, 40, 0],
                          [9, 1, 60]])
    assert most_confused_pairs(confusion, 3) == [(2, 0, 9), (0, 2, 7), (0, 1, 3)]
    assert most_confused_pairs(np.diag([5, 5]), 5) == []        # no mistakes, no pairs


def test_evaluate_refuses_an_empty_split():
    params = Params.initial(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="empty"):
        evaluate(params, "cross-entropy", InputScaling(0.1, 0.3), np.zeros((0, 784), np.uint8),
                 np.zeros(0, np.uint8))
    assert all(math.isnan(v) for v in accuracy_and_loss(params, "cross-entropy", InputScaling(0.1, 0.3),
                                                        np.zeros((0, 784), np.uint8), np.zeros(0, np.uint8)))


def test_evaluation_of_a_trained_model_matches_a_reference(synthetic_model_path, synthetic_splits):
    model = load_model(synthetic_model_path)
    _, test = synthetic_splits
    result = evaluate(model.params, model.loss, model.scaling, test.images, test.labels)

    # The same number training recorded in the model file, and accuracy_and_loss's.
    assert result.accuracy == model.results["test_accuracy"]
    assert result.loss == pytest.approx(model.results["test_loss"], rel=1e-6)
    assert (result.accuracy, result.loss) == accuracy_and_loss(model.params, model.loss, model.scaling,
                                                                test.images, test.labels)

    # An independent float64 forward pass, written out here from the math.
    p = model.params.astype(np.float64)
    x = (test.images / 255.0 - model.scaling.mean) / model.scaling.std          # (N, 784)
    a1 = 1 / (1 + np.exp(-(x @ p.w1 + p.b1)))                                   # (N, H)
    z2 = a1 @ p.w2 + p.b2                                                        # (N, 10)
    z2 -= z2.max(axis=1, keepdims=True)
    log_p = z2 - np.log(np.exp(z2).sum(axis=1, keepdims=True))
    reference_predictions = log_p.argmax(axis=1)
    # float32 vs float64 may flip a near-tie or two
    assert abs(result.accuracy - (reference_predictions == test.labels).mean()) <= 3 / len(test)
    assert result.loss == pytest.approx(-log_p[np.arange(len(test)), test.labels].mean(), rel=1e-4)

    # The report is consistent with its own confusion matrix and with the labels.
    confusion = result.confusion
    assert confusion.shape == (10, 10) and result.n == len(test) == confusion.sum()
    assert np.array_equal(confusion.sum(axis=1), np.bincount(test.labels, minlength=10))
    assert sum(s.support for s in result.per_class) == result.n
    assert np.trace(confusion) / result.n == result.accuracy
    predictions, _ = predictions_and_loss(model.params, model.loss, model.scaling, test.images, test.labels)
    assert np.array_equal(confusion, confusion_matrix(test.labels, predictions))
    for s in result.per_class:
        k = s.label
        assert s.recall == pytest.approx(confusion[k, k] / confusion[k].sum())
        assert s.precision == pytest.approx(confusion[k, k] / confusion[:, k].sum())
        assert s.f1 == pytest.approx(2 * s.precision * s.recall / (s.precision + s.recall))
    assert result.macro_f1 == pytest.approx(np.mean([s.f1 for s in result.per_class]))
    worst = result.most_confused(1)[0]
    off_diagonal = confusion - np.diag(np.diag(confusion))
    assert worst[2] == off_diagonal.max() and confusion[worst[0], worst[1]] == worst[2]

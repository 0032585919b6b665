"""Measure a model on a labelled split: accuracy, mean loss, and the per-class report.

For each class k, with C the confusion matrix (rows = true class, columns = predicted):

    precision_k = C[k, k] / sum_i C[i, k]     of the images called k, how many are k
    recall_k    = C[k, k] / sum_j C[k, j]     of the images that are k, how many were found
    f1_k        = 2 p r / (p + r)             their harmonic mean
    support_k   = sum_j C[k, j]               how many images are k

A ratio with nothing to count (a class never predicted, or absent from the split) is 0.0 rather
than NaN, so reports stay printable and JSON stays valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlknobs.nn.losses import LOSSES
from mlknobs.nn.model import InputScaling, Params, outputs


def accuracy_and_loss(params: Params, loss: str, scaling: InputScaling, images: np.ndarray,
                      labels: np.ndarray, batch_size: int = 2000) -> tuple[float, float]:
    """(fraction correct, mean loss) over uint8 images (N, 784) and labels (N,)."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    predictions, mean_loss = predictions_and_loss(params, loss, scaling, images, labels, batch_size)
    return int((predictions == labels).sum()) / len(labels), mean_loss


def predictions_and_loss(params: Params, loss: str, scaling: InputScaling, images: np.ndarray,
                         labels: np.ndarray, batch_size: int = 2000) -> tuple[np.ndarray, float]:
    """(predicted class (N,), mean loss) over uint8 images (N, 784) and labels (N,), in batches."""
    a2 = outputs(params, loss, scaling, images, batch_size)     # (N, 10)
    mean_loss = LOSSES[loss].value(a2, labels) if len(labels) else float("nan")
    return a2.argmax(axis=1), mean_loss


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are the true class, columns the predicted one."""
    flat = labels.astype(np.int64) * n_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class ClassScore:
    label: int
    precision: float
    recall: float
    f1: float
    support: int


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, 0.0 where the denominator is 0."""
    out = np.zeros(len(numerator), np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def per_class_scores(confusion: np.ndarray) -> list[ClassScore]:
    """Precision, recall, F1 and support of every class, from a confusion matrix."""
    hits = np.diag(confusion).astype(np.float64)            # (K,)
    support = confusion.sum(axis=1)                         # (K,) true members of each class
    predicted = confusion.sum(axis=0)                       # (K,) images called each class
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return [ClassScore(label=k, precision=float(precision[k]), recall=float(recall[k]), f1=float(f1[k]),
                       support=int(support[k])) for k in range(len(hits))]


def most_confused_pairs(confusion: np.ndarray, count: int = 5) -> list[tuple[int, int, int]]:
    """The `count` largest off-diagonal cells as (true class, predicted class, images), largest first."""
    off_diagonal = confusion.astype(np.int64).copy()
    np.fill_diagonal(off_diagonal, 0)
    flat = off_diagonal.ravel()
    order = np.argsort(-flat, kind="stable")[:count]        # ties: lower true class first
    n_classes = len(confusion)
    return [(int(i // n_classes), int(i % n_classes), int(flat[i])) for i in order if flat[i] > 0]


@dataclass(frozen=True)
class Evaluation:
    """Everything `mlknobs eval` reports about one model on one split."""

    accuracy: float
    loss: float
    confusion: np.ndarray          # (10, 10) int64 counts, rows = true class, columns = predicted
    per_class: list[ClassScore]

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    def most_confused(self, count: int = 5) -> list[tuple[int, int, int]]:
        return most_confused_pairs(self.confusion, count)

    @property
    def macro_f1(self) -> float:
        """Unweighted mean F1 over the classes present in the split."""
        present = [s.f1 for s in self.per_class if s.support > 0]
        return float(np.mean(present)) if present else 0.0


def evaluate(params: Params, loss: str, scaling: InputScaling, images: np.ndarray, labels: np.ndarray,
             n_classes: int = 10, batch_size: int = 2000) -> Evaluation:
    """Accuracy, mean loss, confusion matrix and per-class scores over uint8 images (N, 784)."""
    if len(labels) == 0:
        raise ValueError("cannot evaluate on an empty split")
    predictions, mean_loss = predictions_and_loss(params, loss, scaling, images, labels, batch_size)
    confusion = confusion_matrix(labels, predictions, n_classes)
    accuracy = int(np.trace(confusion)) / len(labels)
    return Evaluation(accuracy=accuracy, loss=mean_loss, confusion=confusion,
                      per_class=per_class_scores(confusion))

"""Measure a model on a labelled split: accuracy, mean loss, and the per-class report."""

from __future__ import annotations

import numpy as np

from mlknobs.losses import LOSSES
from mlknobs.model import InputScaling, Network, Params


def accuracy_and_loss(params: Params, loss: str, scaling: InputScaling, images: np.ndarray,
                      labels: np.ndarray, batch_size: int = 2000) -> tuple[float, float]:
    """(fraction correct, mean loss) over uint8 images (N, 784) and labels (N,)."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    net = Network(params, LOSSES[loss], max_batch=min(batch_size, len(labels)))
    correct, loss_sum = 0, 0.0
    for start in range(0, len(labels), net.max_batch):
        x, y = images[start:start + net.max_batch], labels[start:start + net.max_batch]
        a2 = net.forward(net.load_pixels(x, scaling))
        correct += int((a2.argmax(axis=1) == y).sum())
        loss_sum += net.loss_value(y) * len(y)
    return correct / len(labels), loss_sum / len(labels)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are the true class, columns the predicted one."""
    flat = labels.astype(np.int64) * n_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)

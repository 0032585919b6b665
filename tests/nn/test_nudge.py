"""Slopes by nudging (nn/nudge.py) equal backprop's: each a difference of two evaluated losses."""

import numpy as np
import pytest

from mlknobs.config import LOSS_NAMES
from mlknobs.nn.losses import LOSSES
from mlknobs.nn.model import Network, Params
from mlknobs.nn.nudge import nudge_slopes


def small_network(hidden: int, seed: int):
    rng = np.random.default_rng(seed)
    params = Params.initial(hidden, rng, dtype=np.float64)
    params.b1[:] = rng.normal(0, 0.5, hidden)
    params.b2[:] = rng.normal(0, 0.5, 10)
    x = rng.normal(0, 1, (16, 784))                      # standardised-like inputs (B, 784)
    labels = rng.integers(0, 10, 16)
    return params, x, labels, rng


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_nudge_slopes_equal_backprops_to_1e_6_relative(loss, dropout):
    params, x, labels, rng = small_network(hidden=6, seed=3)
    net = Network(params, loss, len(labels), dropout=dropout)
    keep = net.dropout_mask(len(labels), rng) if dropout else None
    a2, cache = net.forward(x, keep)
    backprop = net.backward(cache, labels).copy().flat
    nudged = nudge_slopes(params, LOSSES[loss], x, labels, keep).flat
    assert nudged.dtype == np.float64
    scale = np.abs(backprop).max()
    assert scale > 1e-3                                  # slopes worth comparing
    # every knob: its difference, relative to the larger slopes (a slope near 0 has no relative error)
    assert np.abs(nudged - backprop).max() / scale < 1e-6
    large = np.abs(backprop) > 1e-3 * scale
    assert (np.abs(nudged - backprop)[large] / np.abs(backprop[large])).max() < 1e-6


def test_a_partial_nudge_touches_only_the_given_units():
    params, x, labels, _ = small_network(hidden=5, seed=1)
    slopes = nudge_slopes(params, LOSSES["cross-entropy"], x, labels, units=range(2))
    assert np.all(slopes.w1[:, 2:] == 0) and np.any(slopes.w1[:, :2] != 0)


def test_the_slope_is_the_difference_of_two_evaluated_losses():
    """One knob by brute force: move it, run the whole network, compare with nudge_slopes."""
    params, x, labels, _ = small_network(hidden=4, seed=2)
    loss = LOSSES["mse"]

    def batch_loss(p: Params) -> float:
        a2, _ = Network(p, loss, len(labels)).forward(x)
        return loss.value(a2, labels)

    h = 1e-5
    up, down = params.copy(), params.copy()
    up.w1[300, 2] += h
    down.w1[300, 2] -= h
    assert nudge_slopes(params, loss, x, labels).w1[300, 2] == pytest.approx(
        (batch_loss(up) - batch_loss(down)) / (2 * h), rel=1e-7)


def test_evaluating_in_small_chunks_gives_the_same_slopes(monkeypatch):
    import mlknobs.nn.nudge

    params, x, labels, _ = small_network(hidden=5, seed=4)
    whole = nudge_slopes(params, LOSSES["cross-entropy"], x, labels).flat
    monkeypatch.setattr(mlknobs.nn.nudge, "CHUNK_ELEMENTS", 16 * 10 * 7)      # 7 networks at a time
    np.testing.assert_array_equal(nudge_slopes(params, LOSSES["cross-entropy"], x, labels).flat, whole)

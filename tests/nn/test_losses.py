"""Loss values and their deltas dLoss/dz2, checked against finite differences on z2."""

import numpy as np
import pytest

from mlknobs.nn.losses import LOSSES


@pytest.mark.parametrize("name", list(LOSSES))
def test_delta_is_the_derivative_of_the_mean_loss(name):
    loss = LOSSES[name]
    rng = np.random.default_rng(0)
    z2 = rng.normal(0, 2, (5, 10))
    labels = rng.integers(0, 10, 5)

    def value(z):
        return loss.value(loss.output_(z.copy()), labels)

    delta = loss.delta(loss.output_(z2.copy()), labels, out=np.empty_like(z2))
    numeric = np.zeros_like(z2)
    h = 1e-6
    for i in np.ndindex(z2.shape):
        plus, minus = z2.copy(), z2.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = (value(plus) - value(minus)) / (2 * h)
    np.testing.assert_allclose(delta, numeric, rtol=1e-5, atol=1e-9)


def test_cross_entropy_of_a_uniform_guess_is_log_10():
    loss = LOSSES["cross-entropy"]
    p = loss.output_(np.zeros((3, 10)))
    assert loss.value(p, np.array([0, 4, 9])) == pytest.approx(np.log(10))


def test_mse_is_half_the_squared_error_summed_over_classes():
    a = np.full((1, 10), 0.5)
    assert LOSSES["mse"].value(a, np.array([2])) == pytest.approx(0.5 * (9 * 0.25 + 0.25))

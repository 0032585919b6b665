"""The activations against their textbook formulas, and each derivative against finite differences."""

import numpy as np
import pytest

from mlknobs.nn.activations import SATURATION, sigmoid_, sigmoid_slope, softmax_
from mlknobs.nn.losses import LOSSES

Z = np.linspace(-40, 40, 801)         # through the steep middle and far into both flat ends


def test_sigmoid_is_one_over_one_plus_exp_minus_z():
    np.testing.assert_allclose(sigmoid_(Z.copy()), 1 / (1 + np.exp(-Z)), rtol=1e-12, atol=1e-15)


def test_sigmoid_slope_from_the_output_is_the_derivative():
    h = 1e-6
    numeric = (1 / (1 + np.exp(-(Z + h))) - 1 / (1 + np.exp(-(Z - h)))) / (2 * h)
    a = sigmoid_(Z.copy())
    # atol: the central difference's round-off, machine eps / h ~ 1e-10, dominates in the flat ends
    np.testing.assert_allclose(sigmoid_slope(a, out=np.empty_like(a)), numeric, rtol=1e-6, atol=1e-9)
    assert sigmoid_slope(np.array([0.5]), out=np.empty(1))[0] == 0.25        # the steepest point


def test_saturated_sigmoid_in_float32_is_exactly_0_or_1_not_subnormal():
    a = sigmoid_(np.array([-200, -60, -30, 30, 60, 200], np.float32))
    tiny = np.finfo(np.float32).tiny
    assert set(a[np.abs(a - 0.5) > 0.49].tolist()) <= {0.0, 1.0}
    slopes = sigmoid_slope(a, out=np.empty_like(a))
    assert ((slopes == 0) | (slopes >= tiny)).all()


def test_softmax_rows_are_the_textbook_probabilities():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (6, 10))
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax_(z.copy()), expected, rtol=1e-12)


def test_softmax_keeps_huge_logits_finite_and_clips_below_the_saturation_floor():
    z = np.array([[1000.0, 0.0, -1000.0, *[0.0] * 7]])
    p = softmax_(z.copy())
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    assert p[0, 0] == pytest.approx(1.0) and p[0, 2] == pytest.approx(np.exp(-SATURATION) * p[0, 0])


@pytest.mark.parametrize("name", [name for name, loss in LOSSES.items() if loss.output_slope is not None])
def test_each_output_slope_is_the_derivative_of_its_output_activation(name):
    loss = LOSSES[name]
    z = np.linspace(-8, 8, 30).reshape(3, 10)
    h = 1e-6
    numeric = (loss.output_(z + h) - loss.output_(z - h)) / (2 * h)   # elementwise activations only
    a = loss.output_(z.copy())
    np.testing.assert_allclose(loss.output_slope(a, np.empty_like(a)), numeric, rtol=1e-6, atol=1e-9)

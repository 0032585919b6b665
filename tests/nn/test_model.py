"""The network's forward pass, buffers, input scaling and saturation guard."""

import numpy as np
import pytest

from mlknobs.nn.losses import LOSSES, sigmoid_, softmax_
from mlknobs.nn.model import INPUT_SIZE, InputScaling, Network, Params, predict_proba

SCALING = InputScaling(mean=0.1307, std=0.3081)


def reference_forward(p: Params, x: np.ndarray, loss: str) -> np.ndarray:
    """The textbook formulas in float64, no buffers, no clipping."""
    p = p.astype(np.float64)
    a1 = 1 / (1 + np.exp(-(x @ p.w1 + p.b1)))
    z2 = a1 @ p.w2 + p.b2
    if loss == "mse":
        return 1 / (1 + np.exp(-z2))
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_forward_matches_textbook_formulas_for_full_and_short_batches(loss):
    rng = np.random.default_rng(1)
    params = Params.initial(24, rng)
    net = Network(params, loss, max_batch=16)
    for n in (16, 5):   # a short last batch reuses the first rows of every buffer
        pixels = rng.integers(0, 256, (n, INPUT_SIZE), dtype=np.uint8)
        x = net.load_pixels(pixels, SCALING)
        got, _ = net.forward(x)
        assert got.shape == (n, 10) and got.dtype == np.float32
        expected = reference_forward(params, (pixels / 255 - 0.1307) / 0.3081, loss)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_initial_params_are_glorot_scaled_float32_and_seeded():
    a = Params.initial(100, np.random.default_rng(7))
    b = Params.initial(100, np.random.default_rng(7))
    for name, array in a.arrays().items():
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, getattr(b, name))
    assert a.w1.shape == (784, 100) and a.w2.shape == (100, 10)
    assert np.abs(a.w1).max() <= np.sqrt(6 / (784 + 100))
    assert not a.b1.any() and not a.b2.any()


@pytest.mark.real_data
def test_input_scaling_fit_matches_published_mnist_statistics(mnist_data_dir):
    from mlknobs.data.splits import load_split

    scaling = InputScaling.fit(load_split("mnist", "train", mnist_data_dir).images)
    assert scaling.mean == pytest.approx(0.1307, abs=5e-5)
    assert scaling.std == pytest.approx(0.3081, abs=5e-5)


def test_input_scaling_apply_is_standardisation():
    pixels = np.array([[0, 255, 128]], dtype=np.uint8)
    out = SCALING.apply(pixels, np.empty((1, 3), np.float32))
    np.testing.assert_allclose(out, (pixels / 255 - 0.1307) / 0.3081, rtol=1e-6)


def test_saturation_guard_leaves_no_subnormal_floats():
    """Huge pre-activations must not produce subnormals (they make the CPU 10-100x slower)."""
    tiny = np.finfo(np.float32).tiny
    z = np.array([[-1e4, -200, -88, -30, 0, 30, 88, 1e4]], dtype=np.float32)
    with np.errstate(all="raise"):       # no overflow or underflow warnings either
        a = sigmoid_(z.copy())
        p = softmax_(np.array([[1e4, -1e4, 0, 50, -50, 0, 0, 0, 0, 0]], dtype=np.float32))
    for values in (a, a * (1 - a), p):
        nonzero = np.abs(values[values != 0])
        assert (nonzero >= tiny).all()
    assert np.isclose(p.sum(), 1)


def test_saturated_network_backward_has_no_subnormals():
    rng = np.random.default_rng(0)
    params = Params.initial(32, rng)
    params.w1 *= 1000        # every hidden unit driven far into saturation
    params.w2 *= 1000
    net = Network(params, "cross-entropy", 64)
    labels = rng.integers(0, 10, 64)
    _, cache = net.forward(net.load_pixels(rng.integers(0, 256, (64, 784), dtype=np.uint8), SCALING))
    grads = net.backward(cache, labels)
    tiny = np.finfo(np.float32).tiny
    for array in (net.a1, net.a2, net.dz1, net.dz2, *grads.arrays().values()):
        nonzero = np.abs(array[array != 0])
        assert (nonzero >= tiny).all()


@pytest.mark.parametrize("loss", list(LOSSES))
def test_predict_proba_rows_are_probabilities(loss):
    rng = np.random.default_rng(3)
    params = Params.initial(16, rng)
    pixels = rng.integers(0, 256, (4100, INPUT_SIZE), dtype=np.uint8)   # several inner batches
    proba = predict_proba(params, loss, SCALING, pixels)
    assert proba.shape == (4100, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    # Batched prediction gives the same answer as one sample at a time.
    np.testing.assert_allclose(proba[4099], predict_proba(params, loss, SCALING, pixels[4099:])[0], rtol=1e-5)

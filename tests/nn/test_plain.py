"""The plain step (nn/plain.py) and the fast Network (nn/model.py) compute the same thing.

This file is the link between the two: random networks, both losses, with and without dropout,
full and short batches. The plain step itself is checked against finite differences, so the fast
one is held to the definition of the slope twice over (see also test_gradcheck.py).
"""

import numpy as np
import pytest

from mlknobs.nn import plain
from mlknobs.nn.losses import LOSSES
from mlknobs.nn.model import INPUT_SIZE, InputScaling, Network, Params
from mlknobs.nn.optim import SGD

SCALING = InputScaling(mean=0.1307, std=0.3081)


def random_batch(seed: int, hidden: int, n: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = Params.initial(hidden, rng, dtype=dtype)
    params.b1[:] = rng.normal(0, 0.5, hidden)            # away from the all-zero start
    params.b2[:] = rng.normal(0, 0.5, 10)
    pixels = rng.integers(0, 256, (n, INPUT_SIZE), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    return rng, params, pixels, labels


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_network_gives_the_plain_steps_outputs_loss_and_slopes(loss, dropout, seed):
    rng, params, pixels, labels = random_batch(seed, hidden=5 + 7 * seed, n=12)
    net = Network(params, loss, max_batch=16, dropout=dropout)
    for n in (12, 5):                                    # a short batch reuses the buffers' first rows
        x = net.load_pixels(pixels[:n], SCALING)
        keep = net.dropout_mask(n, rng).copy() if dropout else None
        a2, cache = net.forward(x, keep)
        fast_loss = net.loss.value(a2, labels[:n])
        fast = net.backward(cache, labels[:n])

        z2, plain_cache = plain.forward(params, x.copy(), keep)
        plain_loss, plain_a2, dz2 = plain.LOSS_FUNCTIONS[loss](z2, labels[:n])
        slow = plain.backward(params, plain_cache, dz2)

        np.testing.assert_allclose(a2, plain_a2, rtol=1e-12, atol=1e-15)
        assert fast_loss == pytest.approx(plain_loss, rel=1e-12)
        for name in ("w1", "b1", "w2", "b2"):
            np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-10, atol=1e-15,
                                       err_msg=name)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_float32_network_stays_within_float32_precision_of_the_plain_step(loss):
    _, params, pixels, labels = random_batch(4, hidden=32, n=64, dtype=np.float32)
    net = Network(params, loss, max_batch=64)
    a2, cache = net.forward(net.load_pixels(pixels, SCALING))
    fast = net.backward(cache, labels)
    x64 = pixels * SCALING.scale + SCALING.offset
    z2, plain_cache = plain.forward(params.astype(np.float64), x64)
    _, plain_a2, dz2 = plain.LOSS_FUNCTIONS[loss](z2, labels)
    slow = plain.backward(params.astype(np.float64), plain_cache, dz2)
    np.testing.assert_allclose(a2, plain_a2, rtol=1e-4, atol=1e-6)
    for name in ("w1", "b1", "w2", "b2"):
        scale = np.abs(getattr(slow, name)).max()
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), atol=1e-4 * scale, err_msg=name)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_plain_slopes_are_the_definition_nudge_and_watch_the_loss(loss):
    rng, params, pixels, labels = random_batch(7, hidden=6, n=4)
    x = pixels * SCALING.scale + SCALING.offset
    z2, cache = plain.forward(params, x)
    _, _, dz2 = plain.LOSS_FUNCTIONS[loss](z2, labels)
    grads = plain.backward(params, cache, dz2)

    def loss_at(p):
        return plain.LOSS_FUNCTIONS[loss](plain.forward(p, x)[0], labels)[0]

    h = 1e-5
    for name in ("w1", "b1", "w2", "b2"):
        array = getattr(params, name)
        for flat_index in rng.choice(array.size, size=min(array.size, 25), replace=False):
            index = np.unravel_index(flat_index, array.shape)
            original = array[index]
            array[index] = original + h
            plus = loss_at(params)
            array[index] = original - h
            minus = loss_at(params)
            array[index] = original
            assert (plus - minus) / (2 * h) == pytest.approx(getattr(grads, name)[index], rel=1e-6, abs=1e-10)


def test_plain_step_is_the_optimizers_step_without_momentum():
    _, params, pixels, labels = random_batch(3, hidden=8, n=10)
    x = pixels * SCALING.scale + SCALING.offset
    stepped, loss_before, grads = plain.step(params, x, labels, learning_rate=0.3)

    fast_params = params.copy()
    net = Network(fast_params, "cross-entropy", max_batch=10)
    a2, cache = net.forward(x.copy())
    SGD(fast_params).step(net.backward(cache, labels), 0.3)
    assert loss_before == pytest.approx(net.loss.value(a2, labels), rel=1e-12)
    np.testing.assert_allclose(fast_params.flat, stepped.flat, rtol=1e-12, atol=1e-15)
    after = plain.LOSS_FUNCTIONS["cross-entropy"](plain.forward(stepped, x)[0], labels)[0]
    assert after < loss_before                           # a small step against the slope lowers the loss

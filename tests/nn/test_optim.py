"""SGD with momentum, Nesterov and weight decay against the formulas."""

import numpy as np
import pytest

from mlknobs.nn.model import Params
from mlknobs.nn.optim import SGD


def params_of(value: float) -> Params:
    return Params(w1=np.full((784, 2), value, np.float32), b1=np.full(2, value, np.float32),
                  w2=np.full((2, 10), value, np.float32), b2=np.full(10, value, np.float32))


@pytest.mark.parametrize("nesterov", [False, True])
def test_two_steps_match_the_formulas(nesterov):
    mu, lr, decay = 0.9, 0.1, 0.01
    params = params_of(1.0)
    optimizer = SGD(params, momentum=mu, nesterov=nesterov, weight_decay=decay)
    w, b, v_w, v_b = 1.0, 1.0, 0.0, 0.0
    for g in (0.5, -0.25):
        optimizer.step(params_of(g), lr)
        g_w = g + decay * w                       # decay on weights only
        v_w, v_b = mu * v_w + g_w, mu * v_b + g
        w -= lr * ((g_w + mu * v_w) if nesterov else v_w)
        b -= lr * ((g + mu * v_b) if nesterov else v_b)
    assert params.w1[0, 0] == pytest.approx(w, rel=1e-6)
    assert params.b1[0] == pytest.approx(b, rel=1e-6)


def test_plain_sgd_is_w_minus_lr_g():
    params = params_of(1.0)
    SGD(params).step(params_of(2.0), 0.25)
    assert params.w2[0, 0] == pytest.approx(0.5)

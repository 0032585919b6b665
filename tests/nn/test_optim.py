"""SGD with momentum, Nesterov and weight decay against the formulas; learning-rate schedules."""

import numpy as np
import pytest

from mlknobs.nn.model import Params
from mlknobs.nn.optim import SCHEDULES, SGD, learning_rate_at


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


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_start_near_and_never_exceed_the_peak(schedule):
    rates = [learning_rate_at(schedule, 0.5, s, 1000) for s in range(1000)]
    assert max(rates) <= 0.5 + 1e-12 and min(rates) > 0
    if schedule != "one-cycle":
        assert rates[0] == pytest.approx(0.5)


def test_shapes_of_the_schedules():
    assert learning_rate_at("step", 1.0, 499, 1000) == 1.0
    assert learning_rate_at("step", 1.0, 500, 1000) == pytest.approx(0.1)
    assert learning_rate_at("step", 1.0, 750, 1000) == pytest.approx(0.01)
    assert learning_rate_at("cosine", 1.0, 500, 1000) == pytest.approx(0.5)
    assert learning_rate_at("one-cycle", 1.0, 0, 1000) == pytest.approx(1 / 25)
    assert learning_rate_at("one-cycle", 1.0, 300, 1000) == pytest.approx(1.0)
    assert learning_rate_at("one-cycle", 1.0, 1000, 1000) == pytest.approx(1 / 25e4)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate_at("warp", 1.0, 0, 10)

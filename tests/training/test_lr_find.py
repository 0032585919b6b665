"""training.lr_find: the learning-rate range test on the synthetic digits, and its suggestion rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlknobs.config import TrainConfig
from mlknobs.errors import SettingsError
from mlknobs.training.lr_find import (
    BLOW_UP,
    DEFAULT_RULE,
    RULES,
    SMOOTHING,
    lr_find,
    minimum_over_ten,
    steepest_descent,
)

CONFIG = TrainConfig(hidden_size=32, batch_size=64)


def test_the_learning_rate_rises_exponentially_and_the_suggestion_lies_inside_the_range(synthetic_splits):
    train, _ = synthetic_splits
    result = lr_find(CONFIG, train, start_lr=1e-4, end_lr=10.0, steps=100)
    lrs = np.array(result.learning_rates)
    assert lrs[0] == pytest.approx(1e-4)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], (10.0 / 1e-4) ** (1 / 99), rtol=1e-9)   # one ratio throughout
    assert len(result.losses) == len(lrs) <= 100 and all(math.isfinite(v) for v in result.losses)
    assert 1e-4 <= result.suggested_lr <= 10.0
    assert result.rule == DEFAULT_RULE
    assert min(result.losses) < 0.5 * result.losses[0]       # it learned along the way
    if result.stopped_at is None:
        assert len(lrs) == 100 and lrs[-1] == pytest.approx(10.0)


def test_it_stops_once_the_smoothed_loss_blows_up(synthetic_splits):
    train, _ = synthetic_splits
    result = lr_find(CONFIG, train, start_lr=1e-3, end_lr=1e6, steps=200)
    assert result.stopped_at is not None and result.stopped_at < 1e6
    assert len(result.learning_rates) < 200
    assert result.losses[-1] > BLOW_UP * min(result.losses[:-1])
    assert 1e-3 <= result.suggested_lr < result.stopped_at


def test_the_same_seed_draws_the_same_curve(synthetic_splits):
    train, _ = synthetic_splits
    a = lr_find(CONFIG, train, steps=30)
    b = lr_find(CONFIG, train, steps=30)
    c = lr_find(CONFIG.replace(seed=1), train, steps=30)
    assert a.losses == b.losses and a.suggested_lr == b.suggested_lr
    assert a.losses != c.losses


def test_the_smoothed_loss_is_a_bias_corrected_moving_average(synthetic_splits, monkeypatch):
    """With every batch loss equal to 2, the bias-corrected average is exactly 2 from the first step."""
    import mlknobs.nn.losses

    train, _ = synthetic_splits
    monkeypatch.setattr(mlknobs.nn.losses.Loss, "value", lambda self, a2, labels: 2.0)
    result = lr_find(CONFIG, train, steps=20)
    np.testing.assert_allclose(result.losses, 2.0, rtol=1e-12)
    assert SMOOTHING == 0.98


def test_the_rules_read_the_curve():
    lrs = np.logspace(-5, 1, 61)                     # ten points per decade
    log_lr = np.log10(lrs)
    losses = 2.3 - 2 / (1 + np.exp(-(log_lr + 2) * 3)) + 0.5 * np.maximum(log_lr, 0) ** 2   # falls fastest at 1e-2
    assert steepest_descent(lrs, losses) == pytest.approx(1e-2, rel=0.3)
    lowest = lrs[int(np.argmin(losses))]
    assert minimum_over_ten(lrs, losses) == pytest.approx(lowest / 10)
    assert set(RULES) == {"steepest", "minimum/10"} and DEFAULT_RULE in RULES


@pytest.mark.parametrize("options, setting", [({"start_lr": 1.0, "end_lr": 0.1}, "start_lr"),
                                              ({"steps": 3}, "steps"), ({"rule": "valley"}, "rule")])
def test_bad_options_are_refused_naming_them(synthetic_splits, options, setting):
    train, _ = synthetic_splits
    with pytest.raises(SettingsError) as refused:
        lr_find(CONFIG, train, **options)
    assert setting in refused.value.settings

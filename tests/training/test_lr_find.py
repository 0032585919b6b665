"""training.lr_find: the learning-rate range test on the synthetic digits, and its suggestion rules."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from mlknobs.config import TrainConfig
from mlknobs.errors import SettingsError, TrainingInterrupted
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


@pytest.mark.parametrize("setting", [{"dropout": 0.5}, {"input_scaling": "raw"}, {"input_scaling": "unit"},
                                     {"init_scale": 0.5}, {"train_size": 700}, {"train_size": 700, "val_size": 100}])
def test_the_range_test_trains_the_network_fit_trains_on_the_digits_fit_trains_on(synthetic_splits, setting):
    """Its first batch is fit's first batch: same knobs, inputs, digits, order and dropout mask, same loss."""
    from mlknobs.training.loop import fit

    train, test = synthetic_splits
    config = CONFIG.replace(epochs=1, **setting)
    first_losses = []

    def first_step(progress):
        if progress.event == "step" and not first_losses:
            first_losses.append(progress.loss)
            raise KeyboardInterrupt                       # one step is all this test needs

    with pytest.raises(TrainingInterrupted):
        fit(config, train, test, [str(d) for d in range(10)], callback=first_step)
    measured = lr_find(config, train, steps=20)
    default = lr_find(CONFIG.replace(epochs=1), train, steps=20)
    assert measured.losses[0] == pytest.approx(first_losses[0], rel=1e-5)
    assert default.losses[0] != pytest.approx(first_losses[0], rel=1e-3)     # the setting changes the loss


def test_train_size_means_the_first_digits_only(synthetic_splits):
    from mlknobs.data.splits import Split

    train, _ = synthetic_splits
    head = Split(train.images[:700], train.labels[:700])
    assert lr_find(CONFIG.replace(train_size=700), train, steps=20) == lr_find(CONFIG, head, steps=20)
    with pytest.raises(SettingsError) as refused:
        lr_find(CONFIG.replace(train_size=len(train) + 1), train, steps=20)
    assert refused.value.settings == ["train_size"]


@pytest.mark.parametrize("options, setting", [
    ({"steps": 10**9}, "steps"), ({"steps": 10**26}, "steps"), ({"steps": 1e26}, "steps"), ({"steps": True}, "steps"),
    ({"start_lr": 1e-308, "end_lr": 1e308}, "start_lr"), ({"start_lr": 1e-308, "end_lr": 1e308}, "end_lr"),
    ({"end_lr": math.inf}, "end_lr"), ({"start_lr": math.nan}, "start_lr"), ({"start_lr": 0.0}, "start_lr"),
    ({"end_lr": 1e7}, "end_lr"), ({"start_lr": 1e-11}, "start_lr"),
])
def test_steps_and_learning_rates_are_bounded(synthetic_splits, options, setting):
    from mlknobs.training.lr_find_settings import LR_RANGE, STEPS_RANGE

    train, _ = synthetic_splits
    with pytest.raises(SettingsError) as refused:
        lr_find(CONFIG, train, **options)
    assert setting in refused.value.settings
    bound = STEPS_RANGE if setting == "steps" else LR_RANGE
    assert bound.describe() in str(refused.value)


def test_the_widest_range_allowed_suggests_a_finite_rate_without_warnings(synthetic_splits):
    from mlknobs.training.lr_find_settings import MAX_LR, MIN_LR

    train, _ = synthetic_splits
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # a RuntimeWarning from NumPy fails the test
        for rule in RULES:
            result = lr_find(CONFIG, train, start_lr=MIN_LR, end_lr=MAX_LR, steps=50, rule=rule)
            assert math.isfinite(result.suggested_lr) and result.suggested_lr > 0
            assert all(MIN_LR <= lr <= MAX_LR for lr in result.learning_rates)


def test_rates_too_close_to_tell_apart_still_give_a_rate_from_the_curve(synthetic_splits):
    train, _ = synthetic_splits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = lr_find(CONFIG, train, start_lr=0.1, end_lr=0.1 * (1 + 2**-50), steps=40, rule="steepest")
    assert result.suggested_lr in result.learning_rates


def test_a_curve_that_gives_no_rate_is_a_typed_error(synthetic_splits, monkeypatch):
    from mlknobs.training import lr_find as module

    train, _ = synthetic_splits
    monkeypatch.setitem(module.RULES, "steepest", (lambda lrs, losses: math.inf, "a broken rule"))
    with pytest.raises(SettingsError, match="gives no learning rate to suggest"):
        lr_find(CONFIG, train, steps=20, rule="steepest")

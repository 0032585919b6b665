"""`train --gradients nudge`: the same run as backprop's, slopes found by evaluated losses only;
refused before training when an epoch would take too long."""

import numpy as np
import pytest

from clirun import run
from mlknobs.config import TrainConfig
from mlknobs.data.splits import Split
from mlknobs.errors import SettingsError
from mlknobs.io.modelfile import load_checkpoint
from mlknobs.training import step
from mlknobs.training.loop import TrainingInterrupted, fit

CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits(synthetic_splits):
    train, test = synthetic_splits
    return Split(train.images[:400], train.labels[:400]), Split(test.images[:500], test.labels[:500])


def config(**settings) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "hidden_size": 4, "batch_size": 50, "learning_rate": 0.5, **settings})


def test_a_nudge_run_and_a_backprop_run_with_the_same_seed_end_close(digits):
    backprop = fit(config(), *digits, CLASSES)
    nudge = fit(config(gradients="nudge"), *digits, CLASSES)
    assert nudge.config.gradients == "nudge"
    # float32 knobs; the slopes differ by ~1e-8 relative, so 16 steps end almost where backprop does
    np.testing.assert_allclose(nudge.params.flat, backprop.params.flat, rtol=1e-3, atol=1e-4)
    assert nudge.results["test_accuracy"] == pytest.approx(backprop.results["test_accuracy"], abs=0.01)
    assert [e["train_loss"] for e in nudge.history] == pytest.approx([e["train_loss"] for e in backprop.history],
                                                                     rel=1e-3)


def test_a_nudge_run_resumes_like_any_run(digits, tmp_path):
    settings = config(gradients="nudge", epochs=2, log_every=2)
    uninterrupted = fit(settings, *digits, CLASSES)
    checkpoint = tmp_path / "m.ckpt.npz"
    with pytest.raises(TrainingInterrupted):
        fit(settings, *digits, CLASSES, checkpoint=checkpoint,
            callback=lambda p: p.event == "step" and p.epoch == 2 and p.batch == 3)
    resumed = fit(settings, *digits, CLASSES, checkpoint=checkpoint, resume=load_checkpoint(checkpoint))
    np.testing.assert_array_equal(resumed.params.flat, uninterrupted.params.flat)
    assert resumed.step_losses == uninterrupted.step_losses


def test_a_nudge_run_that_would_take_too_long_is_refused_with_the_estimate(digits, monkeypatch):
    monkeypatch.setattr(step, "NUDGE_EPOCH_LIMIT", 1e-6)
    with pytest.raises(SettingsError) as refused:
        fit(config(gradients="nudge"), *digits, CLASSES)
    setting, text = refused.value.problems[0]
    assert setting == "gradients" and "per epoch" in text and "{hidden_size}" in text
    fit(config(), *digits, CLASSES)                     # backprop is never timed or refused


def test_the_cli_refusal_is_a_usage_error_naming_the_options(synthetic_data_dir, tmp_path):
    result = run("train", "--gradients", "nudge", "--hidden-size", "2000", "--epochs", "1",
                 "--data-dir", synthetic_data_dir, "--out", tmp_path / "m.npz", "--quiet")
    assert result.exit_code == 2, result.output
    assert "--gradients nudge" in result.stderr and "--hidden-size" in result.stderr and "per epoch" in result.stderr
    assert not (tmp_path / "m.npz").exists()
    assert "--hidden-size 8" in run("train", "--help").stdout         # --help says how big a network fits

"""Step curves (--log-every), the first N digits (--train-size) and the curve a diverged run keeps."""

import pytest

from mlknobs.config import TrainConfig
from mlknobs.data.splits import Split
from mlknobs.errors import SettingsError, TrainingDiverged
from mlknobs.io.modelfile import load_checkpoint, load_model, save_model
from mlknobs.training.loop import TrainingInterrupted, fit

CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits(synthetic_splits):
    train, test = synthetic_splits
    return Split(train.images[:3000], train.labels[:3000]), Split(test.images[:500], test.labels[:500])


def config(**settings) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "hidden_size": 8, "learning_rate": 0.5, "batch_size": 100, **settings})


def test_log_every_records_the_batch_loss_every_n_steps_and_the_model_file_keeps_it(digits, tmp_path):
    model = fit(config(log_every=7), *digits, CLASSES)
    steps = [step for step, _ in model.step_losses]
    assert steps == list(range(7, 2 * 30 + 1, 7))            # 30 steps an epoch, every 7th
    assert all(loss > 0 for _, loss in model.step_losses)
    save_model(tmp_path / "m.npz", model)
    assert load_model(tmp_path / "m.npz").step_losses == model.step_losses


def test_without_log_every_nothing_is_recorded(digits):
    assert fit(config(epochs=1), *digits, CLASSES).step_losses == []


def test_log_every_survives_resume(digits, tmp_path):
    settings = config(log_every=4, epochs=3)
    uninterrupted = fit(settings, *digits, CLASSES)
    checkpoint = tmp_path / "m.ckpt.npz"
    with pytest.raises(TrainingInterrupted):
        fit(settings, *digits, CLASSES, checkpoint=checkpoint,
            callback=lambda p: p.event == "step" and p.epoch == 2 and p.batch == 10)
    saved = load_checkpoint(checkpoint)
    assert saved.model.step_losses == uninterrupted.step_losses[:len(saved.model.step_losses)]
    assert saved.model.step_losses[-1][0] == 28                     # epoch 1's last logged step
    resumed = fit(settings, *digits, CLASSES, checkpoint=checkpoint, resume=saved)
    assert resumed.step_losses == uninterrupted.step_losses


def test_train_size_trains_on_the_first_n_digits(digits):
    seen = []
    fit(config(epochs=1, train_size=250), *digits, CLASSES,
        callback=lambda p: seen.append(p.batches) if p.event == "start" else None)
    assert seen == [3]                                              # 250 digits in batches of 100


def test_train_size_above_the_data_is_refused_naming_the_setting(digits):
    with pytest.raises(SettingsError) as refused:
        fit(config(train_size=3001), *digits, CLASSES)
    assert refused.value.problems[0][0] == "train_size" and "3,000" in str(refused.value)


@pytest.mark.parametrize("log_every", [0, 3])
def test_a_diverged_run_carries_its_curve_up_to_the_blow_up(digits, log_every):
    with pytest.raises(TrainingDiverged) as diverged:
        fit(config(learning_rate=1000.0, log_every=log_every), *digits, CLASSES)
    curve = diverged.value.step_losses
    assert len(curve) >= 2
    steps = [step for step, _ in curve]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    if log_every:
        assert all(step % 3 == 0 for step in steps[:-1])


def test_a_log_that_would_grow_without_bound_is_refused_naming_the_setting(digits, monkeypatch):
    import mlknobs.training.loop

    monkeypatch.setattr(mlknobs.training.loop, "MAX_STEP_LOSSES", 10)
    with pytest.raises(SettingsError) as refused:
        fit(config(log_every=1), *digits, CLASSES)                  # 60 steps, 60 losses
    assert refused.value.problems[0][0] == "log_every"
    assert len(fit(config(log_every=6), *digits, CLASSES).step_losses) == 10

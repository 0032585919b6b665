"""The training loop: determinism, exact resume, early stopping and the divergence guards."""

import numpy as np
import pytest

from mlknobs.config import TrainConfig
from mlknobs.data.splits import Split
from mlknobs.errors import TrainingDiverged
from mlknobs.io.modelfile import load_checkpoint
from mlknobs.nn.evaluate import accuracy_and_loss
from mlknobs.training.loop import TrainingInterrupted, fit

CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def mnist_small(synthetic_splits):
    """6000 training and 2000 test digits, synthetic stand-ins for MNIST's: enough to learn, fast to run."""
    train, test = synthetic_splits
    return Split(train.images[:6000], train.labels[:6000]), Split(test.images[:2000], test.labels[:2000])


def small_config(**settings) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "hidden_size": 16, "learning_rate": 0.5, **settings})


def test_training_learns_and_records_history(mnist_small):
    model = fit(small_config(val_size=1000), *mnist_small, CLASSES)
    assert model.results["test_accuracy"] > 0.8
    assert [e["epoch"] for e in model.history] == [1, 2, 3]
    assert model.history[-1]["train_loss"] < model.history[0]["train_loss"]
    assert {"train_loss", "train_accuracy", "val_accuracy", "val_loss", "learning_rate", "seconds"} \
        <= set(model.history[0])


def test_same_seed_same_weights_other_seed_other_weights(mnist_small):
    a = fit(small_config(epochs=1), *mnist_small, CLASSES).params
    b = fit(small_config(epochs=1), *mnist_small, CLASSES).params
    c = fit(small_config(epochs=1, seed=1), *mnist_small, CLASSES).params
    for name, array in a.arrays().items():
        np.testing.assert_array_equal(array, getattr(b, name))
    assert not np.array_equal(a.w1, c.w1)


AUGMENTED = {"dropout": 0.2, "rotate": 10.0, "scale": 0.1, "shear": 0.1, "shift": 1.5, "elastic": 1.0}


@pytest.mark.parametrize("settings", [{}, {"val_size": 1000, "early_stopping": 5, "nesterov": True,
                                        "weight_decay": 1e-4, "schedule": "cosine"}, AUGMENTED])
def test_resume_after_ctrl_c_ends_with_bit_identical_weights(mnist_small, tmp_path, settings):
    config = small_config(**settings)
    uninterrupted = fit(config, *mnist_small, CLASSES)

    checkpoint = tmp_path / "model.ckpt.npz"

    def ctrl_c_in_epoch_2(progress):
        if progress.event == "step" and progress.epoch == 2 and progress.batch == 8:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as interrupted:
        fit(config, *mnist_small, CLASSES, checkpoint=checkpoint, callback=ctrl_c_in_epoch_2)
    assert interrupted.value.epochs_done == 1 and interrupted.value.checkpoint == checkpoint
    assert "epoch 1 of 3" in str(interrupted.value)

    resumed = fit(config, *mnist_small, CLASSES, checkpoint=checkpoint,
                  resume=load_checkpoint(checkpoint))
    for name, array in uninterrupted.params.arrays().items():
        np.testing.assert_array_equal(getattr(resumed.params, name), array)
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in uninterrupted.history]
    assert resumed.results["test_accuracy"] == uninterrupted.results["test_accuracy"]


def test_interrupt_before_the_first_epoch_saves_nothing(mnist_small, tmp_path):
    def ctrl_c(progress):
        if progress.event == "step":
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="nothing was saved") as interrupted:
        fit(small_config(), *mnist_small, CLASSES, checkpoint=tmp_path / "c.npz", callback=ctrl_c)
    assert interrupted.value.checkpoint is None and not (tmp_path / "c.npz").exists()


def test_early_stopping_keeps_the_best_validation_epoch(mnist_small):
    # A constant, too-large learning rate makes validation accuracy wander, so stopping kicks in.
    config = small_config(epochs=12, val_size=1000, early_stopping=1, schedule="constant", learning_rate=3.0)
    model = fit(config, *mnist_small, CLASSES)
    val_accuracies = [e["val_accuracy"] for e in model.history]
    best_epoch = model.results["best_epoch"]
    assert val_accuracies[best_epoch - 1] == max(val_accuracies)
    assert model.results["stopped_early"] and len(model.history) < 12
    assert len(model.history) == best_epoch + 1     # patience 1: one epoch without gain, then stop
    train, _ = mnist_small
    val_images, val_labels = train.images[-1000:], train.labels[-1000:]
    accuracy, _ = accuracy_and_loss(model.params, "cross-entropy", model.scaling, val_images, val_labels)
    assert accuracy == max(val_accuracies)


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_a_huge_learning_rate_stops_with_advice(mnist_small, loss):
    with pytest.raises(TrainingDiverged, match="learning rate 1000") as diverged:
        fit(small_config(learning_rate=1000.0, loss=loss), *mnist_small, CLASSES)
    assert diverged.value.learning_rate == 1000.0


def test_the_callback_hears_the_start_every_step_and_every_epoch(mnist_small):
    seen = []
    model = fit(small_config(epochs=2), *mnist_small, CLASSES, callback=seen.append)
    events = [p.event for p in seen]
    batches = seen[0].batches
    assert events == ["start"] + (["step"] * batches + ["epoch"]) * 2
    steps = [p for p in seen if p.event == "step"]
    assert [(p.epoch, p.batch) for p in steps[:2]] == [(1, 1), (1, 2)] and steps[-1].batch == batches
    assert all(np.isfinite(p.loss) and p.learning_rate > 0 and p.params is model.params for p in steps)
    assert [p.entry for p in seen if p.event == "epoch"] == model.history


def test_augmented_runs_with_dropout_are_deterministic_and_differ_from_plain_ones(mnist_small):
    a = fit(small_config(epochs=1, **AUGMENTED), *mnist_small, CLASSES)
    b = fit(small_config(epochs=1, **AUGMENTED), *mnist_small, CLASSES)
    plain = fit(small_config(epochs=1), *mnist_small, CLASSES)
    for name, array in a.params.arrays().items():
        np.testing.assert_array_equal(array, getattr(b.params, name))
    assert not np.array_equal(a.params.w1, plain.params.w1)
    assert a.results["test_accuracy"] > 0.5          # still learns from distorted digits


def test_a_failing_augmentation_worker_is_an_error_not_a_hang(mnist_small, monkeypatch):
    import mlknobs.data.batches as batches_module
    from mlknobs.errors import AugmentationFailed

    class Broken:
        def __init__(self, rows, distortions):
            pass

        def __call__(self, pixels, rng):
            raise RuntimeError("out of paper")

    monkeypatch.setattr(batches_module, "Distorter", Broken)
    with pytest.raises(AugmentationFailed, match="out of paper"):
        fit(small_config(epochs=1, rotate=5.0), *mnist_small, CLASSES)


def test_ctrl_c_while_augmenting_stops_the_worker(mnist_small):
    import threading

    def ctrl_c(progress):
        if progress.event == "step" and progress.batch == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        fit(small_config(epochs=2, rotate=5.0), *mnist_small, CLASSES, callback=ctrl_c)
    assert not any(t.name == "mlknobs-augment" and t.is_alive() for t in threading.enumerate())


def test_a_callback_returning_true_stops_at_that_step_like_ctrl_c(mnist_small, tmp_path):
    checkpoint = tmp_path / "model.ckpt.npz"
    steps = []

    def stop_in_epoch_2(progress):
        if progress.event == "step":
            steps.append((progress.epoch, progress.batch))
        return progress.event == "step" and progress.epoch == 2 and progress.batch == 3

    with pytest.raises(TrainingInterrupted, match="epoch 1 of 3") as stopped:
        fit(small_config(), *mnist_small, CLASSES, checkpoint=checkpoint, callback=stop_in_epoch_2)
    assert steps[-1] == (2, 3)                               # no step after the one that said stop
    assert stopped.value.epochs_done == 1 and stopped.value.checkpoint == checkpoint
    assert load_checkpoint(checkpoint).state["loop"]["epochs_done"] == 1

    with pytest.raises(TrainingInterrupted, match="nothing was saved"):    # at "start": before any step
        fit(small_config(), *mnist_small, CLASSES, callback=lambda progress: progress.event == "start")


def test_each_step_shows_its_batch_and_the_networks_guesses(mnist_small):
    train, _ = mnist_small
    seen = []

    def look(progress):
        if progress.event == "step":
            seen.append((progress.pixels.copy(), progress.labels.copy(), progress.guesses.copy()))

    fit(small_config(epochs=1, batch_size=500), *mnist_small, CLASSES, callback=look)
    assert len(seen) == 12 and sum(len(labels) for _, labels, _ in seen) == 6000
    for pixels, labels, guesses in seen:
        assert pixels.shape == (len(labels), 784) and pixels.dtype == np.uint8 and guesses.shape == labels.shape
        rows = [np.flatnonzero((train.images == row).all(axis=1))[0] for row in pixels[:3]]
        assert list(train.labels[rows]) == list(labels[:3])           # the batch's own digits and labels
    assert np.mean(seen[-1][2] == seen[-1][1]) > 0.5                  # guesses are the network's: mostly right


def test_a_diverged_runs_curve_is_thinned_to_a_bound_keeping_the_first_and_the_blow_up(mnist_small, monkeypatch):
    """Without --log-every the curve is the loss at the loop's checks; a long run keeps at most
    MAX_CHECKED_LOSSES of them, evenly spaced (a subset of all the checks), then the blow-up."""
    import mlknobs.training.loop as loop

    def blow_up_after_step_100(progress):
        if progress.event == "step" and (progress.epoch - 1) * progress.batches + progress.batch == 100:
            progress.params.w2[...] = np.nan                     # the next check (step 101) finds it

    def curve() -> list:
        with pytest.raises(TrainingDiverged) as diverged:
            fit(small_config(epochs=2, batch_size=100), *mnist_small, CLASSES, callback=blow_up_after_step_100)
        return diverged.value.step_losses

    monkeypatch.setattr(loop, "CHECK_EVERY", 1)                  # a check every step: 101 of them
    every_check = curve()
    assert [step for step, _ in every_check] == list(range(1, 102)) and every_check[-1] == [101, None]

    monkeypatch.setattr(loop, "MAX_CHECKED_LOSSES", 8)
    thinned = curve()
    steps = [step for step, _ in thinned]
    assert len(thinned) <= 8 + 1 and steps[0] == 1 and thinned[-1] == [101, None]
    assert len({b - a for a, b in zip(steps[:-2], steps[1:-1])}) == 1          # evenly spaced before the blow-up
    assert all(point in every_check for point in thinned)

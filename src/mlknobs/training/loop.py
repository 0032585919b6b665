"""The training loop: mini-batch SGD over shuffled epochs, with checkpoints, early stopping and guards.

Everything random comes from `config.seed`: one numpy Generator draws the initial weights, then
per epoch a permutation of the training set and (with dropout) a mask per batch; its state is
saved in every checkpoint. Distorted digits (augmentation) come from child streams named by the
seed, the epoch and the chunk (data/batches.py), so they need no state of their own. A resumed
run therefore ends with the same weights, bit for bit, as one that was never interrupted (given
the same BLAS thread count).

Whoever trains (the CLI, a sweep, a web page) follows the run through one callback that receives
a small `Progress` record: once at the start, after every optimizer step, after every epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlknobs.config import TrainConfig, max_threads
from mlknobs.data.augment import Distortions
from mlknobs.data.batches import augmented_batches, batches
from mlknobs.data.splits import Split, first, split_validation
from mlknobs.errors import ModelFileError, SettingsError, TrainingDiverged, TrainingInterrupted
from mlknobs.io.modelfile import Checkpoint, save_checkpoint
from mlknobs.nn.activations import sigmoid_slope
from mlknobs.nn.blas import blas_threads
from mlknobs.nn.evaluate import accuracy_and_loss
from mlknobs.nn.model import Model, Params
from mlknobs.nn.schedules import PEAK_AT, learning_rate_at
from mlknobs.training.step import Stepper, check_initial, check_time, fresh_start

# Weights this large mean the run has blown up (trained MNIST nets stay well below 100).
EXPLODED_WEIGHT = 1e4
CHECK_EVERY = 25   # batches between checks of the loss and the weights
# Collapse: after a whole epoch the network guesses (train accuracy below COLLAPSED_ACCURACY) and
# its sigmoids are saturated: the mean slope a (1 - a) (at most 0.25, about 0.04 in a healthy run)
# is below SATURATED_SLOPE, so no gradient flows back and nothing more will be learnt. Both
# conditions are needed: a tiny learning rate also guesses after one epoch, but is not saturated.
COLLAPSED_ACCURACY = 0.5
SATURATED_SLOPE = 1e-3
# `--log-every`: at most this many [step, loss] pairs a run (~3 MB of a model file's metadata, far
# below what the reader admits); a run that would log more is refused before it starts.
MAX_STEP_LOSSES = 100_000
# Without --log-every, a diverged run's curve is the loss at the loop's checks: at most this many
# points however long the run (see _CheckedLosses).
MAX_CHECKED_LOSSES = 2_000


@dataclass(frozen=True)
class Progress:
    """What a training callback is told, once per event.

    event: "start" (before the first step), "step" (after each optimizer step) or "epoch" (after
    each epoch, with its history `entry`). epoch and batch count from 1; at "start", `epoch` is
    the first epoch this run will train (more than 1 when resuming) and `batch` is 0. `params` are
    the live knobs: read them, never change them. At "step", `pixels` (n, 784) uint8, `labels` (n,)
    and `guesses` (n,) are the batch just trained on and the network's answers to it (before the
    step): views of buffers, valid only during the call. A callback that returns True stops the
    run at this step boundary, as Ctrl-C does (TrainingInterrupted, the last epoch's checkpoint kept).
    """

    event: str
    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float                 # step: the batch's mean loss; epoch: the epoch's; start: nan
    learning_rate: float        # the rate of the last step (start: of the first)
    params: Params
    entry: dict | None = None
    pixels: np.ndarray | None = None
    labels: np.ndarray | None = None
    guesses: np.ndarray | None = None


Callback = Callable[[Progress], "bool | None"]     # True: stop the run


class _StopRequested(Exception):
    """The callback asked to stop (handled like Ctrl-C)."""


@dataclass
class _LoopState:
    """What, besides the weights and velocity, a checkpoint must carry to resume exactly."""

    epochs_done: int = 0
    step: int = 0
    seconds: float = 0.0
    best_epoch: int = 0
    best_val_accuracy: float = 0.0     # meaningful once best_epoch > 0
    best_val_loss: float = 0.0
    epochs_without_improvement: int = 0

    @classmethod
    def from_dict(cls, saved: dict) -> _LoopState:
        unknown = set(saved) - set(cls.__dataclass_fields__)
        if unknown:
            raise ModelFileError(f"checkpoint loop state has unknown entries: {', '.join(sorted(unknown))}")
        return cls(**saved)


class _CheckedLosses:
    """[step, loss] at the loop's checks (None for a non-finite loss), at most `max_points` of them,
    evenly spaced: when full, every other point goes (the first stays) and from then on every other
    check is kept, as serve.trainer.Curve thins the page's curve. `last` is always the latest check,
    kept or not (the blow-up a diverged run ends with)."""

    def __init__(self, max_points: int):
        self.max_points = max_points
        self.points: list[list] = []
        self.last: list | None = None
        self.stride = 1                  # checks per kept point
        self.checks = 0

    def add(self, step: int, loss: float) -> None:
        self.last = [step, loss if math.isfinite(loss) else None]
        if self.checks % self.stride == 0:
            self.points.append(self.last)
            if len(self.points) > self.max_points:
                self.points = self.points[::2]       # checks 0, 2 stride, 4 stride, ...: still evenly spaced
                self.stride *= 2
        self.checks += 1


def fit(config: TrainConfig, train: Split, test: Split, class_names, *,
        checkpoint: Path | None = None, resume: Checkpoint | None = None,
        callback: Callback | None = None, initial: Model | None = None, parent: dict | None = None) -> Model:
    """Train a network; returns the Model with its history and test results.

    checkpoint: where to save a resumable snapshot after every epoch (the caller removes it once
    the final model is saved). resume: a loaded checkpoint to continue from. callback: told about
    the start, every step and every epoch (see Progress). initial: a trained model whose weights
    and input scaling a new run starts from (its optimizer state and schedule are not carried over);
    parent: what the new model file records about it (see training.run.lineage).
    """
    with blas_threads(min(config.threads, max_threads())):   # more threads than cores only slow it down
        return _Fit(config, train, class_names, resume, callback, initial, parent).run(test, checkpoint)


class _Fit:
    """One training run's state: the network, its optimizer, the data order and the loop counters."""

    def __init__(self, config: TrainConfig, train: Split, class_names, resume: Checkpoint | None,
                 callback: Callback | None, initial: Model | None = None, parent: dict | None = None):
        self.config = config
        self.callback = callback
        self.fit_set, self.val_set = split_validation(first(train, config.train_size), config.val_size)
        self.steps_per_epoch = math.ceil(len(self.fit_set) / config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.log_every and self.total_steps // config.log_every > MAX_STEP_LOSSES:
            raise SettingsError([("log_every", f"{{log_every}} {config.log_every} would record "
                                               f"{self.total_steps // config.log_every:,} losses in {self.total_steps:,} "
                                               f"steps, more than {MAX_STEP_LOSSES:,}: log less often")])
        self.rng = np.random.default_rng(config.seed)
        if resume is None and initial is not None:
            check_initial(config, initial)
            params = initial.params.copy()
            self.model = Model(params, config, initial.scaling, list(class_names), parent=parent)
            self.state = _LoopState()
            self.best = params.copy() if config.early_stopping else None
        elif resume is None:
            params, scaling = fresh_start(config, self.fit_set, self.rng)
            self.model = Model(params, config, scaling, list(class_names))
            self.state = _LoopState()
            self.best = params.copy() if config.early_stopping else None
        else:
            self.model = resume.model
            self.state = _LoopState.from_dict(resume.state["loop"])
            self.rng.bit_generator.state = resume.state["rng"]
            self.best = resume.best
        self.params, self.scaling = self.model.params, self.model.scaling
        batch_rows = min(config.batch_size, len(self.fit_set))    # no buffer larger than the data
        self.stepper = Stepper(config, self.params, self.scaling, batch_rows, self.rng)
        self.net, self.optimizer = self.stepper.net, self.stepper.optimizer
        check_time(config, self.stepper, batch_rows, self.steps_per_epoch, len(self.fit_set))   # nudging: not for days
        if resume is not None:
            self.optimizer.velocity.copy_from(resume.velocity)
        # The curve a diverged run leaves (TrainingDiverged.step_losses): the logged one with
        # --log-every, else the loss at the loop's checks (every CHECK_EVERY steps, thinned).
        self.checked_losses = _CheckedLosses(MAX_CHECKED_LOSSES)

    def learning_rate(self, step: int) -> float:
        return learning_rate_at(self.config.schedule, self.config.learning_rate, step, self.total_steps)

    def tell(self, event: str, epoch: int, batch: int, loss: float, learning_rate: float,
             entry: dict | None = None, **batch_arrays) -> None:
        if self.callback is not None and self.callback(Progress(
                event, epoch, self.config.epochs, batch, self.steps_per_epoch, loss, learning_rate,
                self.params, entry, **batch_arrays)) is True:
            raise _StopRequested

    def run(self, test: Split, checkpoint: Path | None) -> Model:
        config, state, model = self.config, self.state, self.model
        saved_epochs = state.epochs_done
        try:
            self.tell("start", state.epochs_done + 1, 0, math.nan, self.learning_rate(state.step))
            for epoch in range(state.epochs_done, config.epochs):
                if config.early_stopping and state.epochs_without_improvement >= config.early_stopping:
                    break
                entry = self.run_epoch(epoch)
                model.history.append(entry)
                if checkpoint is not None:
                    save_checkpoint(checkpoint, model, self.optimizer.velocity,
                                    {"loop": state.__dict__, "rng": self.rng.bit_generator.state}, self.best)
                    saved_epochs = state.epochs_done
                self.tell("epoch", epoch + 1, self.steps_per_epoch, entry["train_loss"],
                          entry["learning_rate"], entry)
        except (KeyboardInterrupt, _StopRequested):
            if checkpoint is not None and saved_epochs:
                message = f"interrupted; epoch {saved_epochs} of {config.epochs} is saved in {checkpoint}"
            else:
                message = "interrupted before the first epoch finished; nothing was saved"
            raise TrainingInterrupted(message, checkpoint if saved_epochs else None, saved_epochs) from None

        if self.best is not None:
            self.params.copy_from(self.best)   # early stopping keeps the best validation epoch's knobs
        test_accuracy, test_loss = accuracy_and_loss(self.params, config.loss, self.scaling,
                                                     test.images, test.labels)
        model.results = {"test_accuracy": test_accuracy, "test_loss": test_loss, "seconds": state.seconds,
                         "stopped_early": state.epochs_done < config.epochs}
        if self.best is not None:
            model.results["best_epoch"] = state.best_epoch
        return model

    def run_epoch(self, epoch: int) -> dict:
        """One pass over the training set in a fresh order; returns the epoch's history entry."""
        started = time.perf_counter()
        state, net = self.state, self.net
        order = self.rng.permutation(len(self.fit_set))
        # Per-sample losses and predictions for the whole epoch: reduced once at the end instead of
        # a handful of tiny NumPy calls per batch.
        sample_losses = np.empty(len(order), self.params.flat.dtype)
        predictions = np.empty(len(order), np.intp)
        with closing(self.batches(order, epoch)) as source:      # closing stops an augmentation worker
            for b, (done, pixels, labels) in enumerate(source):
                a2, cache = self.stepper.forward(pixels)                 # (n, 10), dropout drawn
                net.loss.samples(a2, labels, out=sample_losses[done])
                np.argmax(a2, axis=1, out=predictions[done])
                loss = float(sample_losses[done].mean())
                self.log_loss(state.step + 1, loss)
                if b % CHECK_EVERY == 0 or b == self.steps_per_epoch - 1:
                    self.checked_losses.add(state.step + 1, loss)
                    self.check_divergence(loss, epoch, b)
                learning_rate = self.learning_rate(state.step)
                self.stepper.step(cache, labels, learning_rate)
                state.step += 1
                self.tell("step", epoch + 1, b + 1, loss, learning_rate,
                          pixels=pixels, labels=labels, guesses=predictions[done])

        entry = {"epoch": epoch + 1, "train_loss": float(sample_losses.mean(dtype=np.float64)),
                 "train_accuracy": float(np.count_nonzero(predictions == self.fit_set.labels[order])) / len(order),
                 "learning_rate": self.learning_rate(state.step - 1)}
        self.check_divergence(entry["train_loss"], epoch, self.steps_per_epoch - 1, entry)
        self.check_collapse(entry["train_accuracy"], epoch, entry)
        if len(self.val_set):
            entry["val_accuracy"], entry["val_loss"] = accuracy_and_loss(
                self.params, self.config.loss, self.scaling, self.val_set.images, self.val_set.labels)
            self.track_best(entry)
        entry["seconds"] = time.perf_counter() - started
        state.seconds += entry["seconds"]
        state.epochs_done = epoch + 1
        return entry

    def batches(self, order: np.ndarray, epoch: int):
        """The epoch's batches: the clean digits, or distorted copies made on another thread."""
        config = self.config
        if not config.augmented:
            return batches(self.fit_set, order, config.batch_size, self.stepper.pixels)
        return augmented_batches(self.fit_set, order, config.batch_size, Distortions(**config.distortions),
                                 config.seed, epoch)

    def track_best(self, entry: dict) -> None:
        """Keep the best validation epoch's knobs; count the epochs since it for early stopping.

        Epochs before the schedule's peak do not count against the patience: a warm-up raises the
        learning rate on purpose, and the validation score often dips while it does.
        """
        state = self.state
        better = state.best_epoch == 0 or \
            (entry["val_accuracy"], -entry["val_loss"]) > (state.best_val_accuracy, -state.best_val_loss)
        if better:
            state.best_epoch, state.epochs_without_improvement = entry["epoch"], 0
            state.best_val_accuracy, state.best_val_loss = entry["val_accuracy"], entry["val_loss"]
            if self.best is not None:
                self.best.copy_from(self.params)
        elif state.step / self.total_steps > PEAK_AT[self.config.schedule]:
            state.epochs_without_improvement += 1

    def log_loss(self, step: int, loss: float) -> None:
        """`--log-every N`: the batch loss of every Nth step, kept as [step, loss] in the model."""
        every = self.config.log_every
        if every and step % every == 0 and math.isfinite(loss):
            self.model.step_losses.append([step, loss])

    def diverged(self, message: str, entry: dict | None = None) -> TrainingDiverged:
        """The error for a run that blew up or collapsed, carrying its curve up to that point."""
        curve = self.model.step_losses if self.config.log_every else self.checked_losses.points
        last = self.checked_losses.last
        if last and (not curve or curve[-1][0] < last[0]):
            curve = [*curve, last]                            # the blow-up itself, even between kept steps
        history = [*self.model.history, *([entry] if entry else [])]
        return TrainingDiverged(message, self.config.learning_rate, [list(p) for p in curve], history)

    def check_collapse(self, train_accuracy: float, epoch: int, entry: dict | None = None) -> None:
        """Raise if the epoch ended with saturated sigmoids and guessing (see SATURATED_SLOPE)."""
        if train_accuracy >= COLLAPSED_ACCURACY:
            return
        net = self.net
        slopes = {"hidden": float(np.mean(sigmoid_slope(net.a1, np.empty_like(net.a1))))}  # last batch
        output_slope = net.loss.output_slope
        if output_slope is not None:        # a saturating output layer (mse's sigmoids) can stall too
            slopes["output"] = float(np.mean(output_slope(net.a2, np.empty_like(net.a2))))
        layer, slope = min(slopes.items(), key=lambda item: item[1])
        if slope < SATURATED_SLOPE:
            raise self.diverged(
                f"training collapsed in epoch {epoch + 1}: train accuracy {train_accuracy * 100:.1f} % and the "
                f"{layer} sigmoids are saturated (mean slope a(1-a) = {slope:.1e}, at most 0.25), so no "
                f"gradient flows at learning rate {self.config.learning_rate:g}", entry)

    def check_divergence(self, loss: float, epoch: int, batch: int, entry: dict | None = None) -> None:
        largest = max(float(np.abs(self.params.w1).max()), float(np.abs(self.params.w2).max()))
        if not math.isfinite(loss) or not math.isfinite(largest) or largest > EXPLODED_WEIGHT:
            raise self.diverged(
                f"training diverged in epoch {epoch + 1}, batch {batch + 1} (loss {loss:.4g}, largest "
                f"weight {largest:.3g}) at learning rate {self.config.learning_rate:g}",
                entry if entry is not None and math.isfinite(entry["train_loss"]) else None)

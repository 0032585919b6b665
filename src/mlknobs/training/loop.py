"""The training loop: mini-batch SGD over shuffled epochs, with checkpoints, early stopping and guards.

Everything random comes from one numpy Generator seeded by `config.seed`: the initial weights,
then one permutation of the training set per epoch. Its state is saved in every checkpoint, so a
resumed run draws the same permutations and ends with the same weights, bit for bit, as one that
was never interrupted (given the same BLAS thread count).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mlknobs.config import TrainConfig
from mlknobs.data.splits import Split, split_validation
from mlknobs.errors import ModelFileError, TrainingDiverged, TrainingInterrupted
from mlknobs.nn.evaluate import accuracy_and_loss
from mlknobs.nn.model import InputScaling, Network, Params
from mlknobs.io.modelfile import Checkpoint, save_checkpoint
from mlknobs.nn.model import Model
from mlknobs.nn.optim import SGD, learning_rate_at

# Weights this large mean the run has blown up (trained MNIST nets stay well below 100).
EXPLODED_WEIGHT = 1e4
CHECK_EVERY = 25   # batches between checks of the loss and the weights (and progress-bar updates)
# Collapse: after a whole epoch the network guesses (train accuracy below COLLAPSED_ACCURACY) and
# its sigmoids are saturated: the mean slope a (1 - a) (at most 0.25, about 0.04 in a healthy run)
# is below SATURATED_SLOPE, so no gradient flows back and nothing more will be learnt. Both
# conditions are needed: a tiny learning rate also guesses after one epoch, but is not saturated.
COLLAPSED_ACCURACY = 0.5
SATURATED_SLOPE = 1e-3


def checkpoint_path_for(model_path: Path) -> Path:
    """model.npz -> model.ckpt.npz, beside it."""
    model_path = Path(model_path)
    stem = model_path.name.removesuffix(".npz")
    return model_path.with_name(f"{stem}.ckpt.npz")


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
    def from_dict(cls, saved: dict) -> "_LoopState":
        unknown = set(saved) - set(cls.__dataclass_fields__)
        if unknown:
            raise ModelFileError(f"checkpoint loop state has unknown entries: {', '.join(sorted(unknown))}")
        return cls(**saved)


def blas_threads(count: int):
    """A context manager that pins the BLAS thread pool to `count` threads."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=count, user_api="blas")


def fit(config: TrainConfig, train: Split, test: Split, class_names, *,
        checkpoint: Path | None = None, resume: Checkpoint | None = None,
        progress: bool | None = None, on_epoch: Callable[[dict], None] | None = None,
        on_batch: Callable[[int, int, int, Params], None] | None = None,
        on_start: Callable[[Params, int], None] | None = None) -> Model:
    """Train a network; returns the Model with its history and test results.

    checkpoint: where to save a resumable snapshot after every epoch (removed by the caller
    once the final model is saved). resume: a loaded checkpoint to continue from.
    on_start(params, epochs_done) is called once before the first step, with the knobs training
    starts from; on_epoch(entry) after each epoch with its history entry; on_batch(epoch, batch,
    batches_per_epoch, params) after each optimizer step (0-based epoch and batch). The hooks may
    read the params but must not change them.
    """
    with blas_threads(config.threads):
        return _fit(config, train, test, class_names, checkpoint, resume, progress, on_epoch, on_batch,
                    on_start)


def _fit(config, train, test, class_names, checkpoint, resume, progress, on_epoch, on_batch,
         on_start) -> Model:
    fit_set, val_set = split_validation(train, config.val_size)
    steps_per_epoch = math.ceil(len(fit_set) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    rng = np.random.default_rng(config.seed)

    if resume is None:
        params = Params.initial(config.hidden_size, rng)
        scaling = InputScaling.fit(fit_set.images)
        model = Model(params, config, scaling, list(class_names))
        state = _LoopState()
        best = params.copy() if config.early_stopping else None
    else:
        model = resume.model
        params, scaling = model.params, model.scaling
        state = _LoopState.from_dict(resume.state["loop"])
        rng.bit_generator.state = resume.state["rng"]
        best = resume.best
    optimizer = SGD(params, config.momentum, config.nesterov, config.weight_decay)
    if resume is not None:
        optimizer.velocity.copy_from(resume.velocity)

    batch_rows = min(config.batch_size, len(fit_set))    # no buffer larger than the data
    net = Network(params, config.loss, batch_rows)
    pixels = np.empty((batch_rows, fit_set.images.shape[1]), np.uint8)
    saved_epochs = state.epochs_done
    if on_start is not None:
        on_start(params, state.epochs_done)

    try:
        for epoch in range(state.epochs_done, config.epochs):
            if config.early_stopping and state.epochs_without_improvement >= config.early_stopping:
                break
            started = time.perf_counter()
            order = rng.permutation(len(fit_set))
            train_loss, train_accuracy = _run_epoch(net, optimizer, fit_set, order, pixels, scaling,
                                                    config, state, total_steps, epoch, progress, on_batch)
            entry = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
                     "learning_rate": learning_rate_at(config.schedule, config.learning_rate,
                                                       state.step - 1, total_steps)}
            _check_collapse(net, train_accuracy, config, epoch)
            if len(val_set):
                entry["val_accuracy"], entry["val_loss"] = accuracy_and_loss(
                    params, config.loss, scaling, val_set.images, val_set.labels)
                _track_best(entry, state, params, best)
            entry["seconds"] = time.perf_counter() - started
            state.seconds += entry["seconds"]
            state.epochs_done = epoch + 1
            model.history.append(entry)
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer.velocity,
                                {"loop": state.__dict__, "rng": rng.bit_generator.state}, best)
                saved_epochs = state.epochs_done
            if on_epoch is not None:
                on_epoch(entry)
    except KeyboardInterrupt:
        if checkpoint is not None and saved_epochs:
            message = (f"interrupted; epoch {saved_epochs} of {config.epochs} is saved in {checkpoint}")
        else:
            message = "interrupted before the first epoch finished; nothing was saved"
        raise TrainingInterrupted(message, checkpoint if saved_epochs else None, saved_epochs) from None

    stopped_early = state.epochs_done < config.epochs
    if best is not None:
        params.copy_from(best)   # early stopping keeps the best validation epoch's knobs
    test_accuracy, test_loss = accuracy_and_loss(params, config.loss, scaling, test.images, test.labels)
    model.results = {"test_accuracy": test_accuracy, "test_loss": test_loss,
                     "seconds": state.seconds, "stopped_early": stopped_early}
    if best is not None:
        model.results["best_epoch"] = state.best_epoch
    return model


def _check_collapse(net: Network, train_accuracy: float, config: TrainConfig, epoch: int) -> None:
    """Raise if the epoch ended with saturated sigmoids and guessing (see SATURATED_SLOPE)."""
    if train_accuracy >= COLLAPSED_ACCURACY:
        return
    slopes = {"hidden": float(np.mean(net.a1 * (1 - net.a1)))}      # the last batch's activations
    if config.loss == "mse":
        slopes["output"] = float(np.mean(net.a2 * (1 - net.a2)))
    layer, slope = min(slopes.items(), key=lambda item: item[1])
    if slope < SATURATED_SLOPE:
        raise TrainingDiverged(
            f"training collapsed in epoch {epoch + 1}: train accuracy {train_accuracy * 100:.1f} % and the "
            f"{layer} sigmoids are saturated (mean slope a(1-a) = {slope:.1e}, at most 0.25), so no "
            f"gradient flows; try a smaller learning rate than --lr {config.learning_rate:g}")


def _track_best(entry: dict, state: _LoopState, params: Params, best: Params | None) -> None:
    better = state.best_epoch == 0 or \
        (entry["val_accuracy"], -entry["val_loss"]) > (state.best_val_accuracy, -state.best_val_loss)
    if better:
        state.best_epoch, state.epochs_without_improvement = entry["epoch"], 0
        state.best_val_accuracy, state.best_val_loss = entry["val_accuracy"], entry["val_loss"]
        if best is not None:
            best.copy_from(params)
    else:
        state.epochs_without_improvement += 1


def _largest_weight(params: Params) -> float:
    return max(float(np.abs(params.w1).max()), float(np.abs(params.w2).max()))


def _exploded(params: Params) -> bool:
    largest = _largest_weight(params)
    return not math.isfinite(largest) or largest > EXPLODED_WEIGHT


def _run_epoch(net: Network, optimizer: SGD, data: Split, order: np.ndarray, pixels: np.ndarray,
               scaling: InputScaling, config: TrainConfig, state: _LoopState, total_steps: int,
               epoch: int, progress: bool | None, on_batch=None) -> tuple[float, float]:
    """One pass over `data` in the given order; returns (mean train loss, train accuracy)."""
    from tqdm import tqdm

    batch_size = config.batch_size
    steps = math.ceil(len(order) / batch_size)
    # Per-sample losses and predictions for the whole epoch: reduced once at the end instead of a
    # handful of tiny NumPy calls per batch.
    sample_losses = np.empty(len(order), net.params.flat.dtype)
    predictions = np.empty(len(order), np.intp)
    with tqdm(total=steps, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
              file=sys.stderr, dynamic_ncols=True, mininterval=0.25,
              disable=(not progress) if progress is not None else None) as bar:
        for b in range(steps):
            rows = order[b * batch_size:(b + 1) * batch_size]
            done = slice(b * batch_size, b * batch_size + len(rows))
            labels = data.labels[rows]
            batch = np.take(data.images, rows, axis=0, out=pixels[:len(rows)])
            a2 = net.forward(net.load_pixels(batch, scaling))
            net.loss.samples(a2, labels, out=sample_losses[done])
            np.argmax(a2, axis=1, out=predictions[done])
            if b % CHECK_EVERY == 0 or b == steps - 1:
                loss = float(sample_losses[done].mean())
                _check_divergence(loss, net.params, config, epoch, b)
                bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            grads = net.backward(labels)
            optimizer.step(grads, learning_rate_at(config.schedule, config.learning_rate,
                                                   state.step, total_steps))
            state.step += 1
            if on_batch is not None:
                on_batch(epoch, b, steps, net.params)
            bar.update()
    train_loss = float(sample_losses.mean(dtype=np.float64))
    _check_divergence(train_loss, net.params, config, epoch, steps - 1)
    train_accuracy = float(np.count_nonzero(predictions == data.labels[order])) / len(order)
    return train_loss, train_accuracy


def _check_divergence(loss: float, params: Params, config: TrainConfig, epoch: int, batch: int) -> None:
    if not math.isfinite(loss) or _exploded(params):
        raise TrainingDiverged(
            f"training diverged in epoch {epoch + 1}, batch {batch + 1} (loss {loss:.4g}, largest "
            f"weight {_largest_weight(params):.3g}): try a smaller learning rate than "
            f"--lr {config.learning_rate:g}")

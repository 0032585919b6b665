"""The Python API: what `import mlknobs` offers a notebook or a script (see the package's `__all__`).

Each function here is a thin layer over the library, the way each command in cli/ is: it checks
what it is handed, calls one library function and returns plain values or the library's objects.
It never prints or exits; it raises the library's typed errors (mlknobs.errors). The data is
found as the CLI finds it: in MLKNOBS_DATA_DIR (default ./data), downloaded on first use from the
mirrors in MLKNOBS_MIRROR (whitespace-separated) or else the built-in ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlknobs.bounds import Range
from mlknobs.config import DATASET_NAMES, DEFAULTS, LOSS_NAMES, MAX_DROPOUT, TrainConfig
from mlknobs.data.splits import Split
from mlknobs.errors import InputError, SettingsError, TrainingInterrupted
from mlknobs.nn.model import INPUT_SIZE, Model

if TYPE_CHECKING:
    from mlknobs.nn.evaluate import Evaluation
    from mlknobs.nn.explain import Explanation
    from mlknobs.nn.gradcheck import GradcheckResult
    from mlknobs.training.loop import Callback, Progress

MIRROR_VARIABLE = "MLKNOBS_MIRROR"
SIDE = 28
# gradcheck nudges every knob twice: the CLI's limits keep that to seconds.
GRADCHECK_RANGES = {"hidden_size": Range(1, 256, integer=True), "batch_size": Range(1, 4096, integer=True),
                    "eps": Range(0, 1e3, low_open=True), "tolerance": Range(0, 1e3, low_open=True),
                    "seed": Range(0, 2**63 - 1, integer=True), "dropout": Range(0, MAX_DROPOUT)}
NUDGE = Range(0, 1, low_open=True)                   # explain's h
STEP_RATE = Range(0, 1e6, low_open=True)             # explain's learning rate

Picture = str | os.PathLike | bytes                   # a picture file's path, or its bytes


# --- data ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dataset:
    """A dataset in memory: `train` and `test` splits, each with `images` (N, 784) uint8 pixels 0..255
    (row-major 28x28, light ink on black) and `labels` (N,) uint8, and the `class_names` by label."""

    name: str                      # "mnist" or "fashion-mnist": what models trained on it record
    train: Split
    test: Split
    class_names: tuple[str, ...]

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first `train` training and `test` test samples (None: all of them), for quick runs."""
        for name, count in (("train", train), ("test", test)):
            problem = Range(1, integer=True).problem(count, name) if count is not None else None
            if problem:
                raise InputError(name, problem)
        return Dataset(self.name, _head(self.train, train), _head(self.test, test), self.class_names)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: {len(self.train):,} training and {len(self.test):,} test images "
                f"of 28x28 uint8, {len(self.class_names)} classes)")


def _head(split: Split, count: int | None) -> Split:
    return split if count is None else Split(split.images[:count], split.labels[:count])


def _mirrors_from_env() -> tuple[str, ...]:
    return tuple(os.environ.get(MIRROR_VARIABLE, "").split())


def load_dataset(name: str = "mnist", *, data_dir: str | os.PathLike | None = None,
                 mirrors: list[str] | tuple[str, ...] | None = None, progress: bool = False) -> Dataset:
    """Load MNIST or Fashion-MNIST into memory, downloading and verifying the files on first use.

    data_dir: where the files are kept (default: MLKNOBS_DATA_DIR, else ./data). mirrors: folders
    or URLs to fetch from instead of the built-in ones (default: MLKNOBS_MIRROR, whitespace-separated).
    progress: show download bars. Raises DownloadError when no mirror delivers a verified file.

        >>> data = mlknobs.load_dataset("mnist")
        >>> data.train.images.shape, data.test.labels[:3], data.class_names[7]
        ((60000, 784), array([7, 2, 1], dtype=uint8), '7')
    """
    from mlknobs.training.run import DataSource

    _check_dataset_name(name)
    mirrors = _mirrors_from_env() if mirrors is None else tuple(mirrors)
    source = DataSource(Path(data_dir) if data_dir is not None else None, mirrors, progress)
    train, test, class_names = source.load(name)
    return Dataset(name, train, test, tuple(class_names))


def _check_dataset_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise SettingsError([("dataset", f"{{dataset}} must be one of {', '.join(DATASET_NAMES)}, not {name!r}")])


def _check_dataset(data: Dataset) -> None:
    if not isinstance(data, Dataset):
        raise InputError("data", f"data must be a mlknobs.Dataset (from load_dataset), not {type(data).__name__}")
    for split_name, split in (("train", data.train), ("test", data.test)):
        images, labels = split.images, split.labels
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2
                and images.shape[1] == INPUT_SIZE):
            raise InputError(f"{split_name}.images", f"data.{split_name}.images must be a uint8 array (N, 784)")
        if not (isinstance(labels, np.ndarray) and labels.ndim == 1 and len(labels) == len(images)
                and labels.dtype.kind in "ui"):
            raise InputError(f"{split_name}.labels",
                             f"data.{split_name}.labels must be whole numbers (N,), one per image")
        if len(labels) == 0:
            raise InputError(split_name, f"data.{split_name} holds no images")
        if labels.max() >= len(data.class_names):
            raise InputError(f"{split_name}.labels", f"data.{split_name}.labels holds {labels.max()}, "
                                                     f"past the last of {len(data.class_names)} classes")


# --- training -----------------------------------------------------------------------------------------

def _settings(config: TrainConfig | None, settings: dict, dataset: str | None = None) -> TrainConfig:
    """`config` (default: the defaults) with keyword `settings` on top; unknown names are refused.

    dataset: the name of the data a run trains on, which the model records: it replaces the
    config's (usually its default), and a `dataset` keyword that names another is refused.
    """
    _check_names(settings)
    if dataset is not None and settings.get("dataset", dataset) != dataset:
        raise SettingsError([("dataset", f"{{dataset}} {settings['dataset']!r} differs from the data's, {dataset!r}")])
    base = (config if config is not None else DEFAULTS).to_dict()
    if dataset is not None:
        base["dataset"] = dataset
    return TrainConfig.from_dict({**base, **settings})


def _check_names(settings: dict) -> None:
    unknown = sorted(set(settings) - set(DEFAULTS.to_dict()))
    if unknown:
        raise SettingsError([(None, f"unknown training settings: {', '.join(unknown)}")])


class _ProgressBar:
    """A training callback: one bar for the whole run (tqdm.auto: a widget in Jupyter, text elsewhere),
    then the caller's own callback, whose answer (True: stop) is passed on."""

    def __init__(self, show: bool, callback: Callback | None):
        self.show, self.callback, self.bar = show, callback, None
        self.epochs_done = 0

    def __call__(self, progress: Progress) -> bool | None:
        if progress.event == "epoch":
            self.epochs_done = progress.epoch
        if self.show:
            self._update(progress)
        return self.callback(progress) if self.callback is not None else None

    def _update(self, progress: Progress) -> None:
        if progress.event == "start":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=progress.epochs * progress.batches, initial=(progress.epoch - 1) * progress.batches,
                            unit="batch", desc=f"epoch {progress.epoch}/{progress.epochs}", mininterval=0.25)
        elif progress.event == "step":
            self.bar.update()
            if progress.batch % 25 == 1:
                self.bar.set_postfix_str(f"loss {progress.loss:.4f}", refresh=False)
        elif progress.event == "epoch":
            entry = progress.entry
            shown = f"loss {entry['train_loss']:.4f}, train acc {entry['train_accuracy']:.2%}"
            if "val_accuracy" in entry:
                shown += f", val acc {entry['val_accuracy']:.2%}"
            self.bar.set_postfix_str(shown, refresh=False)
            if progress.epoch < progress.epochs:
                self.bar.set_description_str(f"epoch {progress.epoch + 1}/{progress.epochs}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(data: Dataset | None = None, config: TrainConfig | None = None, *, callback: Callback | None = None,
          progress: bool = False, initial: Model | None = None, **settings) -> Model:
    """Train a network in memory and return the Model; writes no files (save it with save_model).

    data: a Dataset (default: load_dataset() of the `dataset` setting). Settings come from `config`
    (a TrainConfig; default: `mlknobs train`'s defaults) with any keyword settings on top, e.g.
    `train(data, hidden_size=32, epochs=1, learning_rate=0.5)`; see TrainConfig for every name.
    callback: called with a Progress record at the start, after every step and every epoch; it may
    return True to stop (TrainingInterrupted). progress: show a progress bar. initial: a Model whose
    knobs and input scaling the run starts from (same hidden size).

    Raises SettingsError for settings that cannot work, TrainingDiverged when the run blows up and
    TrainingInterrupted on Ctrl-C (an in-memory run keeps nothing then).

        >>> model = mlknobs.train(data, hidden_size=32, epochs=1)
        >>> model.results["test_accuracy"]
        0.93...
    """
    from mlknobs.training.loop import fit

    if data is None:
        config = _settings(config, settings)
        data = load_dataset(config.dataset)
    else:
        _check_dataset(data)
        config = _settings(config, settings, dataset=data.name)
    if initial is not None and not isinstance(initial, Model):
        raise InputError("initial", f"initial must be a mlknobs.Model, not {type(initial).__name__}")
    bar = _ProgressBar(progress, callback)
    try:
        return fit(config, data.train, data.test, list(data.class_names), callback=bar, initial=initial)
    except TrainingInterrupted as e:
        raise TrainingInterrupted(f"interrupted after {bar.epochs_done} of {config.epochs} epochs; training in "
                                  f"memory keeps no checkpoint, so nothing was kept", None, bar.epochs_done) from e
    finally:
        bar.close()


def train_and_save(out: str | os.PathLike, config: TrainConfig | None = None, *, callback: Callback | None = None,
                   progress: bool = False, resume: bool = False, fresh: bool = False,
                   init_from: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                   mirrors: list[str] | tuple[str, ...] | None = None, **settings) -> Model:
    """Train and save a model at `out` exactly as `mlknobs train --out OUT` does; returns the Model.

    A checkpoint beside `out` after every epoch; Ctrl-C keeps it and `resume=True` continues from it
    (with its saved settings: keyword settings that differ are refused); `fresh=True` replaces an
    interrupted run's checkpoint; a second run on the same `out` is refused while one lives.
    init_from: a model file to start from. data_dir, mirrors: as for load_dataset. Other arguments
    as for train. Raises the errors of training.run.run (InterruptedRunExists, NothingToResume, ...).
    """
    from mlknobs.training.run import DataSource, run

    if resume:
        if config is not None:
            raise SettingsError([(None, "a resumed run continues with its checkpoint's settings: give no config")])
        _check_names(settings)
        config, given = None, settings
    else:
        config, given = _settings(config, settings), None
    if config is not None:
        _check_dataset_name(config.dataset)
    source = DataSource(Path(data_dir) if data_dir is not None else None,
                        _mirrors_from_env() if mirrors is None else tuple(mirrors), progress)
    bar = _ProgressBar(progress, callback)
    try:
        return run(config, Path(out), data=source, resume=resume, fresh=fresh, given=given, callback=bar,
                   init_from=Path(init_from) if init_from is not None else None)
    finally:
        bar.close()


def fresh_model(data: Dataset | None = None, config: TrainConfig | None = None, **settings) -> Model:
    """The untrained network that train() with the same data and settings starts from: Glorot knobs
    drawn from `seed` (times `init_scale`), zero biases, and the `input_scaling` of the training
    images it would train on. Untrained, its slopes are large: the place to watch a first step of
    learning (explain). Arguments as for train."""
    from mlknobs.data.splits import first, split_validation
    from mlknobs.training.step import fresh_start

    if data is None:
        config = _settings(config, settings)
        data = load_dataset(config.dataset)
    else:
        _check_dataset(data)
        config = _settings(config, settings, dataset=data.name)
    fit_set, _ = split_validation(first(data.train, config.train_size), config.val_size)   # as loop.fit does
    params, scaling = fresh_start(config, fit_set, np.random.default_rng(config.seed))
    return Model(params, config, scaling, list(data.class_names))


# --- model files --------------------------------------------------------------------------------------

def load_model(path: str | os.PathLike) -> Model:
    """Load and check a model file written by save_model, train_and_save or `mlknobs train`.

    Raises ModelFileMissing when there is no file, ModelFileError for one that is not a valid model.
    """
    from mlknobs.io.modelfile import load_model as load

    return load(Path(path))


def save_model(path: str | os.PathLike, model: Model) -> None:
    """Save a model as an .npz file (arrays and JSON, no pickle), atomically: the file is whole or
    untouched. Every mlknobs command reads it (`mlknobs predict --model PATH`). Raises OutputError."""
    from mlknobs.io.modelfile import save_model as save

    _check_model(model)
    save(Path(path), model)


def _check_model(model) -> None:
    if not isinstance(model, Model):
        raise InputError("model", f"model must be a mlknobs.Model, not {type(model).__name__}")


# --- using a model ------------------------------------------------------------------------------------

def read_picture(picture: Picture, dataset: str = "mnist") -> np.ndarray:
    """A picture of a digit (a file's path, or its bytes) as the network's input: (784,) uint8, made
    to look like `dataset`'s images the way `mlknobs predict` does (grayscale, light ink on black,
    cropped, scaled and centred). Raises ImageError for a file that is no readable picture."""
    from mlknobs.vision.images import read_input

    _check_dataset_name(dataset)
    if isinstance(picture, os.PathLike):
        picture = os.fspath(picture)
    return read_input(picture, dataset)


def _images(model: Model, images) -> tuple[np.ndarray, bool]:
    """uint8 (N, 784) rows from an array (one image or many) or a picture; and whether it was one."""
    if isinstance(images, (str, bytes, os.PathLike)):
        return read_picture(images, model.dataset)[None, :], True
    array = np.asarray(images)
    if array.dtype.kind not in "ui":
        kind = "true/false" if array.dtype.kind == "b" else array.dtype.name
        raise InputError("images", f"images must hold whole-number pixels 0..255 (uint8), not {kind} values; "
                                   f"for floats in 0..1 use (images * 255).round().astype(np.uint8)")
    if array.shape[-2:] == (SIDE, SIDE):
        array = array.reshape(*array.shape[:-2], INPUT_SIZE)
    if array.ndim not in (1, 2) or array.shape[-1] != INPUT_SIZE:
        raise InputError("images", f"images must be one image (784,) or (28, 28), or many (N, 784) or "
                                   f"(N, 28, 28), not an array of shape {array.shape}")
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise InputError("images", f"pixels must be 0..255, not {array.min()}..{array.max()}")
        array = array.astype(np.uint8)
    return array.reshape(-1, INPUT_SIZE), array.ndim == 1


def predict_proba(model: Model, images) -> np.ndarray:
    """The class probabilities the model gives: (10,) for one image, (N, 10) for many.

    images: uint8 pixels 0..255 as one image, (784,) or (28, 28), or many, (N, 784) or (N, 28, 28)
    (other whole-number types within 0..255 are accepted); or a picture file's path or bytes (see
    read_picture). With the mse loss, the ten sigmoid outputs are normalised to sum to 1, as
    `mlknobs predict` reports them.
    """
    _check_model(model)
    rows, single = _images(model, images)
    probabilities = model.predict_proba(rows)
    return probabilities[0] if single else probabilities


def predict(model: Model, images) -> int | np.ndarray:
    """The most likely class: an int for one image (or picture), an array (N,) for many.
    images: as for predict_proba. The class's name is model.class_names[label]."""
    probabilities = predict_proba(model, images)
    labels = np.argmax(probabilities, axis=-1)
    return int(labels) if labels.ndim == 0 else labels


def evaluate(model: Model, images, labels) -> Evaluation:
    """How well the model does on labelled images (N, 784) or (N, 28, 28): an Evaluation with
    `accuracy`, mean `loss`, the `confusion` matrix (rows: true class) and `per_class` scores.

        >>> mlknobs.evaluate(model, data.test.images, data.test.labels).accuracy
        0.93...
    """
    from mlknobs.nn.evaluate import evaluate as evaluate_arrays

    _check_model(model)
    rows, single = _images(model, images)
    labels = np.asarray(labels).reshape(-1)
    if single or len(rows) == 0:
        raise InputError("images", "evaluate needs a non-empty batch of images (N, 784) or (N, 28, 28)")
    _check_labels(model, labels, len(rows))
    return evaluate_arrays(model.params, model.loss, model.scaling, rows, labels, n_classes=len(model.class_names))


def _check_labels(model: Model, labels: np.ndarray, count: int) -> None:
    classes = len(model.class_names)
    if labels.dtype.kind not in "ui" or len(labels) != count:
        raise InputError("labels", f"labels must be {count:,} whole numbers, one per image "
                                   f"(got {labels.dtype.name}, {len(labels):,})")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise InputError("labels", f"labels must be classes 0 to {classes - 1}, not {labels.min()}..{labels.max()}")


# --- looking inside -----------------------------------------------------------------------------------

def explain(model: Model, image, label: int, *, knob: str | None = None, learning_rate: float | None = None,
            h: float = 1e-5) -> Explanation:
    """One step of learning on one digit, with every number (what `mlknobs explain` prints).

    image: one image (784,) or (28, 28) uint8, or a picture's path or bytes; label: its right class.
    knob: the knob to follow back by the chain rule and to nudge by h, as "w1[350,3]", "b1[3]",
    "w2[3,7]" or "b2[7]" (default: the w1 knob with the largest slope). learning_rate: of the one
    plain gradient-descent step (default: the model's). Computed in float64.

    The result holds the forward pass (x, z1, a1, z2, outputs, probabilities, loss), dz2, the
    slopes of every knob (a Params), `knob` (its chain of equations, backprop_slope, nudge_slope,
    relative_difference) and `step` (loss_before, loss_after, predicted_change, ...).
    """
    from mlknobs.nn.explain import explain_step, parse_knob

    _check_model(model)
    rows, single = _images(model, image)
    if not single:
        raise InputError("image", "explain takes one image, (784,) or (28, 28)")
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) \
            or not 0 <= label < len(model.class_names):
        raise InputError("label", f"label must be a class of the model, 0 to {len(model.class_names) - 1}, "
                                  f"not {label!r}")
    rate = model.config.learning_rate if learning_rate is None else learning_rate
    for name, value, allowed in (("learning_rate", rate, STEP_RATE), ("h", h, NUDGE)):
        problem = allowed.problem(value, name)
        if problem:
            raise InputError(name, problem)
    chosen = parse_knob(knob, model.params.hidden_size) if knob is not None else None
    return explain_step(model.params, model.loss, model.scaling, rows[0], int(label), chosen, rate, h)


def gradcheck(loss: str = "cross-entropy", hidden_size: int = 16, batch_size: int = 8, eps: float = 1e-5,
              seed: int = 0, tolerance: float = 1e-5, dropout: float = 0.0) -> GradcheckResult:
    """Backprop against the definition of the slope for every knob of a small random float64 network:
    each knob nudged by +-eps, (L(w + eps) - L(w - eps)) / 2 eps beside the backprop slope.

    The result's `passed` says whether every relative error is within `tolerance`;
    `max_relative_error` has one per array (w1, b1, w2, b2), `samples` the knobs with the
    largest slopes. What `mlknobs gradcheck` prints.
    """
    from mlknobs.nn.gradcheck import gradcheck as check

    if loss not in LOSS_NAMES:
        raise SettingsError([("loss", f"{{loss}} must be one of {', '.join(LOSS_NAMES)}, not {loss!r}")])
    given = {"hidden_size": hidden_size, "batch_size": batch_size, "eps": eps, "tolerance": tolerance,
             "seed": seed, "dropout": dropout}
    for name, value in given.items():
        problem = GRADCHECK_RANGES[name].problem(value, name)
        if problem:
            raise InputError(name, problem)
    return check(loss, hidden_size, batch_size, eps, seed, tolerance, dropout=dropout)


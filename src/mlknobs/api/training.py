"""Training from Python: a run in memory (train), one that writes files as `mlknobs train` does
(train_and_save), the untrained network a run starts from (fresh_model), and the progress bar."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlknobs.api.data import Dataset, check_dataset, check_dataset_name, load_dataset, mirrors_from_env
from mlknobs.config import DEFAULTS, TrainConfig
from mlknobs.errors import InputError, SettingsError, TrainingInterrupted
from mlknobs.nn.model import Model

if TYPE_CHECKING:
    from mlknobs.training.loop import Callback, Progress


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


def _data_and_settings(data: Dataset | None, config: TrainConfig | None, settings: dict) -> tuple[Dataset, TrainConfig]:
    """The data a run trains on (default: load_dataset of the `dataset` setting), checked, and its settings."""
    if data is None:
        config = _settings(config, settings)
        return load_dataset(config.dataset), config
    check_dataset(data)
    return data, _settings(config, settings, dataset=data.name)


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

    data, config = _data_and_settings(data, config, settings)
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
        check_dataset_name(config.dataset)
    source = DataSource(Path(data_dir) if data_dir is not None else None,
                        mirrors_from_env() if mirrors is None else tuple(mirrors), progress)
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
    from mlknobs.training.step import fresh_model as untrained

    data, config = _data_and_settings(data, config, settings)
    return untrained(config, data.train, data.class_names)

"""A whole training run and the files it owns: what `mlknobs train` does, for any caller.

    run(config, out, ...) -> Model

loads the dataset (downloading it on first use), trains with a checkpoint beside the output after
every epoch, and saves the model atomically. It owns the checkpoint's lifecycle, so the CLI, a
sweep and a web page all follow the same policy:

- a new run refuses to replace an interrupted run's checkpoint unless told to start afresh;
- `resume` continues from the checkpoint with its saved settings (given settings that differ are
  refused) and ends with the same weights, bit for bit, as an uninterrupted run;
- Ctrl-C keeps the checkpoint (TrainingInterrupted says where it is);
- a run that diverges removes the checkpoint it wrote itself (a resumed one is left alone: it is
  the user's earlier work) and leaves an existing model file untouched;
- after the model is saved, the checkpoint is removed;
- while a run lives it holds a lock on its output: a second run on the same output is refused
  with a message naming the holder, and a killed run leaves no lock behind (the kernel drops it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlknobs.config import TrainConfig
from mlknobs.data.datasets import get_dataset
from mlknobs.data.splits import Split, load_split
from mlknobs.errors import (
    InterruptedRunExists,
    MlknobsError,
    ModelFileMissing,
    NothingToResume,
    ResumeSettingsDiffer,
    SettingsError,
    TrainingDiverged,
)
from mlknobs.files import OutputLock, check_writable, remove_stale_temps
from mlknobs.io.curves import diverged_path_for, save_diverged
from mlknobs.io.modelfile import Checkpoint, load_checkpoint, load_model_and_sha256, save_model
from mlknobs.nn.model import Model
from mlknobs.training.loop import Callback, fit
from mlknobs.training.step import check_initial


def _identity(path: Path) -> tuple | None:
    """Which file `path` names right now (None if none): a rewrite gives a new inode or mtime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def checkpoint_path_for(model_path: Path) -> Path:
    """model.npz -> model.ckpt.npz, beside it."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.name.removesuffix('.npz')}.ckpt.npz")


@dataclass(frozen=True)
class DataSource:
    """Where a run finds its dataset: the cache folder, extra mirrors, and whether to show download bars."""

    data_dir: Path | None = None
    mirrors: tuple[str, ...] = ()
    progress: bool | None = False

    def load(self, dataset: str) -> tuple[Split, Split, list[str]]:
        """(train, test, class names) of a dataset, downloaded and verified on first use."""
        spec = get_dataset(dataset)
        train = load_split(spec, "train", self.data_dir, self.mirrors, progress=self.progress)
        test = load_split(spec, "test", self.data_dir, self.mirrors, progress=self.progress)
        return train, test, list(spec.class_names)


def lineage(path: Path, model: Model, sha256: str) -> dict:
    """What a model trained on from `model` records about its parent: read from `path`, whose
    bytes had the digest `sha256` (modelfile.load_model_and_sha256 takes both from one read)."""
    # A path that is not valid text (bytes from another locale) is kept readable, never refused later.
    shown = os.fsencode(Path(path)).decode("utf-8", "backslashreplace")
    return {"path": shown, "sha256": sha256, "dataset": model.dataset,
            "test_accuracy": model.results.get("test_accuracy")}


def _keep_curve(out: Path, config: TrainConfig, error: TrainingDiverged) -> None:
    """A diverged run's curve up to the blow-up goes to <out>.diverged.json (error.curve says so):
    the lesson of a too-large learning rate is in it. Best effort: the error is what matters."""
    if not error.step_losses and not error.history:
        return
    path = diverged_path_for(out)
    try:
        save_diverged(path, config, error)
    except (OSError, MlknobsError):
        return
    error.curve = path


def prepare(config: TrainConfig | None, out: Path, *, resume: bool = False, fresh: bool = False,
            given: dict | None = None) -> tuple[TrainConfig, Checkpoint | None]:
    """Check that a run may start on `out`; returns its settings and, when resuming, its checkpoint.

    Fast and before any data is loaded, so a refusal costs nothing. `given` (with `resume`) holds
    the settings the user stated explicitly: any that differ from the checkpoint's are refused.
    """
    if resume and fresh:
        raise ValueError("resume and fresh contradict each other")
    check_writable(out)
    checkpoint = checkpoint_path_for(out)
    if not resume:
        if checkpoint.exists() and not fresh:
            raise InterruptedRunExists(checkpoint)
        if config is None:
            raise ValueError("a new run needs its settings")
        return config, None
    if not checkpoint.exists():
        raise NothingToResume(checkpoint)
    saved = load_checkpoint(checkpoint)
    differences = {name: (getattr(saved.model.config, name), value) for name, value in (given or {}).items()
                   if getattr(saved.model.config, name) != value}
    if differences:
        raise ResumeSettingsDiffer(differences)
    return saved.model.config, saved


def run(config: TrainConfig | None, out: Path, *, data: DataSource = DataSource(), resume: bool = False,
        fresh: bool = False, given: dict | None = None, callback: Callback | None = None,
        init_from: Path | None = None, keep_curve: bool = False) -> Model:
    """Train and save a model at `out`, with a checkpoint beside it until it is saved (see the module note).

    config: the settings of a new run (None when resuming: the checkpoint's are used).
    init_from: a model file whose weights and input scaling a new run starts from; its hidden
    size must be the run's, its dataset may differ if the images have the same shape (the new
    model keeps the new dataset's class names and records the file as its parent).
    Raises InterruptedRunExists, NothingToResume, ResumeSettingsDiffer, SettingsError and
    ModelFileError before any work; TrainingInterrupted (checkpoint kept) and TrainingDiverged.
    keep_curve: a diverged run's curve goes to <out>.diverged.json (`mlknobs train`; a sweep keeps it
    in its results instead); the error's `curve` names the file.
    """
    if resume and init_from is not None:
        raise SettingsError([(None, "a resumed run continues from its checkpoint's weights, "
                                    "not from another model's")])
    if Path(out).name.endswith(".ckpt.npz"):
        raise SettingsError([(None, f"{out} is a checkpoint's name: a model cannot be saved there")])
    check_writable(out)
    checkpoint = checkpoint_path_for(out)
    # One live run owns an output and its checkpoint: a second one on the same path is refused at
    # once (OutputBusy names the holder), and --fresh can replace only an interrupted run. The
    # checkpoint is locked too: `--out model` and `--out model.npz` share model.ckpt.npz.
    with OutputLock(out), OutputLock(checkpoint):
        for path in (out, checkpoint):
            remove_stale_temps(path)          # a killed save's leftovers; no live writer can own them now
        return _run_locked(config, out, checkpoint, data, resume, fresh, given, callback, init_from, keep_curve)


def _run_locked(config, out, checkpoint, data, resume, fresh, given, callback, init_from, keep_curve) -> Model:
    config, saved = prepare(config, out, resume=resume, fresh=fresh, given=given)
    initial = parent = None
    if init_from is not None:
        try:
            initial, sha256 = load_model_and_sha256(init_from)    # one open: the bytes hashed are the bytes read
        except ModelFileMissing as e:
            raise ModelFileMissing(init_from, role="initial model") from e
        check_initial(config, initial, init_from)                  # before the data is loaded
        parent = lineage(init_from, initial, sha256)
    train, test, class_names = data.load(config.dataset)
    before = _identity(checkpoint)
    try:
        model = fit(config, train, test, class_names, checkpoint=checkpoint, resume=saved, callback=callback,
                    initial=initial, parent=parent)
    except TrainingDiverged as e:
        # This run's own checkpoint led here: remove it. A resumed run's is the user's earlier work,
        # and one this run never replaced (--fresh diverging in its first epoch) is another run's.
        if saved is None and _identity(checkpoint) != before:
            checkpoint.unlink(missing_ok=True)
        if keep_curve:
            _keep_curve(out, config, e)
        raise
    save_model(out, model)
    checkpoint.unlink(missing_ok=True)
    return model

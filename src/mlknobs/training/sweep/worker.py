"""One run of a sweep, as a worker process (joblib's pool, a Dask worker) or this process trains it.

A `RunTask` carries everything the run needs and pickles: its id, its settings, the absolute path
of its model, and where its data is (`SweepData`, with the dataset specs looked up once by the
process that started the sweep). `run_one` trains it through training.run.run, the same
checkpoints, locks and guards as `mlknobs train`, and turns any failure into a "failed" outcome.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlknobs.config import TrainConfig
from mlknobs.data.datasets import DatasetSpec, get_dataset
from mlknobs.errors import MlknobsError


@dataclass(frozen=True)
class SweepData:
    """The data source of a sweep's runs, as training.run.DataSource, but carrying the dataset specs.

    `resolved` looks the specs (file names, SHA-256 sums, sizes, mirrors) up once, in the process
    that starts the sweep, and they travel with each run: a worker process or a machine of a Dask
    cluster downloads and verifies exactly the files this process would. Paths become absolute,
    since workers may run in another folder.
    """

    data_dir: Path | None = None
    mirrors: tuple[str, ...] = ()
    progress: bool | None = False       # download bars, in this process only (workers stay quiet)
    specs: tuple[DatasetSpec, ...] = ()

    def resolved(self, datasets: Iterable[str]) -> SweepData:
        """This source with absolute paths and the specs of `datasets` (UnsupportedMirror for a bad mirror)."""
        from mlknobs.data.download import parse_mirror
        from mlknobs.data.splits import default_data_dir

        data_dir = Path(self.data_dir) if self.data_dir is not None else default_data_dir()
        mirrors = []
        for text in self.mirrors:
            mirror = parse_mirror(text)         # refused now, not once per run
            local = mirror.is_local and "://" not in text
            mirrors.append(str(mirror.local_root().resolve()) if local else text)
        known = {spec.name: spec for spec in self.specs}
        specs = tuple(known.get(name) or get_dataset(name) for name in dict.fromkeys(datasets))
        return SweepData(data_dir.expanduser().resolve(), tuple(mirrors), self.progress, specs)

    def spec(self, dataset: str) -> DatasetSpec:
        for spec in self.specs:
            if spec.name == dataset:
                return spec
        return get_dataset(dataset)

    def fetch(self) -> None:
        """Download and verify every dataset of the sweep once, here, before the runs start."""
        from mlknobs.data.splits import load_split

        for spec in self.specs:
            for split in ("train", "test"):
                load_split(spec, split, self.data_dir, self.mirrors, progress=self.progress)

    def load(self, dataset: str):
        """(train, test, class names), as DataSource.load: what training.run calls in a worker."""
        from mlknobs.data.splits import load_split

        spec = self.spec(dataset)
        train = load_split(spec, "train", self.data_dir, self.mirrors, progress=False)
        test = load_split(spec, "test", self.data_dir, self.mirrors, progress=False)
        return train, test, list(spec.class_names)


@dataclass(frozen=True)
class RunTask:
    """What a worker needs for one run: it pickles (no open files, no registry lookups)."""

    run_id: str
    config: TrainConfig
    model_path: Path       # absolute
    data: SweepData


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str            # "ok" | "failed"
    val_accuracy: float | None = None
    val_loss: float | None = None
    test_accuracy: float | None = None
    seconds: float = 0.0
    error: str | None = None


def run_one(task: RunTask) -> RunOutcome:
    """Train one run of a sweep through training.run; a failure becomes a "failed" outcome, not an exception.

    A checkpoint left by an interrupted run is continued (the id fixes the settings, and run()
    refuses a checkpoint whose settings differ); a model already saved with these settings (its
    record was lost with the process that started the sweep) is read instead of trained again.
    Ctrl-C propagates as KeyboardInterrupt: an interrupted run is not a result.
    """
    from mlknobs.errors import TrainingInterrupted
    from mlknobs.io.modelfile import load_model
    from mlknobs.training.run import checkpoint_path_for, run

    started = time.perf_counter()
    out = task.model_path
    try:
        resume = checkpoint_path_for(out).exists()
        model = None
        if not resume and out.exists():
            try:
                saved = load_model(out)
            except MlknobsError:
                saved = None
            model = saved if saved is not None and saved.config == task.config else None
        if model is None:
            model = run(None if resume else task.config, out, data=task.data, resume=resume,
                        given=task.config.to_dict() if resume else None)
    except TrainingInterrupted:
        raise KeyboardInterrupt from None
    except Exception as error:      # one bad run must not end the sweep
        text = str(error) if isinstance(error, MlknobsError) else f"{type(error).__name__}: {error}"
        return RunOutcome(task.run_id, "failed", seconds=time.perf_counter() - started, error=text)
    kept = kept_epoch(model.history, model.results)
    return RunOutcome(task.run_id, "ok", val_accuracy=kept.get("val_accuracy"), val_loss=kept.get("val_loss"),
                      test_accuracy=model.results.get("test_accuracy"), seconds=time.perf_counter() - started)


def kept_epoch(history: list[dict], results: dict) -> dict:
    """The history entry of the weights a model kept: the best epoch under early stopping, else the last."""
    best = results.get("best_epoch")
    if best:
        for entry in history:
            if entry.get("epoch") == best:
                return entry
    return history[-1] if history else {}

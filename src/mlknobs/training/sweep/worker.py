"""One run of a sweep, as a worker process (joblib's pool, a Dask worker) or this process trains it.

A `RunTask` carries everything the run needs and pickles: its id, its settings, the absolute path
of its model, and where its data is (`SweepData`, with the dataset specs looked up once by the
process that started the sweep). `run_one` trains it through training.run.run, the same
checkpoints, locks and guards as `mlknobs train`, and turns any failure into a "failed" outcome
that says whether the run failed on its own (it diverged: a rerun would too) or for a reason
outside it (a lock, a full disk, a download), which `--resume` retries.

A pool's worker process runs its tasks through `DiesWithSweep`, so that it ends with the process
that started the sweep, however that one ends (kill -9 included).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mlknobs.config import TrainConfig
from mlknobs.data.datasets import DatasetSpec, get_dataset
from mlknobs.errors import MlknobsError, SettingsError, TrainingDiverged
from mlknobs.text import error_line

# A run that fails on its own fails the same way again: --resume does not retry it. Any other
# failure (a lost worker, a lock another process holds, an unwritable folder, a download) is the
# surroundings' and is retried.
FAILS_ON_ITS_OWN = (TrainingDiverged, SettingsError)
MAX_ERROR_CHARS = 2000            # a failed run's error, as recorded in results.jsonl
PARENT_CHECK_SECONDS = 0.5        # how often a pool's worker checks that the sweep's process is alive
EXIT_ORPHANED = 1


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
    retryable: bool = False       # failed for a reason outside the run: --resume runs it again
    step_losses: list | None = None   # [step, loss] pairs: a diverged run's curve, an ok run's with --log-every


MAX_CURVE_PAIRS = 1000            # a results line stays far below its 64 KiB limit


def curve_for_line(pairs: list) -> list | None:
    """At most MAX_CURVE_PAIRS [step, loss] pairs, evenly thinned, the last (the blow-up) always kept."""
    if not pairs:
        return None
    if len(pairs) > MAX_CURVE_PAIRS:
        keep = {round(i * (len(pairs) - 1) / (MAX_CURVE_PAIRS - 1)) for i in range(MAX_CURVE_PAIRS)}
        pairs = [pair for i, pair in enumerate(pairs) if i in keep]
    return [[step, None if loss is None else float(f"{loss:.6g}")] for step, loss in pairs]


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
        text = error_line(error, MAX_ERROR_CHARS)
        if not isinstance(error, MlknobsError):
            text = f"{type(error).__name__}: {text}"[:MAX_ERROR_CHARS]
        return RunOutcome(task.run_id, "failed", seconds=time.perf_counter() - started, error=text,
                          retryable=not isinstance(error, FAILS_ON_ITS_OWN),
                          step_losses=curve_for_line(getattr(error, "step_losses", None)))
    kept = kept_epoch(model.history, model.results)
    return RunOutcome(task.run_id, "ok", val_accuracy=kept.get("val_accuracy"), val_loss=kept.get("val_loss"),
                      test_accuracy=model.results.get("test_accuracy"), seconds=time.perf_counter() - started,
                      step_losses=curve_for_line(model.step_losses))


def kept_epoch(history: list[dict], results: dict) -> dict:
    """The history entry of the weights a model kept: the best epoch under early stopping, else the last."""
    best = results.get("best_epoch")
    if best:
        for entry in history:
            if entry.get("epoch") == best:
                return entry
    return history[-1] if history else {}


# --- a pool's worker ends with the sweep ------------------------------------------------------------

@dataclass(frozen=True)
class DiesWithSweep:
    """`runner`, run in a pool's worker process that ends as soon as the sweep's process is gone.

    The pool's workers are children of the process that started the sweep (`sweep_pid`). If that
    process is killed (kill -9 leaves it no time to stop its pool), a worker would train on unseen
    and keep its run's lock, so that a resumed sweep found the run "being written by" the orphan.
    Instead a thread of the worker checks every PARENT_CHECK_SECONDS that its parent is still the
    sweep's process, and ends the worker at once when it is not: the run's last checkpoint stays,
    and `--resume` continues from it.
    """

    runner: Callable[[RunTask], RunOutcome]
    sweep_pid: int

    def __call__(self, task: RunTask) -> RunOutcome:
        watch_parent(self.sweep_pid)
        return self.runner(task)


_watched_parent: int | None = None


def watch_parent(sweep_pid: int) -> None:
    """In a worker process: end this process when its parent is no longer `sweep_pid` (once per process)."""
    global _watched_parent
    if os.getpid() == sweep_pid or _watched_parent == sweep_pid:
        return                    # the sweep's own process, or already watched
    if os.getppid() != sweep_pid:
        os._exit(EXIT_ORPHANED)   # the sweep is gone already
    _watched_parent = sweep_pid
    threading.Thread(target=_exit_when_orphaned, args=(sweep_pid,), name="mlknobs-sweep-parent",
                     daemon=True).start()


def _exit_when_orphaned(sweep_pid: int) -> None:
    while os.getppid() == sweep_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(EXIT_ORPHANED)       # no cleanup: the run's checkpoint is whole (atomic writes), the lock drops

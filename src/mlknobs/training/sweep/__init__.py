"""A sweep: every combination of a grid of training settings, each trained by training.run, side by side.

    sweep(grid, out_dir, data=SweepData(data_dir, mirrors), backend="local", jobs=2) -> SweepResult

- The grid (`grid.Grid`) holds a tuple of values for every setting (one value: a constant) and
  expands to one TrainConfig per combination, each validated by TrainConfig itself; each run's id
  comes from its settings alone.
- Each run goes through `training.run.run` (`worker.run_one`: the same checkpoints, locks and
  guards as `mlknobs train`) and saves its model at OUT_DIR/runs/<id>.npz. Runs execute on an
  executor from the `executors.BACKENDS` table: "local" (joblib's process pool; one run after
  another in this process with jobs=1) or "dask" (an existing Dask cluster, or a LocalCluster).
- Selection is honest: runs are ranked by their validation accuracy (a split of the training set,
  `val_size` > 0 is required), never by test accuracy; the test accuracy is reported beside it.
- OUT_DIR/results.jsonl gets one JSON line per finished run as each run finishes (`results`). A run
  that fails (diverges, or loses its Dask worker for good) is recorded "failed" with its message
  and the sweep goes on. OUT_DIR/sweep.json describes the grid, so that `resume` can check it.
- Ctrl-C keeps every recorded run (SweepInterrupted) and each unfinished run's checkpoint;
  `resume=True` runs only the runs missing from results.jsonl, continuing a run from its
  checkpoint where one was left.

Training is deterministic given the seed and the BLAS thread count (1 unless the grid says
otherwise), so a run gives the same accuracies on every backend.

This package imports no NumPy at import time (the CLI reads BACKENDS for its --help); the training
itself is imported where a run starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from mlknobs.config import TrainConfig, max_threads
from mlknobs.errors import (
    MlknobsError,
    NoSweep,
    NoSweepToResume,
    OutputError,
    SettingsError,
    SweepError,
    SweepExists,
    SweepFileError,
    SweepFromOtherVersion,
    SweepGridDiffers,
    SweepInterrupted,
)
from mlknobs.files import OutputLock, atomic_write
from mlknobs.text import one_line
from mlknobs.training.sweep.executors import BACKENDS
from mlknobs.training.sweep.grid import MAX_RUNS, SETTING_NAMES, SWEEP_DEFAULTS, Grid, normalized, run_id
from mlknobs.training.sweep.results import (
    LoadedSweep,
    ResultsFile,
    SweepPaths,
    describe,
    is_final,
    load_sweep,
    of_grid,
    parse_record,
    rank,
    read_description,
    read_results,
    saved_grid,
)
from mlknobs.training.sweep.worker import MAX_ERROR_CHARS, RunOutcome, RunTask, SweepData, kept_epoch, run_one

__all__ = [
    "BACKENDS", "MAX_RUNS", "SETTING_NAMES", "SWEEP_DEFAULTS", "Grid", "LoadedSweep", "NoSweep", "NoSweepToResume",
    "RunOutcome", "RunTask", "SweepData", "SweepError", "SweepExists", "SweepFileError", "SweepGridDiffers",
    "SweepInterrupted", "SweepProgress", "SweepResult", "is_final", "kept_epoch", "load_sweep", "parse_record", "rank",
    "read_results", "run_id", "run_one", "sweep",
]


@dataclass(frozen=True)
class SweepProgress:
    """What a sweep's callback is told: at "start" (nothing finished yet in this call) and after each "run"."""

    event: str             # "start" | "run"
    done: int              # runs recorded so far (those of an earlier, interrupted call included)
    total: int
    record: dict | None = None


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    grid: Grid
    records: list[dict] = field(default_factory=list)      # in grid order

    @property
    def ranked(self) -> list[dict]:
        return rank(self.records)

    @property
    def best(self) -> dict | None:
        ranked = self.ranked
        return ranked[0] if ranked and ranked[0]["status"] == "ok" else None


def sweep(grid: Grid | None, out_dir: Path, *, data: SweepData | None = None, backend: str = "local",
          jobs: int | None = None, scheduler: str | None = None, resume: bool = False,
          given: Mapping[str, Iterable] | None = None,
          callback: Callable[[SweepProgress], None] | None = None) -> SweepResult:
    """Train every combination of `grid` and record each as it finishes (see the package note).

    grid: the settings of a new sweep (None when resuming: sweep.json's are used). given (with
    resume): the settings' values the user stated; any that differ from the saved grid are refused
    with SweepGridDiffers. data: where the runs find their datasets (default: the default data dir).
    jobs: runs at the same time (default: the cores this process may use).
    A resumed sweep runs the runs missing from results.jsonl and those recorded as failed for a
    reason outside the run (`retryable`); a run that failed on its own (diverged) stays failed.
    Raises SettingsError, MissingExtra, SweepExists, NoSweepToResume, SweepGridDiffers,
    SweepFileError, SweepBackendUnreachable before sweep.json is written or any run starts;
    SweepInterrupted on Ctrl-C (every finished run is recorded).
    """
    if backend not in BACKENDS:
        raise SettingsError([(None, f"unknown sweep backend {backend!r} (known: {', '.join(BACKENDS)})")])
    jobs = jobs if jobs is not None else max_threads()
    if jobs < 1:
        raise SettingsError([(None, f"jobs must be at least 1, got {jobs}")])
    executor = BACKENDS[backend](jobs, scheduler)        # a missing extra, a bad address: before any file
    out_dir = Path(out_dir)
    paths = SweepPaths(out_dir)
    if resume:
        try:
            grid = _resumed_grid(out_dir, given or {})
        except NoSweep:
            raise NoSweepToResume(out_dir) from None
    else:
        if grid is None:
            raise ValueError("a new sweep needs its grid")
        _make_folder(out_dir)
    with OutputLock(paths.results):          # one sweep per folder: a second one is refused, naming the first
        every_record = read_results(paths.results)
        if not resume and (paths.description.exists() or every_record):
            raise SweepExists(out_dir, len(every_record), _saved_size(out_dir))
        recorded = of_grid(every_record, grid)
        configs, ids = grid.configs(), grid.run_ids()
        settings_of = dict(zip(ids, configs))
        data = (data or SweepData()).resolved(c.dataset for c in configs)
        tasks = [RunTask(i, c, paths.model(i).resolve(), data) for i, c in zip(ids, configs)
                 if not is_final(recorded.get(i))]
        done = len(ids) - len(tasks)
        # Reach the workers and fetch the data (once, here, not once per run) before sweep.json is
        # written: a sweep that cannot start leaves no description that would refuse the same command.
        with executor if tasks else nullcontext(executor):
            if tasks:
                data.fetch()
            if not resume:
                atomic_write(paths.description, lambda f: f.write(json.dumps(describe(grid), indent=1).encode()))
            _make_folder(paths.runs)
            if callback is not None:
                callback(SweepProgress("start", done, len(ids)))
            with ResultsFile(paths.results) as results:
                try:
                    with closing(executor.run(run_one, tasks)) as outcomes:
                        for outcome in outcomes:
                            record = _record(outcome, settings_of[outcome.run_id], paths.model(outcome.run_id))
                            results.append(record)
                            recorded[outcome.run_id] = record
                            done += 1
                            if callback is not None:
                                callback(SweepProgress("run", done, len(ids), record))
                except KeyboardInterrupt:
                    raise SweepInterrupted(out_dir, sum(is_final(recorded.get(i)) for i in ids), len(ids)) from None
    return SweepResult(out_dir, grid, [recorded[i] for i in ids if i in recorded])


def _record(outcome: RunOutcome, config: TrainConfig, model_path: Path) -> dict:
    record = {"run": outcome.run_id, "settings": config.to_dict(), "status": outcome.status,
              "val_accuracy": outcome.val_accuracy, "val_loss": outcome.val_loss,
              "test_accuracy": outcome.test_accuracy, "seconds": round(outcome.seconds, 3),
              "model": str(model_path) if outcome.status == "ok" else None}
    if outcome.status != "ok":
        record["error"] = (outcome.error or "")[:MAX_ERROR_CHARS]
        record["retryable"] = outcome.retryable
    if outcome.step_losses:
        record["step_losses"] = outcome.step_losses     # the run's curve (a failed run's up to the blow-up)
    return record


def _resumed_grid(out_dir: Path, given: Mapping[str, Iterable]) -> Grid:
    description = read_description(out_dir)
    saved = saved_grid(out_dir, description)
    if description.get("runs") != saved.run_ids():
        # Another mlknobs version (other settings, so other hashes): its runs would all look missing.
        version = description.get("mlknobs")
        raise SweepFromOtherVersion(SweepPaths(out_dir).description,
                                    one_line(version, 40) if isinstance(version, str) else "?")
    unknown = sorted(set(given) - set(SETTING_NAMES))
    if unknown:
        raise SettingsError([(None, f"unknown training settings: {', '.join(unknown)}")])
    stated = {name: normalized(name, values) for name, values in given.items()}
    differences = {name: (saved.values[name], values) for name, values in stated.items()
                   if values != saved.values[name]}
    if differences:
        raise SweepGridDiffers(out_dir, differences)
    return saved


def _saved_size(out_dir: Path) -> int:
    try:
        return len(saved_grid(out_dir, read_description(out_dir)))
    except MlknobsError:
        return 0


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise OutputError(f"cannot create {folder}: folder {folder.parent} does not exist") from None
    except FileExistsError:
        raise OutputError(f"cannot use {folder}: it is a file, not a folder") from None
    except OSError as e:
        raise OutputError(f"cannot create {folder}: {e.strerror or e}") from e

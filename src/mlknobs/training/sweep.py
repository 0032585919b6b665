"""A sweep: every combination of a grid of training settings, each trained by training.run, side by side.

    sweep(grid, out_dir, data=SweepData(data_dir, mirrors), backend="local", jobs=2) -> SweepResult

- The grid (`Grid`) holds a tuple of values for every setting (one value: a constant) and expands
  to one TrainConfig per combination, each validated by TrainConfig itself. A run's id is derived
  from its settings alone: the swept values, readable, then a short hash of every setting
  (`lr0.5-h64-seed1-3f2a9c1b`), so the same grid always gives the same ids.
- Each run goes through `training.run.run` (the same checkpoints, locks and guards as `mlknobs
  train`) and saves its model at OUT_DIR/runs/<id>.npz. Runs execute on an executor from the
  `BACKENDS` table: "local" (joblib's process pool; one run after another in this process with
  jobs=1) or "dask" (an existing Dask cluster, or a LocalCluster started for the sweep).
- Selection is honest: runs are ranked by their validation accuracy (a split of the training set,
  `val_size` > 0 is required), never by test accuracy; the test accuracy is reported beside it.
- OUT_DIR/results.jsonl gets one JSON line per finished run, written by this process only, as each
  run finishes: one os.write of the whole line on an O_APPEND descriptor, then fsync. A run that
  fails (diverges, or loses its Dask worker for good) is recorded "failed" with its message and
  the sweep goes on. OUT_DIR/sweep.json describes the grid, so that `resume` can check it.
- Ctrl-C keeps every recorded run (SweepInterrupted) and each unfinished run's checkpoint;
  `resume=True` runs only the runs missing from results.jsonl, continuing a run from its
  checkpoint where one was left.

Training is deterministic given the seed and the BLAS thread count (1 unless the grid says
otherwise), so a run gives the same accuracies on every backend.

This module imports no NumPy at import time (the CLI reads BACKENDS for its --help); the training
itself is imported where a run starts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, fields
from pathlib import Path

from mlknobs import __version__
from mlknobs.config import DEFAULTS, TrainConfig, max_threads
from mlknobs.data.datasets import DatasetSpec, get_dataset
from mlknobs.errors import MissingExtra, MlknobsError, OutputError, RunStateError, SettingsError
from mlknobs.files import OutputLock, atomic_write, strict_json

SWEEP_FORMAT, SWEEP_VERSION = "mlknobs-sweep", 1
# A sweep ranks its runs on a validation split: 10,000 training digits held out, as in Nielsen's 50k/10k.
SWEEP_DEFAULTS = DEFAULTS.replace(val_size=10_000)
SETTING_NAMES = tuple(f.name for f in fields(TrainConfig))
MAX_RUNS = 10_000                 # a grid larger than this is a typo, not a plan
DASK_CONNECT_TIMEOUT = "20s"      # how long to wait for an existing Dask scheduler

# How a swept setting shows in a run id: prefix + value (lr0.5, h64); "" shows the value alone (cosine).
# A setting not listed shows under its own name (dropout0.2).
ID_PREFIXES = {
    "epochs": "e", "hidden_size": "h", "batch_size": "b", "learning_rate": "lr", "momentum": "m",
    "weight_decay": "wd", "schedule": "", "loss": "", "val_size": "val", "early_stopping": "es",
    "threads": "t", "dataset": "",
}


# --- errors -----------------------------------------------------------------------------------------

class SweepError(MlknobsError):
    """A sweep cannot start or go on (its folder, its workers)."""


class SweepExists(RunStateError):
    """`out_dir` already holds a sweep (`recorded` of `total` runs done); resume it or use another folder."""

    def __init__(self, out_dir: Path, recorded: int, total: int):
        self.out_dir, self.recorded, self.total = Path(out_dir), recorded, total
        super().__init__(f"{out_dir} already holds a sweep ({recorded} of {total} runs recorded)")


class NoSweep(SweepError):
    """`out_dir` holds no sweep: its sweep.json is missing."""

    def __init__(self, out_dir: Path, message: str | None = None):
        self.out_dir = Path(out_dir)
        super().__init__(message or f"{out_dir} holds no sweep ({self.out_dir / 'sweep.json'} is missing)")


class NoSweepToResume(NoSweep, RunStateError):
    def __init__(self, out_dir: Path):
        super().__init__(out_dir, f"nothing to resume: {out_dir} holds no sweep "
                                  f"({Path(out_dir) / 'sweep.json'} is missing)")


class SweepGridDiffers(RunStateError):
    """A resumed sweep runs its saved grid; `differences` maps setting -> (saved values, given values)."""

    def __init__(self, out_dir: Path, differences: dict):
        self.out_dir, self.differences = Path(out_dir), dict(differences)
        listed = "; ".join(f"{name}: saved {values_text(saved)}, given {values_text(given)}"
                           for name, (saved, given) in self.differences.items())
        super().__init__(f"{out_dir} holds a sweep over another grid ({listed})")


class SweepInterrupted(MlknobsError):
    """Ctrl-C: `recorded` of `total` runs are in results.jsonl; the others' checkpoints are kept."""

    def __init__(self, out_dir: Path, recorded: int, total: int):
        self.out_dir, self.recorded, self.total = Path(out_dir), recorded, total
        super().__init__(f"interrupted: {recorded} of {total} runs finished and are recorded in "
                         f"{Path(out_dir) / 'results.jsonl'}")


def values_text(values: Sequence) -> str:
    return ",".join(_value_text(v) for v in values)


def _value_text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- the grid ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """Every setting's values (a tuple; one value is a constant), in TrainConfig's order."""

    values: dict[str, tuple]

    @classmethod
    def of(cls, values: Mapping[str, Iterable] | None = None, defaults: TrainConfig = SWEEP_DEFAULTS) -> Grid:
        """A grid from some settings' values; the others are constants from `defaults`.

        Validates every combination through TrainConfig (SettingsError names the setting), and
        refuses empty or repeated values, a grid without a validation split, and more than MAX_RUNS.
        """
        values = dict(values or {})
        unknown = sorted(set(values) - set(SETTING_NAMES))
        if unknown:
            raise SettingsError([(None, f"unknown training settings: {', '.join(unknown)}")])
        grid = {}
        for name in SETTING_NAMES:
            given = _normalized(name, values.get(name, (getattr(defaults, name),)))
            if not given:
                raise SettingsError([(name, f"{{{name}}} needs at least one value")])
            repeated = sorted({_value_text(v) for v in given if given.count(v) > 1})
            if repeated:
                raise SettingsError([(name, f"{{{name}}} lists {', '.join(repeated)} more than once")])
            grid[name] = given
        if any(v == 0 for v in grid["val_size"]):
            raise SettingsError([("val_size", "{val_size} must be above 0 in a sweep: runs are ranked on a "
                                              "validation split of the training set, never on the test set")])
        size = math.prod(len(v) for v in grid.values())
        if size > MAX_RUNS:
            raise SettingsError([(None, f"the grid has {size:,} combinations, more than {MAX_RUNS:,}")])
        result = cls(grid)
        for _ in result.configs():     # TrainConfig checks each combination (ranges, nesterov needs momentum, ...)
            pass
        return result

    @property
    def varying(self) -> tuple[str, ...]:
        """The settings with more than one value."""
        return tuple(name for name, values in self.values.items() if len(values) > 1)

    def __len__(self) -> int:
        return math.prod(len(v) for v in self.values.values())

    def configs(self) -> list[TrainConfig]:
        """One TrainConfig per combination, the last setting changing fastest."""
        names = list(self.values)
        return [TrainConfig(**dict(zip(names, combination)))
                for combination in itertools.product(*(self.values[n] for n in names))]

    def run_ids(self) -> list[str]:
        return [run_id(config, self.varying) for config in self.configs()]

    def to_dict(self) -> dict:
        return {name: list(values) for name, values in self.values.items()}

    @classmethod
    def from_dict(cls, data) -> Grid:
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise SweepError("sweep.json: the grid is not an object of lists")
        return cls.of(data)


def _normalized(name: str, values) -> tuple:
    """A setting's values as a tuple; an int where the setting is a float (--lr 1) becomes 1.0, the same run."""
    values = (values,) if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) else tuple(values)
    is_float = isinstance(getattr(DEFAULTS, name), float)
    return tuple(float(v) if is_float and type(v) is int else v for v in values)


def run_id(config: TrainConfig, varying: Sequence[str] = ()) -> str:
    """The swept settings, readable, then a short hash of every setting: `lr0.5-h64-3f2a9c1b`."""
    settings = config.to_dict()
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    readable = [f"{ID_PREFIXES.get(name, name)}{_id_value(settings[name])}" for name in varying]
    return "-".join([*readable, digest]) if readable else f"run-{digest}"


def _id_value(value) -> str:
    return str(int(value)) if isinstance(value, bool) else _value_text(value).replace("/", "_")


# --- where the runs find their data -----------------------------------------------------------------

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


# --- one run (in a worker) --------------------------------------------------------------------------

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


# --- executors --------------------------------------------------------------------------------------

Runner = Callable[[RunTask], RunOutcome]


class LocalExecutor:
    """joblib's process pool (loky), one process per job; with one job, the runs take turns in this process."""

    def __init__(self, jobs: int, scheduler: str | None = None):
        if scheduler is not None:
            raise SettingsError([(None, "a scheduler address is for the dask backend")])
        self.jobs = jobs
        if jobs > 1:
            _require("joblib", "a sweep on several local processes")

    def run(self, runner: Runner, tasks: list[RunTask]) -> Iterator[RunOutcome]:
        if self.jobs == 1 or len(tasks) <= 1:
            for task in tasks:
                yield runner(task)
            return
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        parallel = Parallel(n_jobs=min(self.jobs, len(tasks)), backend="loky", batch_size=1,
                            return_as="generator_unordered")
        try:
            yield from parallel(delayed(runner)(task) for task in tasks)
        except TerminatedWorkerError as error:
            # joblib stops the whole pool and cannot say which run's process died.
            raise SweepError(f"a worker process died ({_first_line(error)}); the runs that finished are "
                             f"recorded and a resumed sweep runs the others") from error


class DaskExecutor:
    """Runs on an existing Dask cluster (`scheduler` address) or on a LocalCluster started here.

    The LocalCluster listens on loopback only, with `jobs` worker processes of one thread each. A
    worker that dies takes its run with it: the scheduler gives the run to another worker (up to
    distributed's `allowed-failures`, 3 by default); after that the run is recorded as failed.
    """

    def __init__(self, jobs: int, scheduler: str | None = None):
        _require("distributed", "a sweep on Dask")
        self.jobs, self.scheduler = jobs, scheduler

    def run(self, runner: Runner, tasks: list[RunTask]) -> Iterator[RunOutcome]:
        import logging

        from distributed import Client, LocalCluster, as_completed

        cluster = None
        try:
            if self.scheduler is None:
                cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
                client = Client(cluster)
            else:
                client = Client(self.scheduler, timeout=DASK_CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as error:
            if cluster is not None:
                cluster.close()
            where = f"the Dask scheduler at {self.scheduler}" if self.scheduler else "a local Dask cluster"
            raise SweepError(f"cannot reach {where}: {_first_line(error)}") from error
        token = uuid.uuid4().hex[:8]     # keys unique to this sweep on a long-lived cluster
        futures = {}
        try:
            for task in tasks:
                futures[client.submit(runner, task, key=f"mlknobs-{task.run_id}-{token}", pure=False)] = task
            for future in as_completed(futures):
                task = futures[future]
                try:
                    yield future.result()
                except Exception as error:    # KilledWorker, a lost connection, ...
                    yield RunOutcome(task.run_id, "failed",
                                     error=f"lost its Dask worker: {type(error).__name__}: {_first_line(error)}")
        finally:
            if futures:
                client.cancel(list(futures))
            client.close()
            if cluster is not None:
                cluster.close()


BACKENDS = {"local": LocalExecutor, "dask": DaskExecutor}


def _require(module: str, feature: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtra(feature=feature, extra="sweep", module=module)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


# --- the files of a sweep ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepPaths:
    out_dir: Path

    @property
    def results(self) -> Path:
        return self.out_dir / "results.jsonl"

    @property
    def description(self) -> Path:
        return self.out_dir / "sweep.json"

    @property
    def runs(self) -> Path:
        return self.out_dir / "runs"

    def model(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.npz"


def read_results(path: Path) -> dict[str, dict]:
    """The records of results.jsonl by run id (a later line for the same id wins).

    A line that is not a whole JSON object (the end of a file whose writer died mid-line, which a
    single O_APPEND write makes unlikely but a full disk can still cause) is skipped: that run is
    simply not finished.
    """
    records = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("run"), str):
            records[record["run"]] = record
    return records


class ResultsFile:
    """results.jsonl, appended one whole line at a time: one os.write on an O_APPEND descriptor, then fsync."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(self.fd).st_size
            if size and not self._ends_with_newline(size):
                self._write(b"\n")         # a torn last line stays on its own line, skipped by read_results
        except BaseException:
            os.close(self.fd)
            raise

    def _ends_with_newline(self, size: int) -> bool:
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            return f.read(1) == b"\n"

    def append(self, record: dict) -> None:
        self._write((strict_json(record) + "\n").encode())

    def _write(self, data: bytes) -> None:
        written = os.write(self.fd, data)
        if written != len(data):
            raise OutputError(f"cannot write {self.path}: only {written} of {len(data)} bytes were written")
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_description(out_dir: Path) -> dict:
    """sweep.json of a sweep folder: format, version, grid, varying settings and run ids."""
    path = SweepPaths(Path(out_dir)).description
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NoSweep(out_dir) from None
    except (OSError, ValueError) as e:
        raise SweepError(f"cannot read {path}: {e}") from e
    if not isinstance(description, dict) or description.get("format") != SWEEP_FORMAT:
        raise SweepError(f"{path} does not describe an mlknobs sweep")
    if description.get("version") != SWEEP_VERSION:
        raise SweepError(f"{path} is sweep format version {description.get('version')!r}; "
                         f"this mlknobs reads version {SWEEP_VERSION}")
    return description


def _describe(grid: Grid) -> dict:
    return {"format": SWEEP_FORMAT, "version": SWEEP_VERSION, "mlknobs": __version__,
            "grid": grid.to_dict(), "varying": list(grid.varying), "runs": grid.run_ids()}


@dataclass(frozen=True)
class LoadedSweep:
    """A sweep folder as it stands: its grid and its records in grid order (missing runs left out)."""

    out_dir: Path
    grid: Grid
    records: list[dict]


def load_sweep(out_dir: Path) -> LoadedSweep:
    """Read a sweep folder (for plots and reports); raises NoSweep / SweepError."""
    out_dir = Path(out_dir)
    grid = Grid.from_dict(read_description(out_dir)["grid"])
    recorded = read_results(SweepPaths(out_dir).results)
    return LoadedSweep(out_dir, grid, [recorded[i] for i in grid.run_ids() if i in recorded])


# --- the sweep --------------------------------------------------------------------------------------

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


def rank(records: Sequence[dict]) -> list[dict]:
    """Best first: validation accuracy, then validation loss (lower is better); failed runs last, in order.

    The test accuracy plays no part: choosing by it would turn the test set into a validation set.
    """
    def key(item):
        position, record = item
        if record.get("status") != "ok" or record.get("val_accuracy") is None:
            return (1, 0.0, 0.0, position)
        loss = record.get("val_loss")
        return (0, -record["val_accuracy"], loss if loss is not None else math.inf, position)

    return [record for _, record in sorted(enumerate(records), key=key)]


def sweep(grid: Grid | None, out_dir: Path, *, data: SweepData | None = None, backend: str = "local",
          jobs: int | None = None, scheduler: str | None = None, resume: bool = False,
          given: Mapping[str, Iterable] | None = None,
          callback: Callable[[SweepProgress], None] | None = None) -> SweepResult:
    """Train every combination of `grid` and record each as it finishes (see the module note).

    grid: the settings of a new sweep (None when resuming: sweep.json's are used). given (with
    resume): the settings' values the user stated; any that differ from the saved grid are refused
    with SweepGridDiffers. data: where the runs find their datasets (default: the default data dir).
    jobs: runs at the same time (default: the cores this process may use).
    Raises SettingsError, MissingExtra, SweepExists, NoSweepToResume, SweepGridDiffers before any
    run; SweepInterrupted on Ctrl-C (every finished run is recorded).
    """
    if backend not in BACKENDS:
        raise SettingsError([(None, f"unknown sweep backend {backend!r} (known: {', '.join(BACKENDS)})")])
    jobs = jobs if jobs is not None else max_threads()
    if jobs < 1:
        raise SettingsError([(None, f"jobs must be at least 1, got {jobs}")])
    executor = BACKENDS[backend](jobs, scheduler)        # a missing extra is reported before any file is written
    out_dir = Path(out_dir)
    paths = SweepPaths(out_dir)
    if resume:
        try:
            grid = _saved_grid(out_dir, given or {})
        except NoSweep:
            raise NoSweepToResume(out_dir) from None
    else:
        if grid is None:
            raise ValueError("a new sweep needs its grid")
        _make_folder(out_dir)
    with OutputLock(paths.results):          # one sweep per folder: a second one is refused, naming the first
        recorded = read_results(paths.results)
        if not resume:
            if paths.description.exists() or recorded:
                raise SweepExists(out_dir, len(recorded), _saved_size(out_dir))
            atomic_write(paths.description, lambda f: f.write(json.dumps(_describe(grid), indent=1).encode()))
        _make_folder(paths.runs)
        configs, ids = grid.configs(), grid.run_ids()
        settings_of = dict(zip(ids, configs))
        data = (data or SweepData()).resolved(c.dataset for c in configs)
        tasks = [RunTask(i, c, paths.model(i).resolve(), data) for i, c in zip(ids, configs) if i not in recorded]
        done = len(ids) - len(tasks)
        if tasks:
            data.fetch()                     # one download and check here, not one per run
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
                raise SweepInterrupted(out_dir, sum(i in recorded for i in ids), len(ids)) from None
    return SweepResult(out_dir, grid, [recorded[i] for i in ids if i in recorded])


def _record(outcome: RunOutcome, config: TrainConfig, model_path: Path) -> dict:
    record = {"run": outcome.run_id, "settings": config.to_dict(), "status": outcome.status,
              "val_accuracy": outcome.val_accuracy, "val_loss": outcome.val_loss,
              "test_accuracy": outcome.test_accuracy, "seconds": round(outcome.seconds, 3),
              "model": str(model_path) if outcome.status == "ok" else None}
    if outcome.error is not None:
        record["error"] = outcome.error
    return record


def _saved_grid(out_dir: Path, given: Mapping[str, Iterable]) -> Grid:
    description = read_description(out_dir)
    saved = Grid.from_dict(description["grid"])
    if description.get("runs") != saved.run_ids():
        # Another mlknobs version (other settings, so other hashes): its runs would all look missing.
        raise SweepError(f"{SweepPaths(out_dir).description} was written by mlknobs "
                         f"{description.get('mlknobs', '?')}, whose run ids differ from this version's: "
                         f"start a new sweep in another folder")
    unknown = sorted(set(given) - set(SETTING_NAMES))
    if unknown:
        raise SettingsError([(None, f"unknown training settings: {', '.join(unknown)}")])
    stated = {name: _normalized(name, values) for name, values in given.items()}
    differences = {name: (saved.values[name], values) for name, values in stated.items()
                   if values != saved.values[name]}
    if differences:
        raise SweepGridDiffers(out_dir, differences)
    return saved


def _saved_size(out_dir: Path) -> int:
    try:
        return len(Grid.from_dict(read_description(out_dir)["grid"]))
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

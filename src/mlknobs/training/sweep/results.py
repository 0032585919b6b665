"""The files of a sweep folder, and the ranking of its runs.

    OUT_DIR/sweep.json        the grid: format, version, settings' values, varying settings, run ids
    OUT_DIR/results.jsonl     one JSON line per finished run (a later line for the same run wins)
    OUT_DIR/runs/<id>.npz     each finished run's model (and <id>.ckpt.npz while one is unfinished)

results.jsonl is written by the process that started the sweep only, as each run finishes: one
os.write of the whole line on an O_APPEND descriptor, then fsync. Both files are read through
`reading` (regular files only, size, line and nesting caps, linear time), and every results line
through one schema (`parse_record`), by `sweep --resume` and `plot sweep` alike: a line that is not
a valid record of a run of this grid is skipped, and that run counts as not finished.

A failed run is recorded with `retryable`: true when it failed for a reason outside the run (its
worker was lost, another process held its lock, its folder could not be written, its data could
not be fetched), which `--resume` retries; false when the run failed on its own (it diverged),
which a rerun would repeat.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlknobs import __version__
from mlknobs.bounds import Range
from mlknobs.errors import NoSweep, OutputError, SettingsError, SweepFileError
from mlknobs.files import strict_json
from mlknobs.text import one_line
from mlknobs.training.sweep.grid import MAX_RUNS, SCALARS, Grid
from mlknobs.training.sweep.reading import read_json_file, read_json_lines
from mlknobs.training.sweep.worker import MAX_CURVE_PAIRS, MAX_ERROR_CHARS

SWEEP_FORMAT, SWEEP_VERSION = "mlknobs-sweep", 1
# sweep.json lists every run id (at most MAX_RUNS, ~100 characters each) and the grid's values.
MAX_DESCRIPTION_BYTES = 16 << 20
# results.jsonl: a line per finished run and per retried one; a line is ~1 KB, its error text cut short.
MAX_RESULTS_BYTES = 64 << 20
MAX_RESULT_LINE_BYTES = 64 << 10
MAX_TEXT_CHARS = 4096             # any other text field of a record (a run id, a model path)
STATUSES = ("ok", "failed")
# The numbers of a record: None where a run has none (a failed run), else within these ranges.
RECORD_NUMBERS = {"val_accuracy": Range(0, 1), "val_loss": Range(0), "test_accuracy": Range(0, 1),
                  "seconds": Range(0)}
# A curve's [step, loss] pair: a step number, and the batch loss there (null once it stopped being finite).
CURVE_STEP, CURVE_LOSS = Range(0, integer=True), Range(0)


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


# --- results.jsonl ----------------------------------------------------------------------------------

def read_results(path: Path) -> dict[str, dict]:
    """The valid records of results.jsonl by run id (a later line for the same id wins).

    A line that is not a valid record (`parse_record`) is skipped: the end of a file whose writer
    died mid-line (a single O_APPEND write makes it unlikely, a full disk can still cause it), or
    a line edited by hand. A skipped run is simply not finished.
    """
    records = {}
    for value in read_json_lines(path, MAX_RESULTS_BYTES, MAX_RESULT_LINE_BYTES, kind="sweep's results file"):
        record = parse_record(value)
        if record is not None:
            records[record["run"]] = record
    return records


def of_grid(records: dict[str, dict], grid: Grid) -> dict[str, dict]:
    """The records of the runs of `grid` whose settings are the ones their id stands for."""
    configs = dict(zip(grid.run_ids(), grid.configs()))
    return {run: record for run, record in records.items()
            if run in configs and record["settings"] == configs[run].to_dict()}


def parse_record(value) -> dict | None:
    """`value` (one parsed results line) if it is a valid record, else None.

    A record is an object with a text `run`, an object of plain `settings`, a `status` "ok" or
    "failed", `seconds`, the validation and test figures (numbers within their ranges; a finished
    run has its validation accuracy), a `model` path or null, for a failed run an `error` text and
    whether it is `retryable`, and maybe its curve, `step_losses`: at most MAX_CURVE_PAIRS
    [step, loss] pairs. Fields beyond these are kept as they are.
    """
    if not isinstance(value, dict):
        return None
    run, settings, status = value.get("run"), value.get("settings"), value.get("status")
    if not (isinstance(run, str) and 0 < len(run) <= MAX_TEXT_CHARS and status in STATUSES):
        return None
    if not (isinstance(settings, dict) and all(isinstance(v, SCALARS) for v in settings.values())):
        return None
    for name, allowed in RECORD_NUMBERS.items():
        number = value.get(name, ...)
        if not (allowed.admits(number) or (number is None and name != "seconds")):
            return None
    if status == "ok" and value["val_accuracy"] is None:
        return None
    model, error = value.get("model"), value.get("error")
    if not (model is None or (isinstance(model, str) and len(model) <= MAX_TEXT_CHARS)):
        return None
    if not (error is None or (isinstance(error, str) and len(error) <= MAX_ERROR_CHARS)):
        return None
    if not isinstance(value.get("retryable", False), bool):
        return None
    if "step_losses" in value and not _is_curve(value["step_losses"]):
        return None
    return value


def _is_curve(pairs) -> bool:
    return isinstance(pairs, list) and len(pairs) <= MAX_CURVE_PAIRS and all(
        isinstance(pair, list) and len(pair) == 2 and CURVE_STEP.admits(pair[0])
        and (pair[1] is None or CURVE_LOSS.admits(pair[1])) for pair in pairs)


def is_final(record: dict | None) -> bool:
    """Does this record settle its run? An ok run does, and so does one that failed on its own."""
    return record is not None and (record["status"] == "ok" or not record.get("retryable", False))


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


# --- sweep.json -------------------------------------------------------------------------------------

def describe(grid: Grid) -> dict:
    """What sweep.json holds for `grid`."""
    return {"format": SWEEP_FORMAT, "version": SWEEP_VERSION, "mlknobs": __version__,
            "grid": grid.to_dict(), "varying": list(grid.varying), "runs": grid.run_ids()}


def read_description(out_dir: Path) -> dict:
    """sweep.json of a sweep folder: format, version, grid, varying settings and run ids.

    NoSweep if there is none; SweepFileError if it cannot be read, is too large, not JSON, or not a
    sweep description this mlknobs reads.
    """
    path = SweepPaths(Path(out_dir)).description
    description = read_json_file(path, MAX_DESCRIPTION_BYTES, kind="sweep description")
    if description is None:
        raise NoSweep(out_dir)
    if not isinstance(description, dict) or description.get("format") != SWEEP_FORMAT:
        raise SweepFileError(path, "does not describe an mlknobs sweep")
    if description.get("version") != SWEEP_VERSION:
        raise SweepFileError(path, f"is sweep format version {one_line(repr(description.get('version')), 40)}; "
                                   f"this mlknobs reads version {SWEEP_VERSION}")
    runs = description.get("runs")
    if not (isinstance(runs, list) and len(runs) <= MAX_RUNS):
        raise SweepFileError(path, f"its list of runs is missing or longer than {MAX_RUNS:,}")
    return description


def saved_grid(out_dir: Path, description: dict) -> Grid:
    """The grid that sweep.json describes; SweepFileError (never a usage error) if it is not one
    this mlknobs would make: the file is wrong, not the command line."""
    try:
        return Grid.from_dict(description.get("grid"))
    except SettingsError as e:
        raise SweepFileError(SweepPaths(Path(out_dir)).description,
                             f"its grid is not valid: {one_line(e.describe(), 300)}") from e


@dataclass(frozen=True)
class LoadedSweep:
    """A sweep folder as it stands: its grid and its records in grid order (missing runs left out)."""

    out_dir: Path
    grid: Grid
    records: list[dict]


def load_sweep(out_dir: Path) -> LoadedSweep:
    """Read a sweep folder (for plots and reports); raises NoSweep / SweepFileError."""
    out_dir = Path(out_dir)
    grid = saved_grid(out_dir, read_description(out_dir))
    recorded = of_grid(read_results(SweepPaths(out_dir).results), grid)
    return LoadedSweep(out_dir, grid, [recorded[i] for i in grid.run_ids() if i in recorded])


# --- ranking ----------------------------------------------------------------------------------------

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

"""The files of a sweep folder, and the ranking of its runs.

    OUT_DIR/sweep.json        the grid: format, version, settings' values, varying settings, run ids
    OUT_DIR/results.jsonl     one JSON line per finished run (a later line for the same run wins)
    OUT_DIR/runs/<id>.npz     each finished run's model (and <id>.ckpt.npz while one is unfinished)

results.jsonl is written by the process that started the sweep only, as each run finishes: one
os.write of the whole line on an O_APPEND descriptor, then fsync.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlknobs import __version__
from mlknobs.errors import NoSweep, OutputError, SettingsError, SweepFileError
from mlknobs.files import strict_json
from mlknobs.training.sweep.grid import Grid

SWEEP_FORMAT, SWEEP_VERSION = "mlknobs-sweep", 1


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


# --- sweep.json -------------------------------------------------------------------------------------

def describe(grid: Grid) -> dict:
    """What sweep.json holds for `grid`."""
    return {"format": SWEEP_FORMAT, "version": SWEEP_VERSION, "mlknobs": __version__,
            "grid": grid.to_dict(), "varying": list(grid.varying), "runs": grid.run_ids()}


def read_description(out_dir: Path) -> dict:
    """sweep.json of a sweep folder: format, version, grid, varying settings and run ids."""
    path = SweepPaths(Path(out_dir)).description
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NoSweep(out_dir) from None
    except (OSError, ValueError) as e:
        raise SweepFileError(path, f"cannot read it ({e})") from e
    if not isinstance(description, dict) or description.get("format") != SWEEP_FORMAT:
        raise SweepFileError(path, "does not describe an mlknobs sweep")
    if description.get("version") != SWEEP_VERSION:
        raise SweepFileError(path, f"is sweep format version {description.get('version')!r}; "
                                   f"this mlknobs reads version {SWEEP_VERSION}")
    return description


def saved_grid(out_dir: Path, description: dict) -> Grid:
    """The grid that sweep.json describes; SweepFileError if it is not one this mlknobs would make."""
    try:
        return Grid.from_dict(description.get("grid"))
    except SettingsError as e:
        raise SweepFileError(SweepPaths(Path(out_dir)).description, f"the grid is not valid ({e})") from e


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
    recorded = read_results(SweepPaths(out_dir).results)
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

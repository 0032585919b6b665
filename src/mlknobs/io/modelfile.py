"""Model and checkpoint files: arrays plus one JSON metadata entry in an .npz, never pickle.

Layout of the .npz:
    metadata   0-d unicode array holding JSON (format, version, knobs, scaling, history, ...)
    w1 b1 w2 b2                 the knobs (float32)
    velocity_w1 ...             checkpoints only: the optimizer's momentum
    best_w1 ...                 checkpoints with early stopping: the best epoch's weights

Files are written atomically and validated on load (format and version, shapes, dtypes, finite
values, every number of the metadata in its range), so a damaged or foreign file is refused with a
message instead of crashing later. Reading is bounded at every step, so a hostile file cannot
exhaust memory or time either: only a regular file of at most MAX_MODEL_FILE_BYTES is opened, only
the entries above are accepted, and each entry's header (dtype, shape) and declared size are
checked before its data is inflated.

This module says what a model file holds and in which order it is read; io/npz.py reads the
archive with every size bounded, io/metadata.py writes and checks the JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mlknobs.config import MAX_HIDDEN_SIZE
from mlknobs.errors import ModelFileError, ModelFileMissing, OutputError
from mlknobs.files import atomic_write, check_writable, open_regular
from mlknobs.io import metadata
from mlknobs.io.metadata import FORMAT, FORMAT_VERSION, MAX_METADATA_BYTES
from mlknobs.io.npz import Entry, open_archive, open_entry, show
from mlknobs.nn.model import INPUT_SIZE, OUTPUT_SIZE, PARAM_NAMES, Model, Params

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_METADATA_BYTES", "MAX_MODEL_FILE_BYTES", "Checkpoint", "Model",
           "load_checkpoint", "load_model", "load_model_and_sha256", "save_checkpoint", "save_model"]

PARAM_SETS = ("", "velocity_", "best_")             # prefixes: the knobs, momentum, best epoch's knobs
MEMBERS = frozenset({"metadata.npy"} | {f"{prefix}{name}.npy" for prefix in PARAM_SETS for name in PARAM_NAMES})
KIND = "model file"                                 # how errors name what a file failed to be
# A checkpoint holds three sets of knobs (weights, velocity, best epoch's) and the metadata:
# 3 x 4 bytes x (784 H + H + 10 H + 10) + 64 MiB = 692 MB at the largest H; plus headers, < 1 GiB.
# (MAX_HIDDEN_SIZE, config.py: w1 alone is then 784 x 65,536 float32 = 205 MB.)
MAX_MODEL_FILE_BYTES = 2**30
assert 3 * 4 * ((INPUT_SIZE + 1 + OUTPUT_SIZE) * MAX_HIDDEN_SIZE + OUTPUT_SIZE) + MAX_METADATA_BYTES \
    + 2**20 < MAX_MODEL_FILE_BYTES
HASH_CHUNK = 2**20


# --- writing ---------------------------------------------------------------------------------------------

def _write_npz(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    payload = {"metadata": np.array(json.dumps(meta, allow_nan=False))}
    payload.update(arrays)
    check_writable(path)
    try:
        atomic_write(Path(path), lambda f: np.savez(f, **payload))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def save_model(path: Path, model: Model) -> None:
    _write_npz(path, metadata.describe("model", model), model.params.arrays())


def save_checkpoint(path: Path, model: Model, velocity: Params, state: dict,
                    best: Params | None = None) -> None:
    """A resumable snapshot: the model so far plus optimizer velocity and loop state (JSON-able)."""
    meta = metadata.describe("checkpoint", model, {"state": state})
    arrays = dict(model.params.arrays())
    arrays.update({f"velocity_{k}": v for k, v in velocity.arrays().items()})
    if best is not None:
        arrays.update({f"best_{k}": v for k, v in best.arrays().items()})
    _write_npz(path, meta, arrays)


# --- reading ---------------------------------------------------------------------------------------------

def load_model(path: Path) -> Model:
    """Load and validate a model file (a checkpoint loads too, as the weights it holds).

    Raises ModelFileMissing if there is no file, ModelFileError (one line naming the file) for a
    file that is not a valid model.
    """
    return _load(path, checkpoint=False).model


def load_model_and_sha256(path: Path) -> tuple[Model, str]:
    """load_model, and the SHA-256 (hex) of the very bytes it read: for a model's lineage.

    The digest is taken from the one descriptor the model is then read from, never by opening the
    path again (which a race could by then have pointed at /dev/zero or another file).
    """
    contents = _load(path, checkpoint=False, digest=True)
    return contents.model, contents.sha256


@dataclass
class Checkpoint:
    model: Model
    velocity: Params
    state: dict
    best: Params | None


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a resumable checkpoint, its whole state validated before any training work starts."""
    contents = _load(path, checkpoint=True)
    model = contents.model
    return Checkpoint(model, contents.extra["velocity_"], model.meta["state"], contents.extra.get("best_"))


@dataclass
class _Contents:
    model: Model
    extra: dict[str, Params]      # "velocity_" and (optionally) "best_" for checkpoints
    sha256: str = ""              # with digest=True


def _load(path: Path, checkpoint: bool, digest: bool = False) -> _Contents:
    """Open, check and read a model file (checkpoint=False) or checkpoint, bounded at every step.

    Order: the file (regular, at most MAX_MODEL_FILE_BYTES), the archive's table of contents (known
    entries only), the metadata (bounded, then validated as a whole), every array's header (dtype,
    shape, declared size), and only then the array data, which is finally checked to be finite.
    """
    path = Path(path)
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ModelFileMissing(path) from None        # (a dangling symlink too)
    except (OSError, ValueError):
        pass                                          # open_regular words it (permission, loop, ...)
    with open_regular(path, MAX_MODEL_FILE_BYTES, error=ModelFileError, kind=KIND) as f:
        sha256 = _sha256(f, path) if digest else ""
        with open_archive(f, path, len(MEMBERS), KIND) as archive:
            contents = _read_archive(archive, path, checkpoint)
    contents.sha256 = sha256
    return contents


def _sha256(f: BinaryIO, path: Path) -> str:
    """The digest of the open file's bytes, exactly as many as fstat found (at most the size
    open_regular allowed); the file is left at its start. A file that changes size while it is
    hashed is refused."""
    size = os.fstat(f.fileno()).st_size
    digest, done = hashlib.sha256(), 0
    f.seek(0)
    try:
        while done < size:
            block = f.read(min(HASH_CHUNK, size - done))
            if not block:
                break
            digest.update(block)
            done += len(block)
        grew = bool(f.read(1))
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from e
    if done != size or grew:
        raise ModelFileError(f"{path}: the file changed while it was being read")
    f.seek(0)
    return digest.hexdigest()


def _read_archive(archive: zipfile.ZipFile, path: Path, checkpoint: bool) -> _Contents:
    names = archive.namelist()
    unknown = sorted(set(names) - MEMBERS)
    if unknown:
        shown = ", ".join(map(show, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ModelFileError(f"{path}: unknown entries {shown} in the archive; a model file holds only "
                             f"metadata, {', '.join(PARAM_NAMES)} (and velocity_*, best_* in a checkpoint)")
    if "metadata.npy" not in names:
        raise ModelFileError(f"{path} is not an mlknobs model file (no metadata entry)")
    meta = metadata.parse(open_entry(archive, "metadata", path).read_text(archive, MAX_METADATA_BYTES, path), path)
    kind = meta["kind"]
    optimizer_entries = sorted(n for n in names if n.startswith(("velocity_", "best_")))
    if kind == "model" and optimizer_entries:
        raise ModelFileError(f"{path}: a finished model holds no {', '.join(optimizer_entries)}; "
                             f"only a checkpoint does")
    if checkpoint and kind != "checkpoint":
        raise ModelFileError(f"{path} is a finished model, not a resumable checkpoint")
    fields = metadata.check(meta, path)
    if checkpoint:
        metadata.check_state(meta, fields, path)

    prefixes = [""]
    if checkpoint:
        prefixes.append("velocity_")
        if any(n.startswith("best_") for n in names):
            prefixes.append("best_")
    entries = {prefix: _param_entries(archive, names, prefix, path) for prefix in prefixes}
    hidden = _hidden_size(entries[""], "", path)
    _check_param_entries(entries[""], "", hidden, path)
    if hidden != fields.config.hidden_size:
        raise ModelFileError(f"{path}: weights have {hidden} hidden units, "
                             f"settings say {fields.config.hidden_size}")
    for prefix, named in entries.items():
        if prefix and _hidden_size(named, prefix, path) != hidden:
            raise ModelFileError(f"{path}: optimizer arrays have {_hidden_size(named, prefix, path)} "
                                 f"hidden units, the weights {hidden}")
        _check_param_entries(named, prefix, hidden, path)
    params = {prefix: _read_params(archive, named, prefix, path) for prefix, named in entries.items()}
    model = Model(params.pop(""), fields.config, fields.scaling, fields.class_names, fields.history,
                  fields.results, meta, fields.parent, fields.step_losses)
    return _Contents(model, params)


def _param_entries(archive: zipfile.ZipFile, names: list[str], prefix: str, path: Path) -> dict[str, Entry]:
    missing = [prefix + n for n in PARAM_NAMES if f"{prefix}{n}.npy" not in names]
    if missing:
        raise ModelFileError(f"{path}: missing arrays {', '.join(missing)}")
    return {n: open_entry(archive, prefix + n, path) for n in PARAM_NAMES}


def _hidden_size(named: dict[str, Entry], prefix: str, path: Path) -> int:
    """H from the shape (784, H) of w1, which must be 1..MAX_HIDDEN_SIZE."""
    shape = named["w1"].shape
    if len(shape) != 2 or shape[0] != INPUT_SIZE or shape[1] < 1:
        raise ModelFileError(f"{path}: array {prefix}w1 has shape {shape}, expected ({INPUT_SIZE}, H)")
    if shape[1] > MAX_HIDDEN_SIZE:
        raise ModelFileError(f"{path}: array {prefix}w1 has {shape[1]} hidden units, more than the "
                             f"{MAX_HIDDEN_SIZE} mlknobs loads")
    return shape[1]


def _check_param_entries(named: dict[str, Entry], prefix: str, hidden: int, path: Path) -> None:
    """Shapes, dtypes and declared sizes of one set of knobs, before any of their data is read."""
    expected = {"w1": (INPUT_SIZE, hidden), "b1": (hidden,), "w2": (hidden, OUTPUT_SIZE), "b2": (OUTPUT_SIZE,)}
    for name, entry in named.items():
        if entry.shape != expected[name]:
            raise ModelFileError(f"{path}: array {prefix}{name} has shape {entry.shape}, expected {expected[name]}")
        if entry.dtype.kind != "f" or entry.dtype.itemsize != 4:
            raise ModelFileError(f"{path}: array {prefix}{name} is {entry.dtype.name}, expected float32")
        entry.check_declared_size(path)


def _read_params(archive: zipfile.ZipFile, named: dict[str, Entry], prefix: str, path: Path) -> Params:
    params = Params(**{name: entry.read_array(archive, path) for name, entry in named.items()})
    if not params.all_finite():
        bad = [prefix + n for n, a in params.arrays().items() if not np.isfinite(a).all()]
        raise ModelFileError(f"{path}: array {', '.join(bad)} holds non-finite values (NaN or inf)")
    return params

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
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from mlknobs import __version__
from mlknobs.config import MAX_HIDDEN_SIZE, TrainConfig
from mlknobs.errors import ModelFileError, ModelFileMissing, OutputError
from mlknobs.files import atomic_write, check_writable, human_size, open_regular
from mlknobs.nn.model import (
    INPUT_SIZE,
    MAX_INPUT_STD,
    MIN_INPUT_STD,
    OUTPUT_SIZE,
    PARAM_NAMES,
    InputScaling,
    Model,
    Params,
    architecture,
)

FORMAT = "mlknobs-model"
FORMAT_VERSION = 1
KINDS = ("model", "checkpoint")
HISTORY_NUMBERS = ("train_loss", "train_accuracy")   # in every history entry (val_* only with validation)
RESULT_KEYS = ("test_accuracy", "test_loss", "seconds", "stopped_early", "best_epoch")
PARAM_SETS = ("", "velocity_", "best_")             # prefixes: the knobs, momentum, best epoch's knobs
MEMBERS = frozenset({"metadata.npy"} | {f"{prefix}{name}.npy" for prefix in PARAM_SETS for name in PARAM_NAMES})

# --- what a file may hold, checked before the bytes are read ---------------------------------------
# MAX_HIDDEN_SIZE (config.py): w1 alone is then 784 x 65,536 float32 = 205 MB.
MAX_METADATA_BYTES = 64 * 2**20       # stored as UTF-32: 16 Mi characters (a real one is a few KB)
MAX_JSON_DEPTH = 32                   # real metadata nests 4 deep (state -> rng -> state -> inc)
MAX_CLASS_NAME = 100                  # characters in one class name
# A checkpoint holds three sets of knobs (weights, velocity, best epoch's) and the metadata:
# 3 x 4 bytes x (784 H + H + 10 H + 10) + 64 MiB = 692 MB at the largest H; plus headers, < 1 GiB.
MAX_MODEL_FILE_BYTES = 2**30
assert 3 * 4 * ((INPUT_SIZE + 1 + OUTPUT_SIZE) * MAX_HIDDEN_SIZE + OUTPUT_SIZE) + MAX_METADATA_BYTES \
    + 2**20 < MAX_MODEL_FILE_BYTES
MAX_ZIP_DIRECTORY_BYTES = 64 * 2**10  # the archive's table of contents (13 entries take ~1 KB)
READ_CHUNK = 16 * 2**20               # array data is inflated this much at a time
# Input scaling: mean and std of pixel/255, a value in [0, 1]. So the mean lies in [0, 1] and the
# std is at most 0.5 (the largest spread of values in [0, 1]); a std below 0.001 (pixels multiplied
# by more than 4) would come from images of one flat gray, not from a dataset (MNIST: 0.31).
# The loop counts one step per batch: at most ceil(images / batch_size) per epoch. MNIST and
# Fashion-MNIST train on 60,000 images; this bound only catches absurd step counts.
MAX_TRAIN_IMAGES = 1_000_000
# Checkpoint loop state (training/loop.py _LoopState): type, lowest, highest ("done" = epochs_done,
# "steps" = the most steps epochs_done epochs can take).
_LARGEST = sys.float_info.max
LOOP_STATE_BOUNDS = {
    "epochs_done": (int, 0, "done"), "step": (int, 0, "steps"), "seconds": (float, 0.0, _LARGEST),
    "best_epoch": (int, 0, "done"), "best_val_accuracy": (float, 0.0, 1.0),
    "best_val_loss": (float, 0.0, _LARGEST), "epochs_without_improvement": (int, 0, "done"),
}
_END_RECORD = struct.Struct("<4s4H2LH")           # zip end of central directory record
_END_SIGNATURE, _ZIP64_LOCATOR_SIGNATURE = b"PK\x05\x06", b"PK\x06\x07"


def _metadata(kind: str, model: Model, extra: dict | None = None) -> dict:
    params, config, scaling = model.params, model.config, model.scaling
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
        "mlknobs_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": config.dataset, "class_names": list(model.class_names),
        "architecture": architecture(params.hidden_size, config.loss),
        "config": config.to_file_dict(),
        "input_scaling": {"mean": scaling.mean, "std": scaling.std,
                          "scale": scaling.scale, "offset": scaling.offset,
                          "formula": "x = pixel * scale + offset = (pixel / 255 - mean) / std"},
        "history": list(model.history),
        **model.results,
    }
    if model.parent is not None:
        meta["parent"] = dict(model.parent)
    if extra:
        meta.update(extra)
    return meta


def _write_npz(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    payload = {"metadata": np.array(json.dumps(meta, allow_nan=False))}
    payload.update(arrays)
    check_writable(path)
    try:
        atomic_write(Path(path), lambda f: np.savez(f, **payload))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def save_model(path: Path, model: Model) -> None:
    meta = _metadata("model", model)
    _write_npz(path, meta, model.params.arrays())


def save_checkpoint(path: Path, model: Model, velocity: Params, state: dict,
                    best: Params | None = None) -> None:
    """A resumable snapshot: the model so far plus optimizer velocity and loop state (JSON-able)."""
    meta = _metadata("checkpoint", model, {"state": state})
    arrays = dict(model.params.arrays())
    arrays.update({f"velocity_{k}": v for k, v in velocity.arrays().items()})
    if best is not None:
        arrays.update({f"best_{k}": v for k, v in best.arrays().items()})
    _write_npz(path, meta, arrays)


# --- reading: every size checked before the bytes it announces are read ----------------------------

def _short(error: BaseException, limit: int = 200) -> str:
    """An exception as one line of at most `limit` characters (a KeyError as "missing 'name'")."""
    text = f"missing {error.args[0]!r}" if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _show(value, limit: int = 40) -> str:
    """repr of a value from a file, cut short (a file may hold a megabyte-long string)."""
    try:
        text = repr(value)
    except ValueError:                 # an integer too long to print
        return "a very large number"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_zip_directory(f: BinaryIO, path: Path) -> None:
    """Refuse an archive with more entries than a model file can have, before zipfile reads them.

    zipfile builds an object for every entry its table of contents lists, and a 1 GiB file can list
    millions. So the end-of-archive record is found the way zipfile finds it (the record without a
    comment at the very end, else the last signature in the final 64 KiB) and its entry count and
    table size are checked. ZIP64 records are refused: numpy writes them only for archives above
    2 GiB, which no model file reaches (see MAX_MODEL_FILE_BYTES).
    """
    size = f.seek(0, os.SEEK_END)
    tail_size = min(size, _END_RECORD.size + 0xFFFF)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    if tail[-_END_RECORD.size:-_END_RECORD.size + 4] == _END_SIGNATURE and tail[-2:] == b"\0\0":
        start = len(tail) - _END_RECORD.size
    else:
        start = tail.rfind(_END_SIGNATURE)
    if start < 0 or start + _END_RECORD.size > len(tail):
        raise ModelFileError(f"{path} is not an mlknobs model file (no end of archive record)")
    record_at = size - tail_size + start
    if record_at >= 20:
        f.seek(record_at - 20)
        if f.read(4) == _ZIP64_LOCATOR_SIGNATURE:
            raise ModelFileError(f"{path} is not an mlknobs model file (a ZIP64 archive)")
    entries, directory_bytes = _END_RECORD.unpack_from(tail, start)[4:6]
    if entries > len(MEMBERS) or directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise ModelFileError(f"{path} is not an mlknobs model file (its archive lists {entries} entries "
                             f"in {directory_bytes} bytes; a model file has at most {len(MEMBERS)})")


def _read_header(f: BinaryIO, name: str, path: Path) -> tuple[np.dtype, tuple, bool]:
    """(dtype, shape, fortran_order) from an .npy entry's header, the data not read yet."""
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ModelFileError(f"{path}: entry {name} is .npy format version {version}, "
                                 f"expected 1.0 or 2.0")
    except ModelFileError:
        raise
    except (ValueError, SyntaxError, TypeError, EOFError) as e:
        raise ModelFileError(f"{path}: entry {name} is not a NumPy array ({_short(e)})") from e
    if dtype.hasobject:
        raise ModelFileError(f"{path}: entry {name} holds Python objects (pickled data), "
                             f"which mlknobs never loads")
    return dtype, shape, fortran_order


def _check_declared_size(info: zipfile.ZipInfo, header_bytes: int, data_bytes: int, name: str,
                         path: Path) -> None:
    """The archive's uncompressed size must be exactly header + data: no more is ever inflated."""
    if info.file_size != header_bytes + data_bytes:
        raise ModelFileError(f"{path}: entry {name} is {info.file_size} bytes uncompressed, but its "
                             f"header announces {header_bytes + data_bytes}; the file is damaged")


def _read_exactly(f: BinaryIO, out: memoryview, name: str, path: Path) -> None:
    """Fill `out` from f in READ_CHUNK pieces (no second full-size copy in memory)."""
    done = 0
    while done < len(out):
        n = f.readinto(out[done:done + READ_CHUNK])
        if not n:
            raise ModelFileError(f"{path}: entry {name} is truncated")
        done += n
    if f.read(1):
        raise ModelFileError(f"{path}: entry {name} holds more data than its header announces")


@dataclass
class _Entry:
    """An array entry whose header has been read and checked, its data not yet."""

    info: zipfile.ZipInfo
    name: str
    dtype: np.dtype
    shape: tuple
    fortran_order: bool
    header_bytes: int

    def read(self, archive: zipfile.ZipFile, path: Path) -> np.ndarray:
        count = math.prod(self.shape)
        array = np.empty(count, self.dtype)                       # flat, filled in place
        with archive.open(self.info) as f:
            f.read(self.header_bytes)
            _read_exactly(f, memoryview(array).cast("B"), self.name, path)
        if self.fortran_order:
            array = array.reshape(self.shape[::-1]).T
        return array.reshape(self.shape).astype(np.float32, copy=False)   # native byte order


def _open_entry(archive: zipfile.ZipFile, name: str, path: Path) -> _Entry:
    info = archive.getinfo(name + ".npy")
    with archive.open(info) as f:
        dtype, shape, fortran_order = _read_header(f, name, path)
        return _Entry(info, name, dtype, shape, fortran_order, f.tell())


def _read_metadata(archive: zipfile.ZipFile, path: Path) -> dict:
    """The metadata entry: a 0-d unicode array of bounded length holding a JSON object."""
    entry = _open_entry(archive, "metadata", path)
    if entry.dtype.kind != "U" or entry.shape != ():
        raise ModelFileError(f"{path}: metadata is not text (a {entry.dtype.name} array of shape "
                             f"{entry.shape})")
    if entry.dtype.itemsize > MAX_METADATA_BYTES:
        raise ModelFileError(f"{path}: metadata is {human_size(entry.dtype.itemsize)}, more than the "
                             f"{human_size(MAX_METADATA_BYTES)} a model file may hold")
    _check_declared_size(entry.info, entry.header_bytes, entry.dtype.itemsize, "metadata", path)
    raw = bytearray(entry.dtype.itemsize)
    with archive.open(entry.info) as f:
        f.read(entry.header_bytes)
        _read_exactly(f, memoryview(raw), "metadata", path)
    big_endian = entry.dtype.byteorder == ">" or (entry.dtype.byteorder == "=" and sys.byteorder == "big")
    try:   # numpy stores UTF-32; the codec refuses surrogates and code points beyond U+10FFFF
        text = raw.decode("utf-32-be" if big_endian else "utf-32-le").rstrip("\0")
    except UnicodeDecodeError as e:
        raise ModelFileError(f"{path}: metadata is not valid Unicode text ({_short(e)})") from e
    return _parse_metadata(text, path)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a model file may hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _parse_metadata(text: str, path: Path) -> dict:
    """JSON without NaN or infinities, at most MAX_JSON_DEPTH deep, every string valid Unicode."""
    try:
        meta = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as e:
        raise ModelFileError(f"{path}: metadata nests too deeply to be an mlknobs model file") from e
    except ValueError as e:
        raise ModelFileError(f"{path}: metadata is not valid JSON ({_short(e)})") from e
    _check_json_tree(meta, "metadata", 0, path)
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: metadata is not an object")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an mlknobs model file (format {_show(meta.get('format'))})")
    version = meta.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelFileError(f"{path} has model format version {_show(version)}; this mlknobs "
                             f"({__version__}) reads version {FORMAT_VERSION}")
    if meta.get("kind") not in KINDS:
        raise ModelFileError(f"{path}: metadata kind {_show(meta.get('kind'))} is neither "
                             f"{' nor '.join(KINDS)}")
    return meta


def _check_json_tree(value, where: str, depth: int, path: Path) -> None:
    """Refuse nesting beyond MAX_JSON_DEPTH and strings that are not valid Unicode (lone surrogates
    such as "\udc80", which no UTF-8 output can print)."""
    if depth > MAX_JSON_DEPTH:
        raise ModelFileError(f"{path}: metadata nests deeper than {MAX_JSON_DEPTH} levels (at {where})")
    if isinstance(value, str):
        _check_text(value, where, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"{where}: a key", path)
            _check_json_tree(item, f"{where}[{_show(key)}]", depth + 1, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_tree(item, f"{where}[{i}]", depth + 1, path)


def _check_text(text: str, where: str, path: Path) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ModelFileError(f"{path}: metadata text at {where} is not valid Unicode "
                             f"({_show(text[e.start:e.end])} is a lone surrogate)") from None


# --- checking the metadata's contents --------------------------------------------------------------

def _whole(value, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, not {_show(value)}")
    if not low <= value <= high:
        raise ValueError(f"{what} {_show(value)} is outside {low}..{high}")
    return value


def _real(value, what: str, low: float = -_LARGEST, high: float = _LARGEST) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, not {_show(value)}")
    if not low <= value <= high:                                  # NaN is outside everything
        raise ValueError(f"{what} {_show(value)} is outside [{low:g}, {high:g}]")
    return float(value)


def _range_of(key: str) -> tuple[float, float]:
    """Allowed values of a history or result number, by its name."""
    if key.endswith("accuracy"):
        return 0.0, 1.0
    if key.endswith("loss") or key in ("seconds", "learning_rate"):
        return 0.0, _LARGEST
    return -_LARGEST, _LARGEST


def _check_class_names(names) -> list[str]:
    if not isinstance(names, list) or len(names) != OUTPUT_SIZE:
        count = len(names) if isinstance(names, list) else _show(names)
        raise ValueError(f"class_names must be a list of {OUTPUT_SIZE} names, not {count}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_CLASS_NAME:
            raise ValueError(f"class name {i} must be text of 1 to {MAX_CLASS_NAME} characters, "
                             f"not {_show(name)}")
    return list(names)


def _check_history(history, config: TrainConfig) -> list[dict]:
    if not isinstance(history, list):
        raise ValueError("history must be a list")
    if len(history) > config.epochs:
        raise ValueError(f"history holds {len(history)} epochs, the settings say {config.epochs}")
    for number, entry in enumerate(history, 1):
        if not (isinstance(entry, dict) and "epoch" in entry and all(k in entry for k in HISTORY_NUMBERS)):
            raise ValueError(f"every history entry needs an epoch number and {', '.join(HISTORY_NUMBERS)}")
        if _whole(entry["epoch"], "history epoch", 1, config.epochs) != number:
            raise ValueError(f"history entry {number} is for epoch {entry['epoch']}")
        for key, value in entry.items():
            if key != "epoch":
                _real(value, f"history epoch {number} {key}", *_range_of(key))
    return history


def _check_results(meta: dict, config: TrainConfig) -> dict:
    results = {k: meta[k] for k in RESULT_KEYS if k in meta}
    for key, value in results.items():
        if key == "stopped_early":
            if not isinstance(value, bool):
                raise ValueError(f"stopped_early must be true or false, not {_show(value)}")
        elif key == "best_epoch":
            _whole(value, key, 0, config.epochs)
        else:
            _real(value, key, *_range_of(key))
    return results


def _check_scaling(s) -> InputScaling:
    if not isinstance(s, dict):
        raise ValueError("input_scaling must be an object")
    scaling = InputScaling(mean=_real(s["mean"], "input mean", 0.0, 1.0),
                           std=_real(s["std"], "input std", MIN_INPUT_STD, MAX_INPUT_STD))
    if not (math.isfinite(scaling.scale) and math.isfinite(scaling.offset)):
        raise ValueError(f"scale {scaling.scale} and offset {scaling.offset} must be finite")
    return scaling


def _check_state(state, config: TrainConfig, history: list) -> None:
    """The loop state and RNG state of a checkpoint, every number in its range, before any work."""
    if not isinstance(state, dict):
        raise ValueError("the state must be an object")
    unknown = sorted(set(state) - {"loop", "rng"})
    if unknown:
        raise ValueError(f"unknown state entries {', '.join(map(_show, unknown))}")
    loop = state["loop"]
    if not isinstance(loop, dict):
        raise ValueError("the loop state must map names to numbers")
    unknown = sorted(set(loop) - set(LOOP_STATE_BOUNDS))
    if unknown:
        raise ValueError(f"unknown loop state entries {', '.join(map(_show, unknown))}")
    done = _whole(loop["epochs_done"], "epochs_done", 0, config.epochs)
    if len(history) != done:
        raise ValueError(f"epochs_done is {done} but the history holds {len(history)} epochs")
    most_steps = done * math.ceil(MAX_TRAIN_IMAGES / config.batch_size)
    for key, value in loop.items():
        kind, low, high = LOOP_STATE_BOUNDS[key]
        high = {"done": done, "steps": most_steps}.get(high, high)
        if kind is int:
            _whole(value, key, low, high)
        else:
            _real(value, key, low, high)
    _check_rng(state["rng"])


def _check_rng(rng) -> None:
    """numpy's PCG64 state: {"bit_generator": "PCG64", "state": {"state", "inc"}, "has_uint32", "uinteger"}."""
    if not isinstance(rng, dict) or rng.get("bit_generator") != "PCG64":
        raise ValueError("rng must be the state of numpy's PCG64 generator")
    if set(rng) != {"bit_generator", "state", "has_uint32", "uinteger"} or not isinstance(rng["state"], dict) \
            or set(rng["state"]) != {"state", "inc"}:
        raise ValueError("rng must hold bit_generator, state {state, inc}, has_uint32 and uinteger only")
    for key in ("state", "inc"):
        _whole(rng["state"][key], f"rng {key}", 0, 2**128 - 1)
    _whole(rng["has_uint32"], "rng has_uint32", 0, 1)
    _whole(rng["uinteger"], "rng uinteger", 0, 2**32 - 1)
    np.random.PCG64(0).state = rng          # and whatever numpy itself checks


# --- reading a whole file ----------------------------------------------------------------------------

@dataclass
class _Contents:
    model: Model
    extra: dict[str, Params]      # "velocity_" and (optionally) "best_" for checkpoints


def _load(path: Path, checkpoint: bool) -> _Contents:
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
    with open_regular(path, MAX_MODEL_FILE_BYTES, error=ModelFileError, kind="model file") as f:
        if not zipfile.is_zipfile(f):
            raise ModelFileError(f"{path} is not an mlknobs model file (not an .npz archive)")
        try:
            _check_zip_directory(f, path)
            with zipfile.ZipFile(f) as archive:
                return _read_archive(archive, path, checkpoint)
        except ModelFileError:
            raise
        except MemoryError as e:
            raise ModelFileError(f"{path}: too large to load in the memory available") from e
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError,
                RuntimeError, NotImplementedError, struct.error, KeyError, IndexError, TypeError) as e:
            # Damaged archives surface from zipfile and zlib as any of these (an encrypted entry
            # as RuntimeError, an unknown compression method as NotImplementedError).
            raise ModelFileError(f"{path} is not an mlknobs model file (unreadable .npz: {_short(e)})") from e


def _read_archive(archive: zipfile.ZipFile, path: Path, checkpoint: bool) -> _Contents:
    names = [info.filename for info in archive.infolist()]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ModelFileError(f"{path}: the archive holds {', '.join(map(_show, twice))} more than once")
    unknown = sorted(set(names) - MEMBERS)
    if unknown:
        shown = ", ".join(map(_show, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ModelFileError(f"{path}: unknown entries {shown} in the archive; a model file holds only "
                             f"metadata, {', '.join(PARAM_NAMES)} (and velocity_*, best_* in a checkpoint)")
    if "metadata.npy" not in names:
        raise ModelFileError(f"{path} is not an mlknobs model file (no metadata entry)")
    meta = _read_metadata(archive, path)
    kind = meta["kind"]
    optimizer_entries = sorted(n for n in names if n.startswith(("velocity_", "best_")))
    if kind == "model" and optimizer_entries:
        raise ModelFileError(f"{path}: a finished model holds no {', '.join(optimizer_entries)}; "
                             f"only a checkpoint does")
    if checkpoint and kind != "checkpoint":
        raise ModelFileError(f"{path} is a finished model, not a resumable checkpoint")

    try:
        config = TrainConfig.from_dict(_object(meta["config"], "config"))
        scaling = _check_scaling(meta["input_scaling"])
        class_names = _check_class_names(meta["class_names"])
        history = _check_history(meta.get("history", []), config)
        results = _check_results(meta, config)
        parent = _check_parent(meta.get("parent"))
        if meta.get("dataset", config.dataset) != config.dataset:
            raise ValueError(f"dataset {_show(meta['dataset'])} disagrees with the settings' {config.dataset!r}")
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ModelFileError(f"{path}: metadata is incomplete or invalid ({_short(e)})") from e
    if checkpoint:
        try:
            _check_state(meta["state"], config, history)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise ModelFileError(f"{path}: checkpoint state is incomplete or invalid ({_short(e)})") from e

    prefixes = [""]
    if checkpoint:
        prefixes.append("velocity_")
        if any(n.startswith("best_") for n in names):
            prefixes.append("best_")
    entries = {prefix: _param_entries(archive, names, prefix, path) for prefix in prefixes}
    hidden = _hidden_size(entries[""], "", path)
    _check_param_entries(entries[""], "", hidden, path)
    if hidden != config.hidden_size:
        raise ModelFileError(f"{path}: weights have {hidden} hidden units, "
                             f"settings say {config.hidden_size}")
    for prefix, named in entries.items():
        if prefix and _hidden_size(named, prefix, path) != hidden:
            raise ModelFileError(f"{path}: optimizer arrays have {_hidden_size(named, prefix, path)} "
                                 f"hidden units, the weights {hidden}")
        _check_param_entries(named, prefix, hidden, path)
    params = {prefix: _read_params(archive, named, prefix, path) for prefix, named in entries.items()}
    model = Model(params.pop(""), config, scaling, class_names, history, results, meta, parent)
    return _Contents(model, params)


def _check_parent(parent) -> dict | None:
    """The model a run started from (train --init-from): path, sha256, dataset, test accuracy."""
    if parent is None:
        return None
    parent = _object(parent, "parent")
    if set(parent) != {"path", "sha256", "dataset", "test_accuracy"}:
        raise ValueError("parent must hold path, sha256, dataset and test_accuracy")
    if not all(isinstance(parent[key], str) for key in ("path", "sha256", "dataset")) \
            or len(parent["sha256"]) != 64 or len(parent["path"]) > 4096:
        raise ValueError("parent path, sha256 and dataset must be text (sha256: 64 hex digits)")
    if parent["test_accuracy"] is not None:
        _real(parent["test_accuracy"], "parent test_accuracy", 0.0, 1.0)
    return parent


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object")
    return value


def _param_entries(archive: zipfile.ZipFile, names: list[str], prefix: str, path: Path) -> dict[str, _Entry]:
    missing = [prefix + n for n in PARAM_NAMES if f"{prefix}{n}.npy" not in names]
    if missing:
        raise ModelFileError(f"{path}: missing arrays {', '.join(missing)}")
    return {n: _open_entry(archive, prefix + n, path) for n in PARAM_NAMES}


def _hidden_size(named: dict[str, _Entry], prefix: str, path: Path) -> int:
    """H from the shape (784, H) of w1, which must be 1..MAX_HIDDEN_SIZE."""
    shape = named["w1"].shape
    if len(shape) != 2 or shape[0] != INPUT_SIZE or shape[1] < 1:
        raise ModelFileError(f"{path}: array {prefix}w1 has shape {shape}, expected ({INPUT_SIZE}, H)")
    if shape[1] > MAX_HIDDEN_SIZE:
        raise ModelFileError(f"{path}: array {prefix}w1 has {shape[1]} hidden units, more than the "
                             f"{MAX_HIDDEN_SIZE} mlknobs loads")
    return shape[1]


def _check_param_entries(named: dict[str, _Entry], prefix: str, hidden: int, path: Path) -> None:
    expected = {"w1": (INPUT_SIZE, hidden), "b1": (hidden,), "w2": (hidden, OUTPUT_SIZE), "b2": (OUTPUT_SIZE,)}
    for name, entry in named.items():
        if entry.shape != expected[name]:
            raise ModelFileError(f"{path}: array {prefix}{name} has shape {entry.shape}, expected {expected[name]}")
        if entry.dtype.kind != "f" or entry.dtype.itemsize != 4:
            raise ModelFileError(f"{path}: array {prefix}{name} is {entry.dtype.name}, expected float32")
        _check_declared_size(entry.info, entry.header_bytes, 4 * math.prod(entry.shape), prefix + name, path)


def _read_params(archive: zipfile.ZipFile, named: dict[str, _Entry], prefix: str, path: Path) -> Params:
    params = Params(**{name: entry.read(archive, path) for name, entry in named.items()})
    if not params.all_finite():
        bad = [prefix + n for n, a in params.arrays().items() if not np.isfinite(a).all()]
        raise ModelFileError(f"{path}: array {', '.join(bad)} holds non-finite values (NaN or inf)")
    return params


def load_model(path: Path) -> Model:
    """Load and validate a model file (a checkpoint loads too, as the weights it holds).

    Raises ModelFileMissing if there is no file, ModelFileError (one line naming the file) for a
    file that is not a valid model.
    """
    return _load(path, checkpoint=False).model


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

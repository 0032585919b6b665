"""Model and checkpoint files: arrays plus one JSON metadata entry in an .npz, never pickle.

Layout of the .npz:
    metadata   0-d unicode array holding JSON (format, version, knobs, scaling, history, ...)
    w1 b1 w2 b2                 the knobs (float32)
    velocity_w1 ...             checkpoints only: the optimizer's momentum
    best_w1 ...                 checkpoints with early stopping: the best epoch's weights

Files are written atomically and validated on load (format and version, shapes, dtypes, finite
values), so a damaged or foreign file is refused with a message instead of crashing later.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mlknobs import __version__
from mlknobs.files import atomic_write, check_writable
from mlknobs.config import TrainConfig
from mlknobs.errors import ModelFileError, OutputError
from mlknobs.nn.model import INPUT_SIZE, OUTPUT_SIZE, PARAM_NAMES, InputScaling, Model, Params

FORMAT = "mlknobs-model"
FORMAT_VERSION = 1
HISTORY_NUMBERS = ("train_loss", "train_accuracy")   # in every history entry (val_* only with validation)
RESULT_KEYS = ("test_accuracy", "test_loss", "seconds", "stopped_early", "best_epoch")


def architecture(params: Params, loss: str) -> dict:
    return {"input_size": INPUT_SIZE, "hidden_size": params.hidden_size, "output_size": OUTPUT_SIZE,
            "hidden_activation": "sigmoid",
            "output_activation": "softmax" if loss == "cross-entropy" else "sigmoid"}


def _metadata(kind: str, params: Params, config: TrainConfig, scaling: InputScaling,
              class_names, history, results: dict, extra: dict | None = None) -> dict:
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
        "mlknobs_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": config.dataset, "class_names": list(class_names),
        "architecture": architecture(params, config.loss),
        "config": config.to_dict(),
        "input_scaling": {"mean": scaling.mean, "std": scaling.std,
                          "scale": scaling.scale, "offset": scaling.offset,
                          "formula": "x = pixel * scale + offset = (pixel / 255 - mean) / std"},
        "history": list(history),
        **results,
    }
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
    meta = _metadata("model", model.params, model.config, model.scaling, model.class_names,
                     model.history, model.results)
    _write_npz(path, meta, model.params.arrays())


def save_checkpoint(path: Path, model: Model, velocity: Params, state: dict,
                    best: Params | None = None) -> None:
    """A resumable snapshot: the model so far plus optimizer velocity and loop state (JSON-able)."""
    meta = _metadata("checkpoint", model.params, model.config, model.scaling, model.class_names,
                     model.history, model.results, {"state": state})
    arrays = dict(model.params.arrays())
    arrays.update({f"velocity_{k}": v for k, v in velocity.arrays().items()})
    if best is not None:
        arrays.update({f"best_{k}": v for k, v in best.arrays().items()})
    _write_npz(path, meta, arrays)


def _read_npz(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"no model file at {path}: train one with `mlknobs train` "
                             f"(or point --model / MLKNOBS_MODEL at one)")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a model file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not an mlknobs model file (not an .npz archive)")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as e:
        raise ModelFileError(f"{path} is not an mlknobs model file (unreadable .npz: {e})") from e
    if "metadata" not in arrays:
        raise ModelFileError(f"{path} is not an mlknobs model file (no metadata entry)")
    try:
        meta = json.loads(str(arrays.pop("metadata")))
    except ValueError as e:
        raise ModelFileError(f"{path}: metadata is not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an mlknobs model file (format {meta.get('format')!r})"
                             if isinstance(meta, dict) else f"{path}: metadata is not an object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path} has model format version {version}; this mlknobs "
                             f"({__version__}) reads version {FORMAT_VERSION}")
    return meta, arrays


def _params_from(arrays: dict, prefix: str, path: Path) -> Params:
    missing = [prefix + n for n in PARAM_NAMES if prefix + n not in arrays]
    if missing:
        raise ModelFileError(f"{path}: missing arrays {', '.join(missing)}")
    named = {n: arrays[prefix + n] for n in PARAM_NAMES}
    w1 = named["w1"]
    hidden = w1.shape[1] if w1.ndim == 2 else -1
    expected = {"w1": (INPUT_SIZE, hidden), "b1": (hidden,), "w2": (hidden, OUTPUT_SIZE), "b2": (OUTPUT_SIZE,)}
    for name, array in named.items():
        if hidden < 1 or array.shape != expected[name]:
            raise ModelFileError(f"{path}: array {prefix}{name} has shape {array.shape}, "
                                 f"expected {expected[name] if hidden > 0 else '(784, H)'}")
        if array.dtype != np.float32:
            raise ModelFileError(f"{path}: array {prefix}{name} is {array.dtype}, expected float32")
    params = Params(**named)
    if not params.all_finite():
        bad = [prefix + n for n, a in params.arrays().items() if not np.isfinite(a).all()]
        raise ModelFileError(f"{path}: array {', '.join(bad)} holds non-finite values (NaN or inf)")
    return params


def _model_from(meta: dict, arrays: dict, path: Path) -> Model:
    try:
        config = TrainConfig.from_dict(meta["config"])
        s = meta["input_scaling"]
        scaling = InputScaling(mean=float(s["mean"]), std=float(s["std"]))
        if not isinstance(meta["class_names"], list) or not isinstance(meta.get("history", []), list):
            raise ValueError("class_names and history must be lists")
        class_names = [str(c) for c in meta["class_names"]]
        history = meta.get("history", [])
        for entry in history:
            if not (isinstance(entry, dict) and isinstance(entry.get("epoch"), int)
                    and all(isinstance(entry.get(k), (int, float)) for k in HISTORY_NUMBERS)):
                raise ValueError(f"every history entry needs an epoch number and {', '.join(HISTORY_NUMBERS)}")
        results = {k: meta[k] for k in RESULT_KEYS if k in meta}
        for key in ("test_accuracy", "test_loss", "seconds"):
            if key in results and not isinstance(results[key], (int, float)):
                raise ValueError(f"{key} must be a number")
        if meta.get("dataset", config.dataset) != config.dataset:
            raise ValueError(f"dataset {meta['dataset']!r} disagrees with the settings' {config.dataset!r}")
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: metadata is incomplete or invalid ({e})") from e
    if not (np.isfinite(scaling.mean) and np.isfinite(scaling.std) and scaling.std > 0):
        raise ModelFileError(f"{path}: invalid input scaling {s}")
    if len(class_names) != OUTPUT_SIZE:
        raise ModelFileError(f"{path}: {len(class_names)} class names for {OUTPUT_SIZE} outputs")
    params = _params_from(arrays, "", path)
    if params.hidden_size != config.hidden_size:
        raise ModelFileError(f"{path}: weights have {params.hidden_size} hidden units, "
                             f"settings say {config.hidden_size}")
    return Model(params, config, scaling, class_names, history, results, meta)


def load_model(path: Path) -> Model:
    """Load and validate a model file (a checkpoint loads too, as the weights it holds)."""
    try:
        meta, arrays = _read_npz(path)
        return _model_from(meta, arrays, Path(path))
    except ModelFileError as e:
        if "mlknobs train" in str(e):
            raise
        raise ModelFileError(f"{e}; train a new one with `mlknobs train`") from e


@dataclass
class Checkpoint:
    model: Model
    velocity: Params
    state: dict
    best: Params | None


def load_checkpoint(path: Path) -> Checkpoint:
    meta, arrays = _read_npz(path)
    path = Path(path)
    if meta.get("kind") != "checkpoint" or not isinstance(meta.get("state"), dict):
        raise ModelFileError(f"{path} is a finished model, not a resumable checkpoint")
    model = _model_from(meta, arrays, path)
    velocity = _params_from(arrays, "velocity_", path)
    best = _params_from(arrays, "best_", path) if "best_w1" in arrays else None
    for extra in (velocity, best):
        if extra is not None and extra.hidden_size != model.params.hidden_size:
            raise ModelFileError(f"{path}: optimizer arrays have {extra.hidden_size} hidden units, "
                                 f"the weights {model.params.hidden_size}")
    state = meta["state"]
    try:
        loop, rng_state = state["loop"], state["rng"]
        if not isinstance(loop, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in loop.values()):
            raise ValueError("the loop state must map names to numbers")
        done = loop["epochs_done"]
        if not isinstance(done, int) or not 0 <= done <= model.config.epochs:
            raise ValueError(f"epochs_done {done!r} is outside 0..{model.config.epochs}")
        np.random.default_rng().bit_generator.state = rng_state    # raises if it is not a PCG64 state
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: checkpoint state is incomplete or invalid ({e})") from e
    return Checkpoint(model, velocity, state, best)

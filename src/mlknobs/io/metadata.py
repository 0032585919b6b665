"""The metadata of a model file: the JSON object beside the arrays, what it holds and how it is checked.

    describe(kind, model, extra) -> dict     what save_model writes
    parse(text, path) -> dict                strict JSON (files/jsonl.py), our format
    check(meta, path) -> Checked             every field: settings, scaling, class names, history,
                                             results, parent; each number in its range
    check_state(meta, checked, path)         a checkpoint's loop and RNG state

Everything a file holds is checked before it is used, so a damaged or foreign file is refused with
one line naming the field instead of failing later (a NaN learning rate, an epoch count of 10^12,
an RNG state numpy cannot take).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mlknobs import __version__
from mlknobs.bounds import Range
from mlknobs.config import TrainConfig
from mlknobs.errors import ModelFileError
from mlknobs.files.jsonl import NotJson, read_strict_json
from mlknobs.io.npz import short, show
from mlknobs.nn.model import MAX_INPUT_STD, MIN_INPUT_STD, OUTPUT_SIZE, InputScaling, Model, architecture

FORMAT = "mlknobs-model"
FORMAT_VERSION = 1
KINDS = ("model", "checkpoint")
HISTORY_NUMBERS = ("train_loss", "train_accuracy")   # in every history entry (val_* only with validation)
RESULT_KEYS = ("test_accuracy", "test_loss", "seconds", "stopped_early", "best_epoch")
PARENT_KEYS = ("path", "sha256", "dataset", "test_accuracy")
MAX_METADATA_BYTES = 64 * 2**20       # stored as UTF-32: 16 Mi characters (a real one is a few KB)
MAX_JSON_DEPTH = 32                   # real metadata nests 4 deep (state -> rng -> state -> inc)
MAX_CLASS_NAME = 100                  # characters in one class name
MAX_PARENT_PATH = 4096                # characters of the parent's path (PATH_MAX)
# Input scaling: mean and std of pixel/255, a value in [0, 1]. So the mean lies in [0, 1] and the
# std is at most 0.5 (the largest spread of values in [0, 1]); a std below 0.001 (pixels multiplied
# by more than 4) would come from images of one flat gray, not from a dataset (MNIST: 0.31).
# `--input-scaling unit` stores std 1 (x = pixel / 255), the one std above 0.5 a file may hold.
UNIT_INPUT_STD = 1.0
# The loop counts one step per batch: at most ceil(images / batch_size) per epoch. MNIST and
# Fashion-MNIST train on 60,000 images; this bound only catches absurd step counts.
MAX_TRAIN_IMAGES = 1_000_000
# The numbers a file holds are checked with the one range checker (bounds.py) that settings and
# download variables use too. History and result numbers by their names (never NaN or infinite):
ACCURACY, NON_NEGATIVE, ANY_NUMBER = Range(0, 1), Range(0), Range()
LOOP_STATE = ("epochs_done", "step", "seconds", "best_epoch", "best_val_accuracy", "best_val_loss",
              "epochs_without_improvement")                            # training/loop.py _LoopState


def describe(kind: str, model: Model, extra: dict | None = None) -> dict:
    """The metadata save_model writes for `model` (kind "model" or "checkpoint", `extra` merged in)."""
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
    if model.step_losses:
        meta["step_losses"] = [list(pair) for pair in model.step_losses]
    if model.parent is not None:
        meta["parent"] = dict(model.parent)
    if extra:
        meta.update(extra)
    return meta


# --- the JSON text --------------------------------------------------------------------------------------

def parse(text: str, path: Path) -> dict:
    """Strict JSON (files/jsonl.py: no NaN or infinities, at most MAX_JSON_DEPTH deep, every string
    valid Unicode); an object of our format, version and a known kind."""
    try:
        meta = read_strict_json(text, max_size=MAX_METADATA_BYTES // 4, max_depth=MAX_JSON_DEPTH)   # UTF-32
    except NotJson as e:
        raise ModelFileError(f"{path}: metadata is {e}") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: metadata is not an object")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an mlknobs model file (format {show(meta.get('format'))})")
    version = meta.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelFileError(f"{path} has model format version {show(version)}; this mlknobs "
                             f"({__version__}) reads version {FORMAT_VERSION}")
    if meta.get("kind") not in KINDS:
        raise ModelFileError(f"{path}: metadata kind {show(meta.get('kind'))} is neither "
                             f"{' nor '.join(KINDS)}")
    return meta


# --- the fields ---------------------------------------------------------------------------------------

@dataclass
class Checked:
    """The metadata's fields, each checked."""

    config: TrainConfig
    scaling: InputScaling
    class_names: list[str]
    history: list[dict]
    results: dict
    parent: dict | None
    step_losses: list


def check(meta: dict, path: Path) -> Checked:
    """Every field of parsed metadata (not a checkpoint's state: see check_state)."""
    try:
        config = TrainConfig.from_dict(_object(meta["config"], "config"))
        checked = Checked(config, _check_scaling(meta["input_scaling"]), _check_class_names(meta["class_names"]),
                          check_history(meta.get("history", []), config), _check_results(meta, config),
                          _check_parent(meta.get("parent")), check_step_losses(meta.get("step_losses", []), config))
        if meta.get("dataset", config.dataset) != config.dataset:
            raise ValueError(f"dataset {show(meta['dataset'])} disagrees with the settings' {config.dataset!r}")
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ModelFileError(f"{path}: metadata is incomplete or invalid ({short(e)})") from e
    return checked


def check_state(meta: dict, checked: Checked, path: Path) -> None:
    """A checkpoint's loop state and RNG state, every number in its range, before any work."""
    try:
        _check_state(meta["state"], checked.config, checked.history)
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ModelFileError(f"{path}: checkpoint state is incomplete or invalid ({short(e)})") from e


def _number(value, what: str, allowed: Range):
    """`value` if `allowed` admits it (as a float in a range of reals), else ValueError naming `what`."""
    problem = allowed.problem(value, what)
    if problem is not None:
        raise ValueError(f"{problem}, not {show(value)}")
    return value if allowed.integer else float(value)


def _whole(value, what: str, low: int, high: int) -> int:
    return _number(value, what, Range(low, high, integer=True))


def _real(value, what: str, low: float | None = None, high: float | None = None) -> float:
    return _number(value, what, Range(low, high))


def _range_of(key: str) -> Range:
    """Allowed values of a history or result number, by its name."""
    if key.endswith("accuracy"):
        return ACCURACY
    if key.endswith("loss") or key in ("seconds", "learning_rate"):
        return NON_NEGATIVE
    return ANY_NUMBER


def _loop_state_ranges(epochs_done: int, batch_size: int) -> dict[str, Range]:
    """What each number of a checkpoint's loop state may be after `epochs_done` epochs (the step
    counter: at most the steps those epochs can take, one per batch of MAX_TRAIN_IMAGES at most)."""
    most_steps = epochs_done * math.ceil(MAX_TRAIN_IMAGES / batch_size)
    done = Range(0, epochs_done, integer=True)
    return {"epochs_done": done, "step": Range(0, most_steps, integer=True), "seconds": NON_NEGATIVE,
            "best_epoch": done, "best_val_accuracy": ACCURACY, "best_val_loss": NON_NEGATIVE,
            "epochs_without_improvement": done}


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object")
    return value


def _check_class_names(names) -> list[str]:
    if not isinstance(names, list) or len(names) != OUTPUT_SIZE:
        count = len(names) if isinstance(names, list) else show(names)
        raise ValueError(f"class_names must be a list of {OUTPUT_SIZE} names, not {count}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_CLASS_NAME:
            raise ValueError(f"class name {i} must be text of 1 to {MAX_CLASS_NAME} characters, "
                             f"not {show(name)}")
    return list(names)


def check_history(history, config: TrainConfig) -> list[dict]:
    """Whole epochs, numbered from 1, each with its numbers in their ranges (a diverged run's curve too)."""
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
                _number(value, f"history epoch {number} {key}", _range_of(key))
    return history


def check_step_losses(pairs, config: TrainConfig) -> list:
    """`train --log-every`: [step, loss] pairs, steps rising, at most one pair per step."""
    if not isinstance(pairs, list):
        raise ValueError("step_losses must be a list of [step, loss] pairs")
    most_steps = config.epochs * math.ceil(MAX_TRAIN_IMAGES / config.batch_size)
    if len(pairs) > most_steps:
        raise ValueError(f"step_losses holds {len(pairs)} pairs, more than the {most_steps} steps of the run")
    previous = 0
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ValueError("step_losses must be a list of [step, loss] pairs")
        step = _whole(pair[0], "step_losses step", previous + 1, most_steps)
        _real(pair[1], f"step_losses loss at step {step}", 0.0)
        previous = step
    return [list(pair) for pair in pairs]


def _check_results(meta: dict, config: TrainConfig) -> dict:
    results = {k: meta[k] for k in RESULT_KEYS if k in meta}
    for key, value in results.items():
        if key == "stopped_early":
            if not isinstance(value, bool):
                raise ValueError(f"stopped_early must be true or false, not {show(value)}")
        elif key == "best_epoch":
            _whole(value, key, 0, config.epochs)
        else:
            _number(value, key, _range_of(key))
    return results


def _check_scaling(s) -> InputScaling:
    if not isinstance(s, dict):
        raise ValueError("input_scaling must be an object")
    scaling = InputScaling(mean=_real(s["mean"], "input mean", 0.0, 1.0),
                           std=_real(s["std"], "input std", MIN_INPUT_STD, UNIT_INPUT_STD))
    if scaling.std > MAX_INPUT_STD and scaling != InputScaling.unit():
        raise ValueError(f"input std {scaling.std} is above {MAX_INPUT_STD} and not the unit scaling (mean 0, std 1)")
    if not (math.isfinite(scaling.scale) and math.isfinite(scaling.offset)):
        raise ValueError(f"scale {scaling.scale} and offset {scaling.offset} must be finite")
    return scaling


def _check_parent(parent) -> dict | None:
    """The model a run started from (train --init-from): path, sha256, dataset, test accuracy."""
    if parent is None:
        return None
    parent = _object(parent, "parent")
    if set(parent) != set(PARENT_KEYS):
        raise ValueError(f"parent must hold {', '.join(PARENT_KEYS[:-1])} and {PARENT_KEYS[-1]}")
    if not all(isinstance(parent[key], str) for key in ("path", "sha256", "dataset")) \
            or len(parent["sha256"]) != 64 or len(parent["path"]) > MAX_PARENT_PATH:
        raise ValueError("parent path, sha256 and dataset must be text (sha256: 64 hex digits)")
    if parent["test_accuracy"] is not None:
        _real(parent["test_accuracy"], "parent test_accuracy", 0.0, 1.0)
    return parent


def _check_state(state, config: TrainConfig, history: list) -> None:
    if not isinstance(state, dict):
        raise ValueError("the state must be an object")
    unknown = sorted(set(state) - {"loop", "rng"})
    if unknown:
        raise ValueError(f"unknown state entries {', '.join(map(show, unknown))}")
    loop = state["loop"]
    if not isinstance(loop, dict):
        raise ValueError("the loop state must map names to numbers")
    unknown = sorted(set(loop) - set(LOOP_STATE))
    if unknown:
        raise ValueError(f"unknown loop state entries {', '.join(map(show, unknown))}")
    done = _whole(loop["epochs_done"], "epochs_done", 0, config.epochs)
    if len(history) != done:
        raise ValueError(f"epochs_done is {done} but the history holds {len(history)} epochs")
    allowed = _loop_state_ranges(done, config.batch_size)
    for key, value in loop.items():
        _number(value, key, allowed[key])
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

"""The curve a diverged run leaves: `<out>.diverged.json`, beside the model it never saved.

    save_diverged(path, config, error)  the settings, whole epochs and [step, loss] pairs up to the blow-up
    load_diverged(path) -> Model        the same, as a Model without knobs, for `mlknobs plot history`

A run that blows up is part of the lesson (a learning rate too big), so its curve is kept and drawable.
A loss that was no longer finite is stored as null.
"""

from __future__ import annotations

from pathlib import Path

from mlknobs.config import TrainConfig
from mlknobs.errors import ModelFileError, TrainingDiverged
from mlknobs.files import atomic_write, open_regular, read_bounded
from mlknobs.files.jsonl import NotJson, read_strict_json, strict_json

FORMAT = "mlknobs-diverged"
SUFFIX = ".diverged.json"
MAX_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 8        # the record nests 3 deep (record -> history -> entry; step_losses -> pair)


def diverged_path_for(model_path: Path) -> Path:
    """model.npz -> model.diverged.json, beside it."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.name.removesuffix('.npz')}{SUFFIX}")


def save_diverged(path: Path, config: TrainConfig, error: TrainingDiverged) -> None:
    record = {"format": FORMAT, "message": str(error), "config": config.to_dict(),
              "history": error.history, "step_losses": error.step_losses}
    atomic_write(path, lambda f: f.write((strict_json(record) + "\n").encode()))


def load_diverged(path: Path):
    """A diverged run's record as a knob-less Model (config, history, step_losses) for plots."""
    from mlknobs.errors import SettingsError
    from mlknobs.io import metadata
    from mlknobs.io.npz import short
    from mlknobs.nn.model import InputScaling, Model

    with open_regular(path, MAX_BYTES, error=ModelFileError) as f:
        data = read_bounded(f, MAX_BYTES, str(path), error=ModelFileError)
    try:
        record = read_strict_json(data, max_size=MAX_BYTES, max_depth=MAX_JSON_DEPTH)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} record")
        config = TrainConfig.from_dict(record["config"])
        # The blow-up itself (a loss no longer finite, stored as null) cannot be drawn: its step and
        # its epoch are left out; every other pair and epoch must be whole and in range.
        steps = metadata.check_step_losses(_without_nulls(record["step_losses"], "step_losses"), config)
        history = metadata.check_history(_without_nulls(record["history"], "history"), config)
    except NotJson as e:
        raise ModelFileError(f"{path}: not a diverged run's curve (the text is {e})") from None
    except (KeyError, TypeError, ValueError, OverflowError, SettingsError) as e:
        raise ModelFileError(f"{path}: not a diverged run's curve ({short(e)})") from None
    # No knobs (params None): a diverged run saved none, and only its curve is drawn.
    return Model(None, config, InputScaling.unit(), [], history, {"diverged": True}, record, None, steps)


def _without_nulls(items, what: str) -> list:
    """The [step, loss] pairs or history entries of `items` that hold no null (the others are checked later)."""
    if not isinstance(items, list):
        raise ValueError(f"{what} must be a list")
    return [item for item in items if not _holds_null(item)]


def _holds_null(item) -> bool:
    held = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
    return any(value is None for value in held)

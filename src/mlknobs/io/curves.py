"""The curve a diverged run leaves: `<out>.diverged.json`, beside the model it never saved.

    save_diverged(path, config, error)  the settings, whole epochs and [step, loss] pairs up to the blow-up
    load_diverged(path) -> Model        the same, as a Model without knobs, for `mlknobs plot history`

A run that blows up is part of the lesson (a learning rate too big), so its curve is kept and drawable.
A loss that was no longer finite is stored as null.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlknobs.config import TrainConfig
from mlknobs.errors import ModelFileError, TrainingDiverged
from mlknobs.files import atomic_write, open_regular, read_bounded
from mlknobs.files.jsonl import strict_json

FORMAT = "mlknobs-diverged"
SUFFIX = ".diverged.json"
MAX_BYTES = 64 * 2**20


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
    from mlknobs.nn.model import InputScaling, Model

    with open_regular(path, MAX_BYTES, error=ModelFileError) as f:
        text = read_bounded(f, MAX_BYTES, str(path), error=ModelFileError)
    try:
        record = json.loads(text.decode("utf-8"))
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} record")
        config = TrainConfig.from_dict(record["config"])
        pairs = [pair for pair in record["step_losses"] if isinstance(pair, list) and len(pair) == 2
                 and pair[1] is not None]          # the non-finite blow-up itself cannot be drawn
        steps = metadata.check_step_losses(pairs, config)
        history = [entry for entry in record["history"] if isinstance(entry, dict)]
    except (KeyError, TypeError, ValueError, SettingsError) as e:
        raise ModelFileError(f"{path}: not a diverged run's curve ({e})") from e
    # No knobs (params None): a diverged run saved none, and only its curve is drawn.
    return Model(None, config, InputScaling.unit(), [], history, {"diverged": True}, record, None, steps)

"""Library errors in the command line's words: the one place where a hint names a flag or a command.

The library raises errors that carry facts (the learning rate that diverged, the checkpoint in
the way); `to_click(error, command)` turns each into a ClickException with a one-line message and
the conventional exit code (cli.output's table): 2 for a usage mistake, 130 for an interrupted
sweep, 1 for anything else.
"""

from __future__ import annotations

from pathlib import Path

import click

from mlknobs import errors
from mlknobs.cli.options import option_name
from mlknobs.cli.output import EXIT_INTERRUPTED
from mlknobs.text import values_text


def to_click(error: errors.MlknobsError, command: click.Command | None) -> click.ClickException:
    if isinstance(error, errors.SettingsError):
        return click.UsageError(error.describe(lambda setting: _flag(command, setting)))
    if isinstance(error, errors.KnobError):
        return click.UsageError(f"Invalid value for '--knob': {error}")
    if isinstance(error, (errors.DownloadSettingsError, errors.UnsupportedMirror)):
        return click.UsageError(str(error))      # a bad variable or --mirror: the user's words were wrong
    if isinstance(error, errors.SchedulerAddressError):
        return click.BadParameter(str(error), param_hint="--scheduler")
    exception = click.ClickException(_worded(error, command))
    if isinstance(error, errors.SweepInterrupted):
        exception.exit_code = EXIT_INTERRUPTED
    return exception


def _flag(command: click.Command | None, setting: str) -> str:
    return option_name(command, setting) if command is not None else setting


def _out_flag(command: click.Command | None) -> str:
    return "--out" if command is not None and command.name == "train" else "--model"


def _worded(error: errors.MlknobsError, command: click.Command | None) -> str:
    if isinstance(error, errors.TrainingDiverged):
        # Not a guess like lr / 5: from --lr 100 that collapses again, and again. The range test
        # measures where the loss falls fastest for these very settings.
        kept = f"; its curve up to there is in {error.curve} (mlknobs plot history {error.curve})" if error.curve else ""
        return f"{error}{kept}: a smaller learning rate that learns is what `mlknobs lr-find` measures (same settings)"
    if isinstance(error, errors.InterruptedRunExists):
        out = _model_of(error.checkpoint)
        return (f"{error}: continue it with `mlknobs train --resume --out {out}`, "
                f"or pass --fresh to start over and replace it")
    if isinstance(error, errors.ResumeSettingsDiffer):
        flags = ", ".join(_flag(command, name) for name in error.differences)
        return f"{error}. Drop {flags}, or pass --fresh to start a new run with them"
    if isinstance(error, errors.NothingToResume):
        return f"{error}: start a new run without --resume"
    if isinstance(error, errors.ModelFileMissing):
        if error.role != "model":
            return f"{error}: point --init-from at a model file"
        return (f"{error}: train one with `mlknobs train` "
                f"(or point {_out_flag(command)} / MLKNOBS_MODEL at one)")
    if isinstance(error, errors.DownloadFailed):
        return (f"{error}\nOn a machine without internet, put the four .gz files in FOLDER/{error.dataset}/ "
                f"and pass --mirror FOLDER (or set MLKNOBS_MIRROR=FOLDER).")
    if isinstance(error, errors.ModelFileError):
        return f"{error}; train a new one with `mlknobs train`"
    if isinstance(error, errors.DataDirNotWritable):
        if "space" in error.reason.lower():
            return f"{error}: free some space, or choose another folder with --data-dir or MLKNOBS_DATA_DIR"
        return f"{error}: choose a writable folder with --data-dir or MLKNOBS_DATA_DIR"
    if isinstance(error, errors.SweepInterrupted):
        return f"{error}; the others run with: mlknobs sweep --resume --out-dir {error.out_dir}"
    if isinstance(error, errors.SweepExists):
        return (f"{error}: finish it with `mlknobs sweep --resume --out-dir {error.out_dir}`, "
                f"or choose another --out-dir")
    if isinstance(error, errors.NoSweepToResume):
        return f"{error}: start a new sweep without --resume"
    if isinstance(error, errors.SweepGridDiffers):
        listed = "; ".join(f"{_flag(command, name)} {values_text(given)} (the sweep has {values_text(saved)})"
                           for name, (saved, given) in error.differences.items())
        return (f"{error.out_dir} holds a sweep over another grid: {listed}. Drop these options to finish it, "
                f"or choose another --out-dir")
    if isinstance(error, errors.SweepFromOtherVersion):
        return f"{error}: start a new sweep with another --out-dir"
    if isinstance(error, errors.NoStepCurves):
        return f"{error}: sweep with --log-every N to record every run's curve"
    if isinstance(error, errors.MissingExtra):
        return (f"{error}: install the {error.extra} extra: pip install \"mlknobs[{error.extra}]\" "
                f"(from a clone: pip install \".[{error.extra}]\")")
    return str(error)


def _model_of(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name.removesuffix(".ckpt.npz") + ".npz")

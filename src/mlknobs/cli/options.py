"""Options shared by several commands, and the training settings' options built from mlknobs.config.

Names, choices and defaults of the settings come from config.py (the one source of truth); this
module only adds what a command line needs: flags, help texts, environment variables.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from mlknobs.config import (
    DATASET_NAMES,
    DEFAULTS,
    DISTORTION_LIMITS,
    GRADIENT_NAMES,
    INPUT_SCALING_NAMES,
    LOSS_NAMES,
    MAX_BATCH_SIZE,
    MAX_DROPOUT,
    MAX_HIDDEN_SIZE,
    NUDGE_EPOCH_LIMIT,
    SCHEDULE_NAMES,
    max_threads,
)


def finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Option callback: FloatRange lets nan and inf through; no setting makes sense with them."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def off_if_absent(ctx: click.Context, param: click.Parameter, value: int | None) -> int:
    """Option callback for a setting whose 0 means "off" (all digits, no log): leaving the option
    out gives the 0; typing 0 is refused, since `--log-every 0` reads as a mistake, not as "off"."""
    if value is None:
        return 0
    if value == 0 and ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT:
        raise click.BadParameter("0 is not allowed: give 1 or more, or leave the option out")
    return value


def progress_for(quiet: bool) -> bool | None:
    """False when asked to be quiet; otherwise let tqdm decide (bars only on a terminal)."""
    return False if quiet else None


def data_options(func):
    """--data-dir and --mirror, shared by every command that reads a dataset."""
    func = click.option("--mirror", "mirrors", multiple=True, envvar="MLKNOBS_MIRROR", show_envvar=True,
                        metavar="URL_OR_DIR",
                        help="Mirror to download from instead of the built-in ones: http(s)/file URL or "
                             "local folder holding <dataset>/<file>; the word builtin stands for the "
                             "built-in ones. Repeatable, tried in order; the variable takes a "
                             "whitespace-separated list.")(func)
    func = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default="data",
                        envvar="MLKNOBS_DATA_DIR", show_envvar=True, show_default=True,
                        help="Where datasets are cached, one sub-folder per dataset.")(func)
    return func


def dataset_option(func):
    return click.option("--dataset", type=click.Choice(DATASET_NAMES), default=DEFAULTS.dataset,
                        envvar="MLKNOBS_DATASET", show_envvar=True, show_default=True,
                        help="Which dataset.")(func)


def model_option(func):
    return click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
                        default="model.npz", envvar="MLKNOBS_MODEL", show_envvar=True, show_default=True,
                        help="Model file to read.")(func)


def threads_option(func):
    cores = max_threads()
    return click.option("--threads", type=click.IntRange(1, cores), default=DEFAULTS.threads,
                        envvar="MLKNOBS_THREADS", show_envvar=True, show_default=True,
                        help=f"BLAS threads, at most the {cores} core(s) this process may use "
                             f"(1 is fastest on busy shared cores).")(func)


def quiet_option(func):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or progress lines.")(func)


def json_option(help_text: str):
    return click.option("--json", "as_json", is_flag=True, help=help_text)


NUDGE_HELP = ("How each knob's slope is found: backprop (the chain rule, backwards) or nudge (just "
              "arithmetic: (L(w+h) - L(w-h)) / 2h of the batch loss for every knob, in float64, no backward "
              "pass; about 2 x 785 x H loss evaluations a step). Nudging is refused when an epoch is estimated "
              f"above {NUDGE_EPOCH_LIMIT / 60:g} min; it trains e.g. --hidden-size 8 --train-size 1000 in a "
              "few seconds an epoch.")
DISTORTION_OPTIONS = (   # setting, what its value is, help
    ("rotate", "DEGREES", "Distort training digits: turn each by up to this angle."),
    ("scale", "FRACTION", "Distort training digits: grow or shrink each by up to this fraction."),
    ("shear", "FACTOR", "Distort training digits: slant each by up to this factor."),
    ("shift", "PIXELS", "Distort training digits: move each by up to this many pixels."),
    ("elastic", "PIXELS", "Distort training digits: a smooth random elastic field of this size (std)."),
    ("elastic_sigma", "PIXELS", "Smoothness of the elastic field (Gaussian sigma)."),
)

# The training settings, in TrainConfig's order; the parameter name is always the setting's name.
SETTING_OPTIONS = (
    click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS.epochs, show_default=True,
                 help="Passes over the training set."),
    click.option("--hidden-size", type=click.IntRange(1, MAX_HIDDEN_SIZE), default=DEFAULTS.hidden_size,
                 show_default=True, help="Number of sigmoid hidden units H."),
    click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=DEFAULTS.batch_size,
                 show_default=True, help="Samples per gradient step."),
    click.option("--lr", "--learning-rate", "learning_rate", callback=finite,
                 type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.learning_rate, show_default=True,
                 help="Peak learning rate."),
    click.option("--momentum", callback=finite, type=click.FloatRange(0, 1, max_open=True),
                 default=DEFAULTS.momentum, show_default=True, help="Momentum (0 = plain SGD)."),
    click.option("--nesterov", is_flag=True, default=DEFAULTS.nesterov, help="Use Nesterov momentum."),
    click.option("--weight-decay", callback=finite, type=click.FloatRange(min=0), default=DEFAULTS.weight_decay,
                 show_default=True, help="L2 penalty on the weights (not the biases)."),
    click.option("--schedule", type=click.Choice(SCHEDULE_NAMES), default=DEFAULTS.schedule, show_default=True,
                 help="Learning-rate schedule over all steps."),
    click.option("--loss", type=click.Choice(LOSS_NAMES), default=DEFAULTS.loss, show_default=True,
                 help="cross-entropy (softmax outputs) or mse (sigmoid outputs, the classic tutorial net)."),
    click.option("--val-size", type=click.IntRange(min=0), default=DEFAULTS.val_size, show_default=True,
                 help="Hold out the last N training samples for validation."),
    click.option("--early-stopping", "early_stopping", type=click.IntRange(min=0), default=DEFAULTS.early_stopping,
                 show_default=True, metavar="PATIENCE",
                 help="Stop after PATIENCE epochs without validation gain (counted once the schedule has "
                      "peaked) and keep the best epoch's weights (needs --val-size)."),
    click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=DEFAULTS.seed, show_default=True,
                 help="Seed for initial weights and shuffling."),
    threads_option,
    dataset_option,
    click.option("--dropout", callback=finite, type=click.FloatRange(0, MAX_DROPOUT), default=DEFAULTS.dropout,
                 show_default=True, help="Drop each hidden unit with this probability in every training step."),
    *(click.option(f"--{name.replace('_', '-')}", callback=finite, type=click.FloatRange(*DISTORTION_LIMITS[name]),
                   default=getattr(DEFAULTS, name), metavar=metavar, show_default=True, help=help_text)
      for name, metavar, help_text in DISTORTION_OPTIONS),
    click.option("--train-size", type=click.IntRange(min=0), default=None, callback=off_if_absent, metavar="N",
                 help="Train on the first N training digits only  [default: all]."),
    click.option("--log-every", type=click.IntRange(min=0), default=None, callback=off_if_absent, metavar="N",
                 help="Record the batch loss every N steps (step_losses in the model file, --json and "
                      "checkpoints): the curve within an epoch.  [default: off]"),
    click.option("--input-scaling", type=click.Choice(INPUT_SCALING_NAMES), default=DEFAULTS.input_scaling,
                 show_default=True, help="How pixels become inputs: standardize ((pixel/255 - mean) / std of "
                                         "the training set), unit (pixel/255) or raw (0..255)."),
    click.option("--init-scale", callback=finite, type=click.FloatRange(0, 100, min_open=True),
                 default=DEFAULTS.init_scale, show_default=True,
                 help="Multiply the range of the initial (Glorot) weights by this."),
    click.option("--gradients", type=click.Choice(GRADIENT_NAMES), default=DEFAULTS.gradients, show_default=True,
                 help=NUDGE_HELP),
)
SETTINGS = tuple(DEFAULTS.to_dict())


def setting_options(func):
    """Every training setting as an option (click applies decorators bottom-up: reverse for --help order)."""
    for option in reversed(SETTING_OPTIONS):
        func = option(func)
    return func


def option_name(command: click.Command, setting: str) -> str:
    """The flag a user types for a setting (`learning_rate` -> `--lr`), from the command's own options."""
    for param in command.params:
        if param.name == setting and isinstance(param, click.Option):
            return param.opts[0]
    return setting


def with_augment_defaults(ctx: click.Context, settings: dict) -> dict:
    """`--augment`: the measured-good distortions (config.AUGMENT_DEFAULTS) for those not given explicitly."""
    from mlknobs.config import AUGMENT_DEFAULTS

    given = given_settings(ctx, settings)
    return {**settings, **{name: value for name, value in AUGMENT_DEFAULTS.items() if name not in given}}


def given_settings(ctx: click.Context, values: dict) -> dict:
    """The settings the user stated on the command line (not defaults or environment variables)."""
    return {name: value for name, value in values.items()
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}

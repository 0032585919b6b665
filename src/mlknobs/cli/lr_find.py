"""mlknobs lr-find: the learning-rate range test (training.lr_find); suggests a --lr, saves no model."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from mlknobs.cli.options import (
    SETTING_OPTIONS,
    SETTINGS,
    data_options,
    finite,
    json_option,
    progress_for,
    quiet_option,
)
from mlknobs.cli.output import echo_json, note, say
from mlknobs.training.lr_find_settings import END_LR, MAX_LR, MAX_STEPS, MIN_LR, MIN_STEPS, START_LR, STEPS

# The settings that shape the network, its inputs and its steps (so that "same settings" as a run
# means the same network on the same digits); the range test sets the learning rate itself, and
# epochs, schedule, early stopping and the distortions have no meaning for it.
NETWORK_SETTINGS = ("hidden_size", "batch_size", "momentum", "nesterov", "weight_decay", "loss", "dropout",
                    "val_size", "seed", "threads", "dataset", "train_size", "input_scaling", "init_scale")
LR_TYPE = click.FloatRange(MIN_LR, MAX_LR)


def network_setting_options(func):
    """train's options for NETWORK_SETTINGS, in train's --help order."""
    for option in reversed(SETTING_OPTIONS):
        probe = option(lambda: None)              # each decorator makes a fresh click.Option: look at its name
        if probe.__click_params__[-1].name in NETWORK_SETTINGS:
            func = option(func)
    return func


@click.command("lr-find")
@network_setting_options
@click.option("--start-lr", type=LR_TYPE, callback=finite, default=START_LR, show_default=True,
              help="The learning rate of the first batch.")
@click.option("--end-lr", type=LR_TYPE, callback=finite, default=END_LR, show_default=True,
              help="The learning rate of the last batch.")
@click.option("--steps", type=click.IntRange(MIN_STEPS, MAX_STEPS), default=STEPS, show_default=True,
              help="Batches over which the learning rate rises from --start-lr to --end-lr.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Also draw the loss against the learning rate (.png, .svg or .pdf; needs the "
                                   "plot extra).")
@data_options
@quiet_option
@json_option('Print {"suggested_lr", "rule", "lr": [...], "loss": [...], "stopped_at"} on stdout.')
def command(start_lr: float, end_lr: float, steps: int, plot_path: Path | None, data_dir: Path,
            mirrors: tuple[str, ...], quiet: bool, as_json: bool, **settings) -> None:
    """Suggest a learning rate: the range test of Smith (2015), as fastai's lr_find.

    From a fresh network, the learning rate grows exponentially from --start-lr to --end-lr, one
    batch per step, while the loss is recorded (smoothed: a moving average, beta 0.98, with its
    start-up bias removed); the test stops once the loss climbs above 4 times its minimum. The
    suggestion is the learning rate of the lowest smoothed loss divided by 10, measured to suit
    `train`'s one-cycle recipe better than the point of steepest descent. The network is the one
    `train` would build from the same options (dropout, --input-scaling, --init-scale and --train-size
    included). No model file is read or written.

    \b
    Examples:
      mlknobs lr-find
      mlknobs lr-find --hidden-size 128 --batch-size 64 --plot lr.png
      mlknobs lr-find --loss mse --momentum 0 --json > lr.json
      mlknobs lr-find --input-scaling raw --hidden-size 32 --train-size 5000
      mlknobs train --lr "$(mlknobs lr-find --json --quiet | jq .suggested_lr)"
    """
    from mlknobs.config import DEFAULTS, TrainConfig
    from mlknobs.training.lr_find import RULES, lr_find
    from mlknobs.training.run import DataSource

    if start_lr >= end_lr:
        raise click.BadParameter(f"{start_lr:g} is not below --end-lr {end_lr:g}", param_hint="--start-lr")
    plots = None
    if plot_path is not None:
        from mlknobs.files import check_writable
        from mlknobs.viz import plots

        plots.picture_format(plot_path)
        plots.require_matplotlib()
        check_writable(plot_path)            # before the data is loaded
    config = TrainConfig(**{name: settings.get(name, getattr(DEFAULTS, name)) for name in SETTINGS})
    train, _, _ = DataSource(data_dir, mirrors, progress_for(quiet)).load(config.dataset)
    bar = _Bar(quiet, steps)
    try:
        result = lr_find(config, train, start_lr=start_lr, end_lr=end_lr, steps=steps, callback=bar)
    finally:
        bar.close()

    _, rule_words = RULES[result.rule]
    if plots is not None:
        from mlknobs.viz.lr_find import lr_find_figure

        plots.write_picture(plot_path, lr_find_figure(result, plots.picture_format(plot_path), rule_words))
    if as_json:
        echo_json({"suggested_lr": result.suggested_lr, "rule": result.rule, "lr": result.learning_rates,
                   "loss": result.losses, "stopped_at": result.stopped_at})
        return
    stop = (f"stopped at lr {result.stopped_at:.3g}, where the loss blew up" if result.stopped_at is not None
            else f"reached --end-lr {end_lr:g} without the loss blowing up")
    lowest = min(range(len(result.losses)), key=result.losses.__getitem__)
    say(f"suggested learning rate: {_round(result.suggested_lr)}  (rule: {rule_words})")
    if not quiet:
        note(f"{len(result.learning_rates)} batches from lr {start_lr:g}; lowest smoothed loss "
             f"{result.losses[lowest]:.4f} at lr {result.learning_rates[lowest]:.3g}; {stop}")
        if plot_path is not None:
            note(f"wrote {plot_path}")
        note(f"try: mlknobs train --lr {_round(result.suggested_lr)}")


def _round(value: float) -> str:
    """Two significant digits: the test is far coarser than that."""
    return f"{float(f'{value:.2g}'):g}" if math.isfinite(value) else str(value)


class _Bar:
    def __init__(self, quiet: bool, steps: int):
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc="lr-find", unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.25, disable=None)

    def __call__(self, step) -> None:
        if self.bar is not None:
            self.bar.update()
            if step.step % 10 == 1:
                self.bar.set_postfix_str(f"lr {step.learning_rate:.2g} loss {step.loss:.3f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

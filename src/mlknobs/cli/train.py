"""mlknobs train: one training run through training.run, with progress on stderr."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlknobs.cli.options import (
    SETTINGS,
    data_options,
    given_settings,
    json_option,
    progress_for,
    quiet_option,
    setting_options,
    with_augment_defaults,
)
from mlknobs.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, echo_json, note, say
from mlknobs.cli.paths import refuse_output_over_input
from mlknobs.config import AUGMENT_DEFAULTS


@click.command("train")
@setting_options
@data_options
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default="model.npz",
              envvar="MLKNOBS_MODEL", show_envvar=True, show_default=True, help="Where to save the model.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run saved beside --out (OUT.ckpt.npz).")
@click.option("--fresh", is_flag=True, help="Start a new run even though OUT.ckpt.npz holds an interrupted one "
                                             "(which is then replaced).")
@click.option("--augment", is_flag=True,
              help="Train on freshly distorted digits every epoch, with the measured-good distortions ("
                   + ", ".join(f"{name.replace('_', '-')} {value:g}" for name, value in AUGMENT_DEFAULTS.items())
                   + "); the distortion options given explicitly win.")
@click.option("--init-from", "init_from", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="MODEL", help="Start from MODEL's weights and input scaling instead of random weights "
                                    "(a new run: its own settings, schedule and optimizer; same --hidden-size).")
@click.option("--snapshots", "snapshots_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.gif", help="Also record the hidden units' input weights a few times per epoch "
                                       "and save them as an animated GIF (the first 64 units).")
@quiet_option
@json_option("Print one JSON object with the results on stdout.")
@click.pass_context
def command(ctx: click.Context, data_dir: Path, mirrors: tuple[str, ...], out: Path, resume: bool, fresh: bool,
            augment: bool, init_from: Path | None, snapshots_path: Path | None, quiet: bool, as_json: bool,
            **settings) -> None:
    """Train the network on MNIST (or Fashion-MNIST) and save it.

    Downloads the dataset on first use. After every epoch a checkpoint OUT.ckpt.npz is saved; if
    the run is interrupted (Ctrl-C), `--resume` continues it and ends with the same weights as an
    uninterrupted run.

    \b
    Examples:
      mlknobs train --epochs 3
      mlknobs train --hidden-size 800 --epochs 15 --lr 0.1 --weight-decay 5e-5
      mlknobs train --loss mse --momentum 0 --schedule constant --lr 3 --hidden-size 30
      mlknobs train --val-size 10000 --early-stopping 3 --epochs 30
      mlknobs train --augment --hidden-size 800 --epochs 30
      mlknobs train --resume
      mlknobs train --init-from model.npz --dataset fashion-mnist --out fashion.npz
      mlknobs train --hidden-size 64 --snapshots learning.gif
      mlknobs train --json --quiet > result.json
    """
    from mlknobs.config import TrainConfig
    from mlknobs.errors import TrainingInterrupted
    from mlknobs.training.run import DataSource, checkpoint_path_for, run

    if resume and fresh:
        raise click.UsageError("--resume and --fresh contradict each other")
    if resume and init_from is not None:
        raise click.UsageError("--resume continues from the checkpoint's weights; drop --init-from")
    if resume and augment:
        raise click.UsageError("--resume continues with the checkpoint's settings; drop --augment")
    _check_snapshots_path(snapshots_path, out, checkpoint_path_for(out))
    # `--init-from model.npz` with the default --out would replace the parent with its child.
    refuse_output_over_input({"--out": out, "--snapshots": snapshots_path}, {"--init-from": init_from})
    if augment:
        settings = with_augment_defaults(ctx, settings)
    config = None if resume else TrainConfig(**{name: settings[name] for name in SETTINGS})
    display = _Display(quiet, snapshots_path, resuming_from=checkpoint_path_for(out) if resume else None)
    try:
        model = run(config, out, data=DataSource(data_dir, mirrors, progress_for(quiet)), resume=resume,
                    fresh=fresh, given=given_settings(ctx, settings) if resume else None, callback=display,
                    init_from=init_from, keep_curve=True)
    except TrainingInterrupted as e:
        display.close()
        display.save_snapshots()           # the frames so far are worth keeping
        hint = f"; resume with: mlknobs train --resume --out {out}" if e.checkpoint else ""
        note(f"Error: {e}{hint}")
        sys.exit(EXIT_INTERRUPTED)
    finally:
        display.close()
    if not display.save_snapshots():
        sys.exit(EXIT_FAILED)

    results, config = model.results, model.config
    if as_json:
        echo_json({"test_accuracy": results["test_accuracy"], "test_loss": results["test_loss"],
                   "epochs": len(model.history), "seconds": results["seconds"], "model": str(out),
                   "dataset": config.dataset, "stopped_early": results["stopped_early"],
                   **({"best_epoch": results["best_epoch"]} if "best_epoch" in results else {}),
                   "config": config.to_dict(), "history": model.history,
                   **({"step_losses": model.step_losses} if config.log_every else {})})
    elif not quiet:
        if results["stopped_early"]:
            note(f"stopped early after epoch {len(model.history)}; kept the weights of epoch "
                 f"{results['best_epoch']} (best validation accuracy)")
        say(f"test accuracy {results['test_accuracy'] * 100:.2f} %  (loss {results['test_loss']:.4f}, "
            f"{len(model.history)} epochs in {results['seconds']:.1f} s)  saved {out}")


def _check_snapshots_path(snapshots_path: Path | None, out: Path, checkpoint: Path) -> None:
    if snapshots_path is None:
        return
    from mlknobs.files import check_writable

    if snapshots_path.suffix.lower() != ".gif":
        raise click.BadParameter(f"{snapshots_path} must be a .gif file", param_hint="--snapshots")
    check_writable(snapshots_path)       # before minutes of training (and before resolving: a symlink loop)
    try:
        clash = snapshots_path.resolve() in (out.resolve(), checkpoint.resolve())
    except (OSError, RuntimeError) as e:  # a loop in --out's symlinks
        raise click.BadParameter(f"cannot resolve {out}: {e}", param_hint="--out") from e
    if clash:
        raise click.BadParameter(f"{snapshots_path} would overwrite the model or its checkpoint",
                                 param_hint="--snapshots")


class _Display:
    """The training callback: a progress bar per epoch, a line per epoch, and the GIF's frames."""

    def __init__(self, quiet: bool, snapshots_path: Path | None, resuming_from: Path | None):
        self.quiet = quiet
        self.snapshots_path = snapshots_path
        self.resuming_from = resuming_from
        self.snapshots = None
        self.bar = None

    def __call__(self, progress) -> None:
        if self.snapshots is None and self.snapshots_path is not None:
            from mlknobs.viz.snapshots import WeightSnapshots

            self.snapshots = WeightSnapshots(progress.epochs)
        if self.snapshots is not None:
            self.snapshots.record(progress)
        if self.quiet:
            return
        if progress.event == "start" and self.resuming_from is not None:
            note(f"resuming from {self.resuming_from}: epoch {progress.epoch - 1} of {progress.epochs} done")
        elif progress.event == "step":
            self._bar(progress).update()
            if progress.batch % 25 == 1:
                self.bar.set_postfix_str(f"loss {progress.loss:.4f}", refresh=False)
        elif progress.event == "epoch":
            self.close()
            note(epoch_line(progress.entry, progress.epochs))

    def _bar(self, progress):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=progress.batches, desc=f"epoch {progress.epoch}/{progress.epochs}",
                            unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.25,
                            disable=None)
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def save_snapshots(self) -> bool:
        """Write the GIF, if asked for and there is something to show; False (after saying why) on failure."""
        if self.snapshots is None or len(self.snapshots.frames) < 2:
            return True
        from mlknobs.errors import MlknobsError
        from mlknobs.viz.plots import write_picture

        try:
            write_picture(self.snapshots_path, self.snapshots.gif_bytes())
        except MlknobsError as e:
            note(f"Error: {e}")
            return False
        if not self.quiet:
            note(f"wrote {self.snapshots_path} ({len(self.snapshots.frames)} frames)")
        return True


EPOCH_FIELDS = (  # history key, how it is shown
    ("train_loss", "loss {:.4f}"), ("train_accuracy", "train acc {:.2%}"),
    ("val_accuracy", "val acc {:.2%}"), ("seconds", "{:.2f} s"))


def epoch_line(entry: dict, epochs: int) -> str:
    parts = [f"epoch {entry.get('epoch', '?')}/{epochs}"]
    parts += [shown.format(entry[key]) for key, shown in EPOCH_FIELDS
              if isinstance(entry.get(key), (int, float))]
    return "  ".join(parts).replace("%", " %")

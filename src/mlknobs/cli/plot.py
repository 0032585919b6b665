"""mlknobs plot KIND: pictures of a trained model (needs the plot extra, matplotlib)."""

from __future__ import annotations

from pathlib import Path

import click

from mlknobs.cli.options import data_options, model_option
from mlknobs.cli.output import say
from mlknobs.cli.paths import refuse_output_over_input
from mlknobs.viz import PLOT_KINDS

_KINDS_HELP = "\n".join(f"  {kind:<10} {summary}" for kind, (summary, _) in PLOT_KINDS.items())


@click.command("plot", help=f"""Draw a picture of a trained model (needs the plot extra: pip install "mlknobs[plot]",
or pip install ".[plot]" from a clone).

\b
KIND is one of
{_KINDS_HELP}

confusion, mistakes and activations read the model's test split (downloaded on first use);
sweep reads the folder of `mlknobs sweep` (--sweep DIR) instead of a model. history takes
several MODELs (or a diverged run's OUT.diverged.json) and overlays their curves, named by the
settings in which they differ, with the batch loss per step of runs trained with --log-every.

\b
Examples:
  mlknobs plot weights
  mlknobs plot history --model runs/h800.npz --out h800-history.png
  mlknobs plot history lr0.1.npz lr0.5.npz lr20.diverged.json --out lr.png   # overlaid
  mlknobs plot confusion --mirror ../shared/data
  mlknobs plot mistakes --count 80 --out mistakes.pdf
  mlknobs plot activations --model model.npz     # how saturated the hidden sigmoids are
  mlknobs plot augment --out augment.png     # the distorted digits train --augment shows
  mlknobs plot sweep --sweep sweep --out sweep.png
  mlknobs plot sweep --sweep sweep --curves      # every run's step curve (sweep with --log-every)
  mlknobs train --snapshots learning.gif      # an animation of the weights while they learn
""")
@click.argument("kind", type=click.Choice(tuple(PLOT_KINDS)), metavar="KIND")
@click.argument("models", nargs=-1, type=click.Path(dir_okay=False, path_type=Path), metavar="[MODEL]...")
@model_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Picture to write: .png, .svg or .pdf.  [default: KIND.png]")
@click.option("--max-units", type=click.IntRange(min=1), default=100, show_default=True,
              help="weights: draw at most this many hidden units (the first ones).")
@click.option("--shared-scale", is_flag=True,
              help="weights: one colour scale for all units (compares strengths) instead of one per unit "
                   "(shows every unit's pattern).")
@click.option("--count", type=click.IntRange(1, 400), default=40, show_default=True,
              help="mistakes: how many misclassified test images to show.")
@click.option("--sweep", "sweep_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="sweep: the --out-dir of `mlknobs sweep` to draw.")
@click.option("--curves", is_flag=True,
              help="sweep: every run's batch loss per logged step instead (failed runs too: they keep their curve).")
@data_options
def command(kind: str, models: tuple[Path, ...], model_path: Path, out: Path | None, max_units: int,
            shared_scale: bool, count: int, sweep_dir: Path | None, curves: bool, data_dir: Path,
            mirrors: tuple[str, ...]) -> None:
    from mlknobs.data.splits import load_split
    from mlknobs.files import check_writable
    from mlknobs.io.modelfile import load_model
    from mlknobs.nn.blas import blas_threads
    from mlknobs.viz import plots

    out = out if out is not None else Path(f"{kind}.png")
    fmt = plots.picture_format(out)
    plots.require_matplotlib()
    check_writable(out)          # before seconds of loading and drawing
    if curves and kind != "sweep":
        raise click.UsageError("--curves draws a sweep's step curves: it goes with plot sweep")
    if models and kind != "history":
        raise click.UsageError(f"plot {kind} draws one model, given with --model; only plot history takes several")
    if kind == "history":
        inputs = {f"MODEL {i + 1}": path for i, path in enumerate(models)} if models else {"--model": model_path}
        refuse_output_over_input({"--out": out}, inputs)
        plots.write_picture(out, _history_picture(models or (model_path,), fmt))
        say(f"wrote {out}")
        return
    _, split = PLOT_KINDS[kind]
    if split != "sweep":         # (a sweep's files cannot be pictures: --out has a picture's suffix)
        refuse_output_over_input({"--out": out}, {"--model": model_path})
    if split == "sweep":
        plots.write_picture(out, _sweep_picture(sweep_dir, fmt, curves))
        say(f"wrote {out}")
        return
    model = load_model(model_path)
    data = load_split(model.dataset, split, data_dir, mirrors, progress=None) if split else None
    request = plots.PlotRequest(model, model_path.name, fmt, data if split == "test" else None, max_units,
                                shared_scale, count, train=data if split == "train" else None)
    if kind == "augment":
        request = _augment_request(request, model_path.name)
    with blas_threads(1):        # up to 10,000 forward passes: one thread, as everywhere else
        picture = plots.DRAW[kind](request)
    plots.write_picture(out, picture)
    say(f"wrote {out}")


def _load_curve(path: Path):
    """A model file, or the curve a diverged run left (<out>.diverged.json)."""
    from mlknobs.io.curves import SUFFIX, load_diverged
    from mlknobs.io.modelfile import load_model

    return load_diverged(path) if path.name.endswith(SUFFIX) else load_model(path)


def _history_picture(paths, fmt: str) -> bytes:
    """`plot history`: one model's epochs, or the runs' curves overlaid, named by the settings in
    which they differ (several runs, a diverged run's curve, or logged steps). Each file is read once."""
    from mlknobs.io.curves import SUFFIX
    from mlknobs.viz import plots
    from mlknobs.viz.compare import histories_figure

    runs = [_load_curve(path) for path in paths]
    if len(runs) == 1 and not paths[0].name.endswith(SUFFIX) and not runs[0].step_losses:
        return plots.DRAW["history"](plots.PlotRequest(runs[0], paths[0].name, fmt))
    return histories_figure(runs, [path.name for path in paths], fmt)


def _augment_request(request, name: str):
    """The model's own distortions if it was trained with some, else what `train --augment` uses."""
    from dataclasses import replace

    from mlknobs.config import AUGMENT_DEFAULTS

    config = request.model.config
    if config.augmented:
        return replace(request, distortions=config.distortions, distortions_source=f"{name}'s settings")
    return replace(request, distortions=dict(AUGMENT_DEFAULTS),
                   distortions_source=f"train --augment ({name} was trained on clean digits)")


def _sweep_picture(sweep_dir: Path | None, fmt: str, curves: bool = False) -> bytes:
    """`plot sweep`: validation accuracy against the swept settings of a sweep folder."""
    from mlknobs.training.sweep import load_sweep
    from mlknobs.viz import plots

    if sweep_dir is None:
        raise click.UsageError("plot sweep draws a sweep folder: give it with --sweep DIR")
    loaded = load_sweep(sweep_dir)
    swept = {name: list(loaded.grid.values[name]) for name in loaded.grid.varying}
    if curves:
        from mlknobs.viz.compare import sweep_curves_figure

        return sweep_curves_figure(loaded.records, swept, sweep_dir.name or str(sweep_dir), fmt)
    return plots.DRAW["sweep"](plots.PlotRequest(None, sweep_dir.name or str(sweep_dir), fmt, runs=loaded.records,
                                                 swept=swept))

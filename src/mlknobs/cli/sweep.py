"""mlknobs sweep: train every combination of comma-separated setting values (training.sweep), rank by validation."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlknobs.cli.options import (
    data_options,
    given_settings,
    json_option,
    option_name,
    progress_for,
    quiet_option,
    setting_options,
)
from mlknobs.cli.output import EXIT_FAILED, echo_json, note, printable, say
from mlknobs.config import max_threads
from mlknobs.text import value_text
from mlknobs.training.sweep_settings import BACKEND_NAMES, SWEEP_DEFAULTS

# --- every setting of `train`, as a comma-separated list ---------------------------------------------

def _setting_templates() -> list[click.Option]:
    """train's setting options as click.Option objects: their flags, types, ranges, choices and help."""
    @click.command()
    @setting_options
    def probe(**_settings) -> None:
        pass

    return [param for param in probe.params if isinstance(param, click.Option)]


def _metavar(template: click.Option) -> str:
    if template.is_flag:
        return "BOOL[,...]"
    if isinstance(template.type, click.Choice):
        return "[" + "|".join(template.type.choices) + "][,...]"
    if template.metavar:
        return f"{template.metavar}[,...]"
    whole = isinstance(template.type, click.IntRange) or template.type is click.INT
    return ("N" if whole else "X") + "[,...]"


def _list_of(template: click.Option):
    """Option callback: 'a,b,c' -> a tuple of values, each converted and checked as `train` checks it."""
    item_type = click.BOOL if template.is_flag else template.type

    def parse(ctx: click.Context, param: click.Parameter, text) -> tuple:
        if text is None:
            return ()
        items = [item.strip() for item in str(text).split(",")]
        if len(items) > 1 and ctx.get_parameter_source(param.name) is click.core.ParameterSource.ENVIRONMENT:
            # MLKNOBS_THREADS=1,2 is a typo for a default, never a plan: a variable sets one value.
            raise click.BadParameter(f"{param.envvar}={printable(str(text))!r} sets a default, one value; give a list "
                                     f"with {param.opts[0]}")
        if any(not item for item in items):
            raise click.BadParameter(f"{text!r} has an empty item: give values separated by commas, e.g. 0.1,0.5")
        values = []
        for item in items:
            value = item_type.convert(item, param, ctx)          # ranges and choices, as `train` checks them
            if template.callback is not None:
                value = template.callback(ctx, param, value)     # e.g. finite numbers only
            values.append(value)
        return tuple(values)

    return parse


def _list_option(template: click.Option):
    attrs = dict(default=value_text(getattr(SWEEP_DEFAULTS, template.name)), show_default=True,
                 metavar=_metavar(template), callback=_list_of(template),
                 envvar=template.envvar, show_envvar=template.show_envvar, help=template.help)
    if template.is_flag:     # `--nesterov` alone still means true; `--nesterov false,true` sweeps it
        attrs.update(is_flag=False, flag_value="true")
    return click.option(*template.opts, *template.secondary_opts, template.name, **attrs)


def setting_list_options(func):
    """Every training setting as an option taking a comma-separated list (in train's --help order)."""
    for template in reversed(_setting_templates()):
        func = _list_option(template)(func)
    return func


# --- the command -------------------------------------------------------------------------------------

@click.command("sweep")
@setting_list_options
@click.option("--jobs", type=click.IntRange(min=1), default=max_threads(), show_default=True,
              help="Runs at the same time: processes of the local pool, or workers of the LocalCluster that "
                   "--backend dask starts (an existing cluster runs as many as its workers have threads). "
                   "Each run uses one BLAS thread (--threads).")
@click.option("--backend", type=click.Choice(BACKEND_NAMES), default="local", show_default=True,
              help="local: joblib's process pool on this machine. dask: a Dask cluster (--scheduler), or a "
                   "LocalCluster on loopback started for the sweep (needs the sweep extra).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="The scheduler of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (with --backend dask).")
@click.option("--out-dir", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="sweep",
              show_default=True, help="Folder for results.jsonl, sweep.json and each run's model (runs/<id>.npz).")
@click.option("--resume", is_flag=True,
              help="Finish the sweep in --out-dir: the runs missing from results.jsonl run, and so do runs that "
                   "failed for a reason outside the run (a lost worker, a lock another process held, an "
                   "unwritable folder, a failed download); a run that failed on its own (diverged) is not "
                   "retried. Settings given here must match its grid.")
@data_options
@quiet_option
@json_option('Print {"runs": [...], "best": {...}} on stdout, best first, instead of the table.')
@click.pass_context
def command(ctx: click.Context, jobs: int, backend: str, scheduler: str | None, out_dir: Path, resume: bool,
            data_dir: Path, mirrors: tuple[str, ...], quiet: bool, as_json: bool, **settings) -> None:
    """Train every combination of the given settings and rank the runs by validation accuracy.

    Every setting of `mlknobs train` takes a comma-separated list here; a single value is a
    constant. Runs are ranked on a validation split of the training set (--val-size, 10000 by
    default here), never on the test set; the best run's test accuracy is shown beside its
    validation accuracy. Each finished run is appended to OUT_DIR/results.jsonl at once, so Ctrl-C
    loses no finished run, and --resume runs only the missing ones (and retries those that failed
    for a reason outside the run). A run that diverges is recorded as failed and the sweep goes on.

    \b
    Examples:
      mlknobs sweep --lr 0.1,0.5,1 --hidden-size 64,256 --seed 0,1 --epochs 3
      mlknobs sweep --lr 0.1,0.5,1 --hidden-size 64,256 --seed 0,1 --epochs 3 --resume
      mlknobs sweep --weight-decay 0,1e-5,1e-4 --jobs 2 --out-dir wd --json > wd.json
      mlknobs sweep --lr 0.2,0.5 --backend dask                       # a LocalCluster on this machine
      mlknobs sweep --lr 0.2,0.5 --backend dask --scheduler tcp://10.0.0.5:8786 --out-dir /shared/sweep
      mlknobs plot sweep --sweep sweep --out sweep.png
    """
    from mlknobs.training.sweep import Grid, SweepData, sweep

    if scheduler is not None and backend != "dask":
        raise click.UsageError("--scheduler is the address of a Dask cluster: add --backend dask")
    grid = None if resume else Grid.of(settings)
    display = _Display(quiet)
    try:
        result = sweep(grid, out_dir, data=SweepData(data_dir, mirrors, progress_for(quiet)), backend=backend,
                       jobs=jobs, scheduler=scheduler, resume=resume,
                       given=given_settings(ctx, settings) if resume else None, callback=display)
    finally:
        display.close()

    ranked, best = result.ranked, result.best
    if as_json:
        echo_json({"runs": ranked, "best": best})
    else:
        for line in table(ranked, result.grid.varying, ctx.command):
            say(line)
        if best is not None:
            say(f"best: {printable(best['run'])}  validation accuracy {_percent(best['val_accuracy'])}, test "
                f"accuracy {_percent(best['test_accuracy'])}  model {printable(str(best['model']))}")
    retryable = sum(r["status"] != "ok" and r.get("retryable", False) for r in ranked)
    if retryable:
        note(f"{retryable} run{'s' if retryable != 1 else ''} failed for a reason outside the run; "
             f"mlknobs sweep --resume --out-dir {out_dir} retries them")
    if best is None:
        note(f"Error: none of the {len(ranked)} runs finished; see the error of each in "
             f"{out_dir / 'results.jsonl'}")
        sys.exit(EXIT_FAILED)


def _percent(value) -> str:
    return f"{value * 100:.2f} %" if isinstance(value, (int, float)) else "-"


def table(ranked: list[dict], varying: tuple[str, ...], command: click.Command) -> list[str]:
    """The runs best first, one line each: the swept settings, validation and test results, seconds."""
    headers = ["rank", "run", *(option_name(command, name).lstrip("-") for name in varying),
               "val acc", "val loss", "test acc", "seconds"]
    rows = []
    for position, record in enumerate(ranked, 1):
        ok = record["status"] == "ok"
        settings = [_cell(record["settings"].get(name)) for name in varying]
        if ok:
            rows.append([str(position), printable(record["run"]), *settings, _percent(record["val_accuracy"]),
                         f"{record['val_loss']:.4f}" if record.get("val_loss") is not None else "-",
                         _percent(record["test_accuracy"]), f"{record['seconds']:.1f}"])
        else:
            retried = " (--resume retries it)" if record.get("retryable") else ""
            rows.append(["-", printable(record["run"]), *settings, "failed", "", "", f"{record['seconds']:.1f}",
                         printable(str(record.get("error", ""))) + retried])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    right = {0, *range(len(headers) - 4, len(headers))}
    lines = []
    for row in [headers, *rows]:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells + row[len(headers):]).rstrip())
    return lines


def _cell(value) -> str:
    return printable(value_text(value))


class _Display:
    """The sweep callback: a bar over the runs (stderr, on a terminal) and a line per finished run."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def __call__(self, progress) -> None:
        if self.quiet:
            return
        if progress.event == "start":
            from tqdm import tqdm

            self.bar = tqdm(total=progress.total, initial=progress.done, desc="sweep", unit="run", file=sys.stderr,
                            dynamic_ncols=True, disable=None)
            if progress.done:
                self._line(f"{progress.done} of {progress.total} runs were recorded before; running the others")
        elif progress.event == "run":
            record = progress.record
            run = f"run {progress.done}/{progress.total} {printable(record['run'])}"
            if record["status"] == "ok":
                line = f"{run}: validation accuracy {_percent(record['val_accuracy'])} ({record['seconds']:.1f} s)"
            else:
                line = f"{run} failed: {printable(str(record['error']))}"
            self._line(line)
            if self.bar is not None:
                self.bar.update()

    def _line(self, text: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text, file=self.bar.fp)
        else:
            note(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""mlknobs gradcheck: backprop against central differences for every knob of a small network."""

from __future__ import annotations

import sys

import click

from mlknobs.cli.options import finite, json_option
from mlknobs.cli.output import echo_json, say
from mlknobs.config import LOSS_NAMES, MAX_DROPOUT
from mlknobs.lesson_settings import (
    DEFAULT_H,
    DEFAULT_TOLERANCE,
    GRADCHECK_BATCH_SIZE,
    GRADCHECK_HIDDEN_SIZE,
    GRADCHECK_LOSS,
    GRADCHECK_SEED,
    MAX_EPS,
    MAX_GRADCHECK_BATCH_SIZE,
    MAX_GRADCHECK_HIDDEN_SIZE,
    MAX_SEED,
    MAX_TOLERANCE,
)


@click.command("gradcheck")
@click.option("--loss", type=click.Choice(LOSS_NAMES), default=GRADCHECK_LOSS, show_default=True,
              help="Which loss to differentiate.")
@click.option("--hidden-size", type=click.IntRange(1, MAX_GRADCHECK_HIDDEN_SIZE), default=GRADCHECK_HIDDEN_SIZE,
              show_default=True, help="Hidden units of the small test network.")
@click.option("--batch-size", type=click.IntRange(1, MAX_GRADCHECK_BATCH_SIZE), default=GRADCHECK_BATCH_SIZE,
              show_default=True, help="Random samples in the batch.")
@click.option("--eps", callback=finite, type=click.FloatRange(min=0, max=MAX_EPS, min_open=True), default=DEFAULT_H,
              show_default=True, help="The nudge h for the central difference (L(w+h) - L(w-h)) / 2h.")
@click.option("--tol", "tolerance", callback=finite, type=click.FloatRange(min=0, max=MAX_TOLERANCE, min_open=True),
              default=DEFAULT_TOLERANCE, show_default=True, help="Largest acceptable relative error (exit 1 above it).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=GRADCHECK_SEED, show_default=True,
              help="Seed for the network and batch.")
@click.option("--dropout", callback=finite, type=click.FloatRange(0, MAX_DROPOUT), default=0.0, show_default=True,
              help="Check the backward pass through one fixed dropout mask of this rate.")
@json_option("Print the result as one JSON object.")
def command(loss, hidden_size, batch_size, eps, tolerance, seed, dropout, as_json) -> None:
    """Check backprop against nudging every knob by a tiny h (float64, central differences).

    \b
    Examples:
      mlknobs gradcheck
      mlknobs gradcheck --loss mse --hidden-size 32 --json
      mlknobs gradcheck --dropout 0.5
    """
    from mlknobs.nn.gradcheck import gradcheck

    result = gradcheck(loss, hidden_size, batch_size, eps, seed, tolerance, dropout=dropout)
    if as_json:
        echo_json({"loss": result.loss, "hidden_size": hidden_size, "batch_size": batch_size, "eps": eps,
                   "dropout": dropout,
                   "tolerance": tolerance, "passed": result.passed,
                   "max_relative_error": result.max_relative_error, "knobs_checked": result.knobs_checked,
                   "samples": [vars(s) for s in result.samples]})
    else:
        mask = f", dropout {dropout:g} (one fixed mask)" if dropout else ""
        say(f"gradcheck: {loss} loss, 784 -> {hidden_size} -> 10, batch {batch_size}, h = {eps:g}, float64{mask}")
        say(f"  {'array':<6} {'knobs':>7}  {'max relative error':>18}")
        for name, err in result.max_relative_error.items():
            mark = "ok" if err <= tolerance else "FAIL"
            say(f"  {name:<6} {result.knobs_checked[name]:>7}  {err:>18.3e}  {mark}")
        say(f"  {'knob':<14} {'value':>11} {'numeric slope':>15} {'backprop slope':>15} {'rel. error':>10}")
        for s in result.samples:
            say(f"  {s.name:<14} {s.value:>11.5f} {s.numeric:>15.8f} {s.backprop:>15.8f} "
                f"{s.relative_error:>10.1e}")
        say("PASSED" if result.passed else f"FAILED: relative error above {tolerance:g}")
    if not result.passed:
        sys.exit(1)

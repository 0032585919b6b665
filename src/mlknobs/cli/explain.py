"""mlknobs explain: one digit through the network and one step of gradient descent, every number shown."""

from __future__ import annotations

from pathlib import Path

import click

from mlknobs.cli.options import data_options, finite, json_option, model_option
from mlknobs.cli.output import echo_json, printable, say, shaded_rows
from mlknobs.cli.paths import refuse_output_over_input
from mlknobs.config import DATASET_NAMES, DEFAULTS, INPUT_SCALING_NAMES, LOSS_NAMES, MAX_HIDDEN_SIZE
from mlknobs.lesson_settings import DEFAULT_H, MAX_H, MAX_STEP_RATE

FRESH_ONLY = ("hidden_size", "seed", "loss", "dataset", "input_scaling", "init_scale")   # describe a fresh network
FRESH = "a fresh network"


@click.command("explain")
@model_option
@click.option("--fresh-network", is_flag=True,
              help="Explain an untrained network (the knobs `mlknobs train` starts from with the same "
                   "--hidden-size and --seed) instead of --model: a learner's first step, where slopes are large.")
@click.argument("picture", required=False, metavar="[PICTURE]")
@click.option("--index", type=click.IntRange(min=0), default=None,
              help="Which test digit of the model's dataset to explain  [default: 0].")
@click.option("--label", type=click.IntRange(0, 9), default=None,
              help="The right answer for PICTURE (the loss needs it).")
@click.option("--knob", "knob_name", metavar="NAME", default=None,
              help="The knob to follow back by the chain rule and to nudge: w1[pixel,unit], b1[unit], "
                   "w2[unit,output] or b2[output]  [default: the w1 knob with the largest slope].")
@click.option("--lr", "--learning-rate", "learning_rate", callback=finite, default=None,
              type=click.FloatRange(min=0, min_open=True, max=MAX_STEP_RATE),
              help="Learning rate of the one step  [default: the model's]. Smaller steps follow the "
                   "first-order prediction more closely.")
@click.option("--h", "h", callback=finite, type=click.FloatRange(min=0, min_open=True, max=MAX_H), default=DEFAULT_H,
              show_default=True, help="The nudge: the slope is also measured as (L(w+h) - L(w-h)) / 2h.")
@click.option("--hidden-size", type=click.IntRange(1, MAX_HIDDEN_SIZE), default=None,
              help=f"With --fresh-network: hidden units  [default: {DEFAULTS.hidden_size}].")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
              help=f"With --fresh-network: seed of the initial knobs  [default: {DEFAULTS.seed}].")
@click.option("--loss", type=click.Choice(LOSS_NAMES), default=None,
              help=f"With --fresh-network: the loss  [default: {DEFAULTS.loss}].")
@click.option("--dataset", type=click.Choice(DATASET_NAMES), default=None,
              help=f"With --fresh-network: the dataset  [default: {DEFAULTS.dataset}].")
@click.option("--input-scaling", type=click.Choice(INPUT_SCALING_NAMES), default=None,
              help=f"With --fresh-network: how pixels become inputs  [default: {DEFAULTS.input_scaling}].")
@click.option("--init-scale", callback=finite, type=click.FloatRange(0, 100, min_open=True), default=None,
              help=f"With --fresh-network: multiplies the Glorot range of the initial weights  "
                   f"[default: {DEFAULTS.init_scale:g}].")
@data_options
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.png", help="Also draw the step: the digit, the unit's weights and slopes, which "
                                       "pixels' knobs move, the probabilities before and after (plot extra).")
@json_option("Print one JSON object with every number.")
@click.pass_context
def command(ctx: click.Context, model_path: Path, fresh_network: bool, picture: str | None, index: int | None,
            label: int | None, knob_name: str | None, learning_rate: float | None, h: float,
            hidden_size: int | None, seed: int | None, loss: str | None, dataset: str | None,
            input_scaling: str | None, init_scale: float | None, data_dir: Path, mirrors: tuple[str, ...],
            plot_path: Path | None, as_json: bool) -> None:
    """Show one step of learning on one digit, with real numbers: the input, the forward pass, the
    loss, the chain rule back to one knob, the same slope found by nudging that knob by h, and one
    step of plain gradient descent (no momentum) on this digit, with the loss before and after.

    Every number is computed in float64 from the model's float32 knobs, so a learner can redo the
    sums on paper and the nudged slope agrees with backprop to many digits.

    \b
    Examples:
      mlknobs explain                              # test digit 0 through model.npz
      mlknobs explain --index 8 --knob b1[3]
      mlknobs explain --fresh-network --hidden-size 32 --seed 1
      mlknobs explain my-digit.png --label 7 --plot step.png
      mlknobs explain --lr 0.01 --json | jq .step
    """
    from mlknobs.nn.explain import explain_step, parse_knob

    _check_combinations(ctx, fresh_network, picture, index, label)
    if plot_path is not None:
        from mlknobs.errors import PlotError
        from mlknobs.files import check_writable
        from mlknobs.viz.plots import picture_format, require_matplotlib

        require_matplotlib()
        try:
            picture_format(plot_path)
        except PlotError as e:
            raise click.BadParameter(str(e), param_hint="'--plot'") from e
        check_writable(plot_path)
        refuse_output_over_input({"--plot": plot_path}, {"PICTURE": Path(picture) if picture not in (None, "-") else None,
                                                         "--model": None if fresh_network else model_path})

    if fresh_network:
        given = {name: ctx.params[name] for name in FRESH_ONLY if ctx.params[name] is not None}
        model = _fresh_model(given, data_dir, mirrors, as_json)
        source = FRESH
    else:
        from mlknobs.io.modelfile import load_model

        model = load_model(model_path)
        source = printable(str(model_path))
    knob = parse_knob(knob_name, model.params.hidden_size) if knob_name is not None else None
    pixels, label, where = _digit(model, picture, index, label, data_dir, mirrors, as_json)
    rate = learning_rate if learning_rate is not None else model.config.learning_rate
    explanation = explain_step(model.params, model.loss, model.scaling, pixels, label, knob, rate, h)

    if plot_path is not None:
        from mlknobs.viz.explain import explain_figure
        from mlknobs.viz.plots import picture_format, write_picture

        title = f"One step of learning: {source}, {where}, label {model.class_names[label]}"
        write_picture(plot_path, explain_figure(explanation, title, picture_format(plot_path)))
    if as_json:
        echo_json(_as_json(explanation, index if picture is None else None, picture, source, model))
        return
    for line in report_lines(explanation, source, where, model):
        say(line)
    if plot_path is not None:
        say(f"\nplot written to {printable(str(plot_path))}")


def _check_combinations(ctx: click.Context, fresh: bool, picture, index, label) -> None:
    if picture is not None and index is not None:
        raise click.UsageError("give either a PICTURE or --index, not both")
    if picture is not None and label is None:
        raise click.UsageError("a PICTURE needs --label Y: the loss measures how far the output is from the right answer")
    if picture is None and label is not None:
        raise click.UsageError("--label goes with a PICTURE (a test digit brings its own label)")
    if not fresh:
        given = [f"--{name.replace('_', '-')}" for name in FRESH_ONLY if ctx.params.get(name) is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} describe(s) a fresh network: add --fresh-network, "
                                   f"or drop them to explain --model")
    elif ctx.get_parameter_source("model_path") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("give either --model or --fresh-network, not both")


def _fresh_model(settings: dict, data_dir, mirrors, quiet):
    """The network `mlknobs train` would start from with these settings (training.step.fresh_model)."""
    from mlknobs.data.datasets import DATASETS
    from mlknobs.data.splits import load_split
    from mlknobs.training.step import fresh_model

    config = DEFAULTS.replace(**settings)
    train = load_split(config.dataset, "train", data_dir, mirrors, progress=False if quiet else None)
    return fresh_model(config, train, DATASETS[config.dataset].class_names)


def _digit(model, picture, index, label, data_dir, mirrors, quiet):
    """The uint8 input (784,), its label, and words for where it came from."""
    if picture is not None:
        from mlknobs.vision.images import read_input

        if label >= len(model.class_names):
            raise click.BadParameter(f"{label} is not a class of this model (0 to {len(model.class_names) - 1})",
                                     param_hint="'--label'")
        return read_input(picture, model.dataset), label, f"picture {printable(picture)}"
    from mlknobs.data.splits import load_split

    index = 0 if index is None else index
    test = load_split(model.dataset, "test", data_dir, mirrors, progress=False if quiet else None)
    if index >= len(test.labels):
        raise click.BadParameter(f"{index} is past the last test digit ({len(test.labels) - 1:,})",
                                 param_hint="'--index'")
    return test.images[index], int(test.labels[index]), f"test digit #{index}"


# --- words --------------------------------------------------------------------------------------------

def _n(value: float, digits: int = 6) -> str:
    return f"{value:.{digits}g}"


def report_lines(e, source: str, where: str, model) -> list[str]:
    """The explanation as text a learner can follow and redo on paper."""
    from mlknobs.nn.plain import LOSS_FORMULAS

    formulas, names = LOSS_FORMULAS[e.loss_name], model.class_names
    hidden = e.params.hidden_size
    knob = e.knob
    lines = [f"One step of learning: {source} (784 -> {hidden} -> 10, {e.loss_name}), {where}, "
             f"label {printable(names[e.label])}",
             "Numbers are computed in float64 from the model's float32 knobs.", "",
             "1. The input", *("   " + row for row in shaded_rows(e.pixels.reshape(28, 28)))]
    pixel = _pixel_of(knob.name)
    i = pixel if pixel is not None else int(e.pixels.argmax())
    lines += [f"   Each pixel p (0..255) becomes an input x = p * scale + offset = p * {_n(e.scale)} + ({_n(e.offset)}).",
              f"   e.g. pixel {i} (row {i // 28}, column {i % 28}) = {int(e.pixels[i])}  ->  "
              f"x[{i}] = {int(e.pixels[i])} * {_n(e.scale)} + ({_n(e.offset)}) = {_n(e.x[i])}", "",
              "2. Forward",
              f"   Hidden units that fire most (of {hidden}): z1[j] = x . w1[:, j] + b1[j],  a1[j] = sigmoid(z1[j]) "
              f"= 1 / (1 + e^-z1[j])"]
    for unit in e.hidden:
        slope = unit["a1"] * (1 - unit["a1"])
        saturated = f"   saturated: slope a1 (1 - a1) = {slope:.1e}, its w1 knobs barely learn" if slope < 1e-3 else ""
        lines.append(f"     unit {unit['unit']:>4}: z1 = {unit['dot']:.6g} + ({unit['bias']:.6g}) = {unit['z1']:.6g}"
                     f"   a1 = {unit['a1']:.6g}{saturated}")
    lines += [f"   Outputs: z2[k] = a1 . w2[:, k] + b2[k],  {formulas['output']}",
              f"     {'k':>2}  {'z2':>10}  {'a2':>10}  {'probability':>11}"]
    for k in range(10):
        mark = "   <- label" if k == e.label else ""
        lines.append(f"     {k:>2}  {e.z2[k]:>10.5f}  {e.outputs[k]:>10.6f}  {e.probabilities[k] * 100:>9.2f} %{mark}")
    lines += [f"   {formulas['loss']} = {_n(e.loss, 8)}", "",
              f"3. Backward, by the chain rule, to {knob.name} (its value: {_n(knob.value)})"]
    for link in knob.chain:
        lines.append(f"   {link.formula}")
        if link.name == "dLoss/dz2":
            lines.append("     " + "  ".join(f"{t['k']}: {t['dz2']:.4g}" for t in link.terms))
        elif link.terms:
            for t in link.terms:
                lines.append(f"     k={t['k']}: ({t['dz2']:.6g}) * ({t['w2']:.6g}) = {t['product']:.6g}")
            lines.append(f"     sum = {_n(link.value)}")
        else:
            lines.append(f"     = {link.numbers} = {_n(link.value)}")
    rel = knob.relative_difference
    lines += ["", f"4. The nudge (no calculus): move {knob.name} by h = {knob.h:g} and watch the loss",
              f"   L(w + h) = {knob.loss_plus:.12g}", f"   L(w - h) = {knob.loss_minus:.12g}",
              f"   (L(w + h) - L(w - h)) / 2h = {knob.nudge_slope:.10g}",
              f"   backprop slope             = {knob.backprop_slope:.10g}",
              f"   relative difference {rel:.1e}" + (" (they agree)" if rel < 1e-6 else
                                                    " (try another --h: too small hits round-off, too big curvature)"),
              ""]
    s = e.step
    change = s.loss_after - s.loss_before
    lines += [f"5. The step: every knob w <- w - lr * dLoss/dw with lr = {s.learning_rate:g} "
              f"(plain gradient descent on this digit alone: no momentum, no weight decay)",
              f"   loss            {_n(s.loss_before)} -> {_n(s.loss_after)}   (change {_n(change, 4)})",
              f"   first-order prediction: -lr * (sum of all {e.slopes.flat.size:,} squared slopes) = "
              f"{_n(s.predicted_change, 4)}" + _prediction_note(change, s.predicted_change),
              f"   P(label {printable(names[e.label])})  {s.label_probability_before * 100:.2f} % -> "
              f"{s.label_probability_after * 100:.2f} %", "",
              "6. The knobs this digit turns most (largest |slope|; each moves by -lr * slope)"]
    for name, slope in e.top_knobs:
        lines.append(f"   {name:<12} slope {slope:>11.4g}   moves by {-s.learning_rate * slope:>11.4g}")
    return lines


def _prediction_note(change: float, predicted: float) -> str:
    if predicted == 0:
        return ""
    ratio = change / predicted
    if 0.8 <= ratio <= 1.25:
        return "  (close: the step is small enough for the slope to describe it)"
    return "  (far off: the step is too big for a straight-line view; try a smaller --lr)"


def _pixel_of(knob_name: str) -> int | None:
    if knob_name.startswith("w1["):
        return int(knob_name[3:].split(",")[0])
    return None


def _as_json(e, index, picture, source, model) -> dict:
    knob, s = e.knob, e.step
    return {
        "index": index, "picture": picture, "model": None if source == FRESH else source,
        "fresh_network": source == FRESH, "label": e.label,
        "label_name": model.class_names[e.label], "loss_name": e.loss_name, "loss": e.loss,
        "input": {"scale": e.scale, "offset": e.offset},
        "outputs": e.outputs.tolist(), "probabilities": e.probabilities.tolist(), "z2": e.z2.tolist(),
        "dz2": e.dz2.tolist(), "hidden": e.hidden,
        "knob": {"name": knob.name, "value": knob.value, "backprop_slope": knob.backprop_slope,
                 "nudge_slope": knob.nudge_slope, "h": knob.h, "relative_difference": knob.relative_difference,
                 "loss_plus": knob.loss_plus, "loss_minus": knob.loss_minus,
                 "chain": [{"name": c.name, "formula": c.formula, "value": c.value, "terms": c.terms,
                            "numbers": c.numbers}
                           for c in knob.chain]},
        "step": {"learning_rate": s.learning_rate, "loss_before": s.loss_before, "loss_after": s.loss_after,
                 "predicted_change": s.predicted_change, "label_probability_before": s.label_probability_before,
                 "label_probability_after": s.label_probability_after,
                 "probabilities_after": s.probabilities_after.tolist()},
        "top_knobs": [{"name": name, "slope": slope} for name, slope in e.top_knobs],
    }

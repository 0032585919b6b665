"""`mlknobs plot history A.npz B.npz ...`: several runs' curves on shared axes, named by what differs.

The loss and accuracy per epoch of each model, and, for models trained with `--log-every` (or the
curve a diverged run left in <out>.diverged.json), the batch loss at every logged step: what
happens within an epoch, and where a run blew up.
"""

from __future__ import annotations

from mlknobs.errors import NoStepCurves, PlotError
from mlknobs.nn.model import Model
from mlknobs.viz.figures import matplotlib_parts, render

INCHES_PER_PANEL = (5.0, 4.4)
SHOWN_SETTINGS = 4          # a legend entry names at most this many differing settings
RECORDING_ONLY = ("threads", "log_every")      # settings that do not change what a run learns


def differing_settings(models: list[Model]) -> list[str]:
    """The settings whose values are not the same in every model, in TrainConfig's order."""
    settings = [model.config.to_dict() for model in models]
    return [name for name in settings[0]
            if name not in RECORDING_ONLY and len({repr(s[name]) for s in settings}) > 1]


def label_of(model: Model, name: str, differing: list[str]) -> str:
    shown = ", ".join(f"{setting}={getattr(model.config, setting):g}" if isinstance(getattr(model.config, setting), float)
                      else f"{setting}={getattr(model.config, setting)}" for setting in differing[:SHOWN_SETTINGS])
    label = shown or name
    if model.results.get("diverged"):
        label += " (diverged)"
    elif "test_accuracy" in model.results:
        label += f" (test {model.results['test_accuracy'] * 100:.1f} %)"
    return label


def histories_figure(models: list[Model], names: list[str], fmt: str = "png") -> bytes:
    """Loss per epoch, batch loss per logged step (when any model has step_losses), accuracy per epoch."""
    if not any(model.history or model.step_losses for model in models):
        raise PlotError(f"none of {', '.join(names)} has a curve to plot (no finished epoch, no logged step)")
    mpl = matplotlib_parts()
    with_steps = any(model.step_losses for model in models)
    panels = 3 if with_steps else 2
    fig = mpl.new_figure(INCHES_PER_PANEL[0] * panels, INCHES_PER_PANEL[1])
    axes = fig.subplots(1, panels)
    loss_ax, accuracy_ax = axes[0], axes[-1]
    differing = differing_settings(models)
    colors = mpl.colormaps["tab10"]
    for number, (model, name) in enumerate(zip(models, names)):
        color = colors(number % 10)
        label = label_of(model, name, differing)
        epochs = [entry["epoch"] for entry in model.history]
        if epochs:
            loss_ax.plot(epochs, [e["train_loss"] for e in model.history], "o-", color=color, label=label)
            accuracy_ax.plot(epochs, [e["train_accuracy"] * 100 for e in model.history], "o-", color=color)
            if all("val_loss" in e for e in model.history):
                loss_ax.plot(epochs, [e["val_loss"] for e in model.history], "s--", color=color, alpha=0.7)
                accuracy_ax.plot(epochs, [e["val_accuracy"] * 100 for e in model.history], "s--", color=color,
                                 alpha=0.7)
        if with_steps and model.step_losses:
            steps, losses = zip(*model.step_losses)
            axes[1].plot(steps, losses, "-", color=color, linewidth=1, label=None if epochs else label)
            if model.results.get("diverged"):
                axes[1].plot(steps[-1:], losses[-1:], "X", color=color, markersize=10)
        elif not epochs:
            loss_ax.plot([], [], color=color, label=label)
    loss_ax.set_title("training loss per epoch (dashed: validation)", fontsize=10)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_yscale("log")              # a diverged run's loss would flatten every other curve
    for ax in (loss_ax, accuracy_ax):
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True, min_n_ticks=1))
    accuracy_ax.set_title("training accuracy per epoch (dashed: validation)", fontsize=10)
    accuracy_ax.set_xlabel("epoch")
    accuracy_ax.set_ylabel("%")
    if with_steps:
        axes[1].set_title("batch loss at every logged step (X: where a run blew up)", fontsize=10)
        axes[1].set_xlabel("step (one batch)")
        axes[1].set_yscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
    handles, labels = loss_ax.get_legend_handles_labels()
    if with_steps:
        step_handles, step_labels = axes[1].get_legend_handles_labels()
        handles, labels = handles + step_handles, labels + step_labels
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3), fontsize=8, frameon=False)
    what = ", ".join(differing[:SHOWN_SETTINGS]) if differing else "the same settings"
    fig.suptitle(f"{len(models)} runs compared: they differ in {what}", fontsize=11)
    return render(fig, fmt)


def sweep_curves_figure(runs: list[dict], swept: dict[str, list], name: str, fmt: str = "png") -> bytes:
    """`plot sweep --curves`: every run's step curve (results.jsonl `step_losses`), failed runs
    included, dashed and ending in an X where they blew up; named by their swept settings."""
    drawn = [r for r in runs if r.get("step_losses")]
    if not drawn:
        raise NoStepCurves(name)
    mpl = matplotlib_parts()
    fig = mpl.new_figure(10.0, 5.6)
    ax = fig.subplots()
    colors = mpl.colormaps["tab10"]
    for number, record in enumerate(drawn):
        pairs = [(step, loss) for step, loss in record["step_losses"] if loss is not None and loss > 0]
        if not pairs:
            continue
        steps, losses = zip(*pairs)
        settings = record.get("settings", {})
        label = ", ".join(f"{k}={settings.get(k)}" for k in swept) or record.get("run", "?")
        failed = record.get("status") != "ok"
        label += " (failed)" if failed else (f" (val {record['val_accuracy'] * 100:.1f} %)"
                                             if record.get("val_accuracy") is not None else "")
        color = colors(number % 10)
        ax.plot(steps, losses, "--" if failed else "-", color=color, linewidth=1.2, label=label)
        if failed:
            ax.plot(steps[-1:], losses[-1:], "X", color=color, markersize=10)
    ax.set_yscale("log")
    ax.set_xlabel("step (one batch)")
    ax.set_ylabel("batch loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Step curves of the sweep {name} (dashed, X: a failed run up to where it blew up)", fontsize=10.5)
    return render(fig, fmt)

"""The picture of a learning-rate range test: smoothed loss against learning rate, the suggestion marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlknobs.errors import PlotError
from mlknobs.viz.figures import matplotlib_parts, render

if TYPE_CHECKING:
    from mlknobs.training.lr_find import LrFindResult

LR_FIND_INCHES = (8.0, 5.0)


def lr_find_figure(result: LrFindResult, fmt: str = "png", rule_words: str | None = None) -> bytes:
    """Smoothed loss (linear axis) against learning rate (log axis), with the suggested rate marked."""
    if not result.losses:
        raise PlotError("the range test recorded no loss: nothing to draw")
    mpl = matplotlib_parts()
    fig = mpl.new_figure(*LR_FIND_INCHES)
    ax = fig.subplots()
    lrs, losses = result.learning_rates, result.losses
    ax.plot(lrs, losses, "-", color="tab:blue", label="smoothed training loss (moving average, beta 0.98)")
    ax.set_xscale("log")
    lowest = min(range(len(losses)), key=losses.__getitem__)
    ax.plot([lrs[lowest]], [losses[lowest]], "o", color="tab:gray", label=f"lowest loss, at lr {lrs[lowest]:.3g}")
    ax.axvline(result.suggested_lr, color="tab:red", linestyle="--",
               label=f"suggested lr {result.suggested_lr:.3g} ({rule_words or result.rule})")
    if result.stopped_at is not None:
        ax.axvline(result.stopped_at, color="tab:orange", linestyle=":", label=f"stopped: loss blew up at lr "
                                                                                 f"{result.stopped_at:.3g}")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"Learning-rate range test: {len(lrs)} batches, lr {lrs[0]:.2g} to {lrs[-1]:.2g}")
    return render(fig, fmt)

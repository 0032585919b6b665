"""The picture of one step of learning (`mlknobs explain --plot`): what the digit does to the knobs.

Top row: the digit as the network sees it; the chosen hidden unit's 784 weights as a 28x28 tile;
the slopes of those same weights for this digit (the step moves each by -lr * slope); and how hard
the digit turns each pixel's knobs, summed over all hidden units. Bottom: the ten probabilities
before and after the step, and the numbers of the nudge and of the step.
"""

from __future__ import annotations

import numpy as np

from mlknobs.nn.explain import Explanation
from mlknobs.viz.figures import matplotlib_parts, render

FIGURE_INCHES = (13.0, 7.6)


def explain_figure(e: Explanation, title: str, fmt: str = "png") -> bytes:
    """The step as a picture (bytes in `fmt`)."""
    mpl = matplotlib_parts()
    fig = mpl.new_figure(*FIGURE_INCHES)
    fig.suptitle(title, fontsize=11)
    grid = fig.add_gridspec(2, 4, height_ratios=(1.0, 0.8))
    unit = _unit_of(e)
    w1 = e.params.w1[:, unit]                               # (784,) the unit's weights
    dw1 = e.slopes.w1[:, unit]                              # (784,) their slopes for this digit
    turned = np.abs(e.slopes.w1).sum(axis=1)                # (784,) sum_j |dLoss/dw1[i, j]|

    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(e.pixels.reshape(28, 28), cmap="gray", vmin=0, vmax=255)
    ax.set_axis_off()
    pixel = _pixel_of(e)
    if pixel is None:
        ax.set_title(f"the digit (label {e.label})\nas the network sees it", fontsize=9)
    else:
        ax.plot([pixel % 28], [pixel // 28], marker="s", markersize=9, markerfacecolor="none",
                markeredgecolor="#e67e22", markeredgewidth=2)
        ax.set_title(f"the digit (label {e.label}); orange:\npixel {pixel}, the input of {e.knob.name}", fontsize=9)
    _tile(fig, grid[0, 1], w1, f"unit {unit}'s weights w1[:, {unit}]\n(red +, blue -)", "weight", mpl)
    _tile(fig, grid[0, 2], dw1, f"their slopes dLoss/dw1[:, {unit}]\n(each moves by -lr x slope)", "slope", mpl)
    ax = fig.add_subplot(grid[0, 3])
    image = ax.imshow(turned.reshape(28, 28), cmap="magma", vmin=0)
    ax.set_title("how hard this digit turns each\npixel's knobs (sum over units of |slope|)", fontsize=9)
    ax.set_axis_off()
    background = float(e.x[e.pixels == 0][0]) if (e.pixels == 0).any() else None
    if background is not None and background != 0:
        ax.text(0.5, -0.06, f"blank pixels move too: their input x is {background:.3g}, not 0",
                transform=ax.transAxes, ha="center", va="top", fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)

    ax = fig.add_subplot(grid[1, 0:2])
    ks = np.arange(10)
    ax.bar(ks - 0.2, e.probabilities * 100, width=0.4, label="before the step", color="#9aa5b1")
    ax.bar(ks + 0.2, e.step.probabilities_after * 100, width=0.4, label="after one step", color="#2b7bba")
    ax.set_xticks(ks)
    ax.set_ylim(0, 105)
    ax.set_ylabel("probability (%)")
    ax.set_xlabel(f"class (the right answer is {e.label})")
    ax.set_title(f"P(label) {e.step.label_probability_before * 100:.1f} % -> "
                 f"{e.step.label_probability_after * 100:.1f} % after one step at lr {e.step.learning_rate:g}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    for k, (before, after) in enumerate(zip(e.probabilities, e.step.probabilities_after)):
        if k == e.label or max(before, after) > 0.05:
            ax.text(k, max(before, after) * 100 + 1.5, f"{before * 100:.1f}→{after * 100:.1f}", ha="center",
                    fontsize=7)

    ax = fig.add_subplot(grid[1, 2:4])
    ax.set_axis_off()
    knob, s = e.knob, e.step
    text = "\n".join([
        f"loss ({e.loss_name}) {s.loss_before:.5g} -> {s.loss_after:.5g}",
        f"first-order prediction of the change: {s.predicted_change:.4g}",
        f"real change: {s.loss_after - s.loss_before:.4g}",
        "",
        f"knob {knob.name} = {knob.value:.5g}",
        f"backprop slope          {knob.backprop_slope:.8g}",
        f"nudge (L(w+h) - L(w-h))/2h {knob.nudge_slope:.8g}  (h = {knob.h:g})",
        f"relative difference     {knob.relative_difference:.1e}",
        "",
        "knobs this digit turns most:",
        *(f"  {name:<11} slope {slope:.4g}" for name, slope in e.top_knobs[:4]),
    ])
    ax.text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=9, transform=ax.transAxes)
    return render(fig, fmt)


def _unit_of(e: Explanation) -> int:
    """The hidden unit the chain rule went through, or (for an output-layer bias) the one that fires most."""
    knob = e.knob.knob
    if knob.array == "w1":
        return knob.index[1]
    if knob.array in ("b1", "w2"):
        return knob.index[0]
    return e.hidden[0]["unit"]


def _pixel_of(e: Explanation) -> int | None:
    knob = e.knob.knob
    return knob.index[0] if knob.array == "w1" else None


def _tile(fig, cell, values: np.ndarray, title: str, label: str, mpl) -> None:
    ax = fig.add_subplot(cell)
    limit = float(np.abs(values).max()) or 1.0
    image = ax.imshow(values.reshape(28, 28), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    fig.colorbar(image, ax=ax, shrink=0.8, label=label)

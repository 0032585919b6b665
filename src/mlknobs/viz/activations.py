"""`mlknobs plot activations`: the sigmoid's saturation, seen on a model's own hidden units.

The sigmoid a = 1 / (1 + e^-z) learns through its slope a (1 - a): 0.25 in the middle, nearly 0
on its flat ends. A hidden unit whose z1 = x . w1[:, j] + b1[j] sits far out on an end passes almost
no gradient back, so its incoming knobs stop learning. Too large a learning rate, raw pixels or
too large initial weights push the mass of z1 out there; this picture shows where it is.
"""

from __future__ import annotations

import numpy as np

from mlknobs.data.splits import Split
from mlknobs.errors import PlotError
from mlknobs.nn.model import Model
from mlknobs.viz.figures import matplotlib_parts, render

# A unit's activation is "saturated" where the sigmoid's slope a (1 - a) is below this: |z| > 4.6,
# a = 0.01 or 0.99. The slope is then under 4 % of its peak 0.25, so its knobs learn 25x slower.
SATURATED_SLOPE = 0.01
SATURATED_Z = float(np.log((1 + np.sqrt(1 - 4 * SATURATED_SLOPE)) / (1 - np.sqrt(1 - 4 * SATURATED_SLOPE))))
MOSTLY = 0.9                   # a unit saturated on this share of the digits is counted as a saturated unit
DIGITS = 2000                  # test digits the distribution is measured on
INCHES = (11.0, 4.6)


def hidden_z1(model: Model, pixels: np.ndarray, chunk: int = 500) -> np.ndarray:
    """z1 = x . w1 + b1 (N, H) of the hidden units for uint8 images (N, 784), x as the model scales them."""
    p, scaling = model.params, model.scaling
    z1 = np.empty((len(pixels), p.hidden_size), np.float64)
    for start in range(0, len(pixels), chunk):
        x = pixels[start:start + chunk].astype(np.float64) * scaling.scale + scaling.offset   # (n, 784)
        z1[start:start + len(x)] = x @ p.w1 + p.b1                                           # (n, H)
    return z1


def saturation(z1: np.ndarray) -> tuple[float, float]:
    """(share of all unit-digit activations saturated, share of units saturated on MOSTLY of the digits)."""
    saturated = np.abs(z1) > SATURATED_Z                                  # (N, H)
    return float(saturated.mean()), float((saturated.mean(axis=0) >= MOSTLY).mean())


def activations_figure(model: Model, name: str, test: Split, fmt: str = "png") -> bytes:
    """Left: the sigmoid and its slope, with the distribution of z1 over test digits laid on it and
    the flat ends shaded. Right: each unit's share of saturated activations, sorted."""
    if test is None or not len(test.images):
        raise PlotError("plot activations needs test digits")
    z1 = hidden_z1(model, test.images[:DIGITS])
    share, unit_share = saturation(z1)
    a1 = 1 / (1 + np.exp(-np.clip(z1, -500, 500)))
    mean_slope = float(np.mean(a1 * (1 - a1)))
    mpl = matplotlib_parts()
    fig = mpl.new_figure(*INCHES)
    curve_ax, units_ax = fig.subplots(1, 2, width_ratios=(1.6, 1))

    reach = max(8.0, min(float(np.percentile(np.abs(z1), 99.5)) * 1.1, 200.0))
    z = np.linspace(-reach, reach, 801)
    a = 1 / (1 + np.exp(-z))
    for side in (-1, 1):
        curve_ax.axvspan(*sorted((side * SATURATED_Z, side * reach)), color="tab:red", alpha=0.06, linewidth=0)
    counts_ax = curve_ax.twinx()
    counts_ax.hist(np.clip(z1.ravel(), -reach, reach), bins=120, range=(-reach, reach), color="tab:purple",
                   alpha=0.35, density=True)
    counts_ax.set_yticks([])
    counts_ax.set_ylabel(f"how often z1 takes a value ({len(z1):,} test digits x {z1.shape[1]} units)",
                         fontsize=8, color="dimgray")
    curve_ax.set_zorder(counts_ax.get_zorder() + 1)
    curve_ax.patch.set_visible(False)
    curve_ax.plot(z, a, color="tab:blue", linewidth=2, label="sigmoid a = 1 / (1 + e^-z)")
    curve_ax.plot(z, 4 * a * (1 - a), color="tab:green", linewidth=1.5, linestyle="--",
                  label="its slope a(1-a), x4 (0.25 at z = 0)")
    curve_ax.set_xlim(-reach, reach)
    curve_ax.set_ylim(-0.02, 1.02)
    beyond = float(np.mean(np.abs(z1) > reach))
    curve_ax.set_xlabel("z1 = x . w1[:, j] + b1[j]" + (f"   ({beyond:.0%} beyond the edges, drawn at them)"
                                                      if beyond >= 0.005 else ""))
    curve_ax.set_ylabel("a1")
    curve_ax.grid(alpha=0.3)
    curve_ax.legend(loc="upper left", fontsize=8)
    curve_ax.text(0.99, 0.03, f"shaded: slope < {SATURATED_SLOPE:g} (|z| > {SATURATED_Z:.1f}),\nlearning "
                  f"{0.25 / SATURATED_SLOPE:.0f}x slower or worse\n{share:.1%} of activations are there;\n"
                  f"mean slope {mean_slope:.3f} (0.25 at best)",
                  transform=curve_ax.transAxes, ha="right", va="bottom", fontsize=8.5,
                  bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "tab:red"})
    curve_ax.set_title("where the hidden units work on the sigmoid", fontsize=10)

    per_unit = np.sort((np.abs(z1) > SATURATED_Z).mean(axis=0))[::-1]    # (H,) largest first
    units_ax.bar(np.arange(len(per_unit)), per_unit * 100, width=1.0,
                 color=np.where(per_unit >= MOSTLY, "tab:red", "tab:gray"))
    units_ax.axhline(MOSTLY * 100, color="tab:red", linestyle=":", linewidth=1)
    units_ax.set_ylim(0, 100)
    units_ax.set_xlim(-0.5, len(per_unit) - 0.5)
    units_ax.set_xlabel("hidden units, most saturated first")
    units_ax.set_ylabel("% of digits on which the unit is saturated")
    units_ax.set_title(f"{unit_share:.0%} of units saturated on >= {MOSTLY:.0%} of digits (red):\n"
                       f"their incoming knobs barely learn", fontsize=10)
    units_ax.grid(alpha=0.3, axis="y")
    config = model.config
    fig.suptitle(f"The sigmoid's saturation in {name}  (H={config.hidden_size}, lr {config.learning_rate:g}, "
                 f"inputs {config.input_scaling}, init scale {config.init_scale:g}, "
                 f"test accuracy {model.results.get('test_accuracy', float('nan')) * 100:.1f} %)", fontsize=10.5)
    return render(fig, fmt)

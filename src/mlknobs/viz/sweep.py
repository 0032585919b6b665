"""The picture of a sweep: validation accuracy against each swept setting (`mlknobs plot sweep`)."""

from __future__ import annotations

import math

import numpy as np

from mlknobs.errors import PlotError
from mlknobs.text import one_line, value_text
from mlknobs.viz.figures import TITLE_NAME_CHARS, matplotlib_parts, render

SWEEP_PANEL_INCHES = (4.6, 4.0)
SWEEP_HEATMAP_INCHES = (8.0, 6.0)
MAX_SWEEP_PANELS_PER_ROW = 3


def _label(setting: str) -> str:
    return setting.replace("_", " ")


def sweep_figure(runs: list[dict], swept: dict[str, list], name: str, fmt: str = "png") -> bytes:
    """Validation accuracy of a sweep's runs against each swept setting.

    runs: results.jsonl records (settings, status, val_accuracy); swept: each setting with more
    than one value -> its values in grid order. Exactly two swept settings give a heatmap of every
    combination; otherwise one panel per swept setting, a line per value of another swept setting
    (not the seed, which is averaged like every setting not on the panel).
    """
    finished = [r for r in runs if r.get("status") == "ok" and r.get("val_accuracy") is not None]
    if not swept:
        raise PlotError(f"{name} sweeps no setting (every setting has one value): nothing to plot against")
    if not finished:
        raise PlotError(f"{name} has no finished run to plot")
    mpl = matplotlib_parts()
    failed = sum(r.get("status") == "failed" for r in runs)
    best = max(finished, key=lambda r: (r["val_accuracy"], -(r.get("val_loss") or 0.0)))
    title = (f"Sweep {one_line(name, TITLE_NAME_CHARS, keep_end=True)}: validation accuracy of {len(finished)} runs"
             + (f" ({failed} failed)" if failed else "")
             + f"\nbest {best['run']}: validation {best['val_accuracy'] * 100:.2f} %")
    if len(swept) == 2:
        fig = _sweep_heatmap(mpl, runs, swept)
    else:
        fig = _sweep_lines(mpl, finished, swept)
    fig.suptitle(title, fontsize=10)
    return render(fig, fmt)


def _sweep_heatmap(mpl, runs: list[dict], swept: dict[str, list]):
    """Rows: the first swept setting's values; columns: the second's; a cell per run, its accuracy written in."""
    (rows_setting, row_values), (columns_setting, column_values) = swept.items()
    accuracy = np.full((len(row_values), len(column_values)), np.nan)       # (R, C) percent; NaN: no result
    failed = np.zeros(accuracy.shape, bool)
    for record in runs:
        settings = record["settings"]
        i, j = row_values.index(settings[rows_setting]), column_values.index(settings[columns_setting])
        if record.get("status") == "ok" and record.get("val_accuracy") is not None:
            accuracy[i, j] = record["val_accuracy"] * 100
        elif record.get("status") == "failed":
            failed[i, j] = True
    fig = mpl.new_figure(*SWEEP_HEATMAP_INCHES)
    ax = fig.subplots()
    shown = np.ma.masked_invalid(accuracy)
    image = ax.imshow(shown, cmap=mpl.colormaps["viridis"].with_extremes(bad="#dddddd"), aspect="auto")
    low, high = float(np.nanmin(accuracy)), float(np.nanmax(accuracy))
    for (i, j), value in np.ndenumerate(accuracy):
        text = "failed" if failed[i, j] else "" if np.isnan(value) else f"{value:.2f}"
        bright = not np.isnan(value) and value > low + 0.6 * (high - low)
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if bright or np.isnan(value) else "white",
                fontweight="bold" if value == high else "normal")
    ax.set_xticks(range(len(column_values)), [value_text(v) for v in column_values])
    ax.set_yticks(range(len(row_values)), [value_text(v) for v in row_values])
    ax.set_xlabel(_label(columns_setting))
    ax.set_ylabel(_label(rows_setting))
    fig.colorbar(image, ax=ax, shrink=0.8, label="validation accuracy (%)")
    return fig


def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _sweep_lines(mpl, finished: list[dict], swept: dict[str, list]):
    """One panel per swept setting: mean validation accuracy against its values, a line per value of another."""
    settings = list(swept)
    columns = min(len(settings), MAX_SWEEP_PANELS_PER_ROW)
    panel_rows = math.ceil(len(settings) / columns)
    fig = mpl.new_figure(SWEEP_PANEL_INCHES[0] * columns, SWEEP_PANEL_INCHES[1] * panel_rows + 0.6)
    axes = np.atleast_1d(fig.subplots(panel_rows, columns, squeeze=False)).ravel()
    for ax, setting in zip(axes, settings):
        values = swept[setting]
        others = [s for s in settings if s not in (setting, "seed")]
        group = others[0] if others else None
        numeric = _numeric(values)
        positions = values if numeric else list(range(len(values)))
        for line_value in (swept[group] if group else [None]):
            xs, ys = [], []
            for value, x in zip(values, positions):
                picked = [r["val_accuracy"] * 100 for r in finished if r["settings"][setting] == value
                          and (group is None or r["settings"][group] == line_value)]
                if picked:
                    xs.append(x)
                    ys.append(sum(picked) / len(picked))
            label = f"{_label(group)} {value_text(line_value)}" if group else None
            ax.plot(xs, ys, "o-", label=label)
        if numeric and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        if numeric:
            ax.set_xticks(values, [value_text(v) for v in values])
            ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        else:
            ax.set_xticks(positions, [value_text(v) for v in values])
        averaged = [s for s in settings if s != setting and s != group]
        ax.set_xlabel(_label(setting))
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"mean over {', '.join(map(_label, averaged))}" if averaged else "", fontsize=8)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=7)
    for ax in axes[len(settings):]:
        ax.set_axis_off()
    return fig

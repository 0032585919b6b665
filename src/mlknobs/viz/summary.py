"""A model as a compact HTML summary, for Jupyter (`Model._repr_html_`): what it is, how it was
trained, how well it does, what its first hidden units look for, and its learning curves.

No matplotlib: the weight tiles are a small palette PNG painted with NumPy and Pillow (as the GIF of
viz/snapshots.py is), inlined as a data URI, and the curves are inline SVG. Without Pillow the
summary is text only. Everything that comes from a file (class names, a parent's path) is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

from mlknobs.config import DEFAULTS
from mlknobs.nn.model import Model
from mlknobs.viz.snapshots import BACKGROUND, RAMP_LEVELS, diverging_palette
from mlknobs.viz.tiles import tile_grid

TILE_UNITS = 16          # hidden units shown as tiles
TILE_COLUMNS = 8
TILE_ZOOM = 2            # screen pixels per weight
TILE_GAP = 2
SHOWN_SETTINGS = ("epochs", "hidden_size", "batch_size", "learning_rate", "momentum", "schedule", "loss", "seed")
CURVE_SIZE = (250, 140)  # (width, height) of one SVG panel, in pixels
CURVE_MARGIN = (38, 10, 18, 32)   # left, right, top (the title), bottom
TRAIN_COLOUR, VAL_COLOUR, TEST_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"


def model_html(model: Model) -> str:
    """The summary as one self-contained HTML fragment."""
    e = html.escape
    hidden = model.params.hidden_size
    arch = model.architecture
    title = (f"mlknobs Model: 784 &rarr; {hidden} &rarr; 10 ({e(arch['hidden_activation'])} hidden, "
             f"{e(arch['output_activation'])} output), {e(model.loss)} loss, {e(model.dataset)}")
    parts = ['<div class="mlknobs-model" style="font-family: sans-serif; font-size: 13px; max-width: 760px">',
             f"<b>{title}</b>", f"<div>{_results_line(model)}</div>",
             f"<div style='color: #555'>settings: {e(_settings_line(model))}</div>"]
    if model.parent:
        parent = model.parent
        parts.append(f"<div style='color: #555'>started from {e(str(parent.get('path')))}</div>")
    tiles = _tiles_png(model)
    if tiles is not None:
        shown = min(hidden, TILE_UNITS)
        which = f"all {hidden} hidden units" if shown == hidden else f"the first {shown} of {hidden} hidden units"
        parts.append(f"<div style='margin-top: 6px'>input weights of {which} (each tile its own scale; red: a bright "
                     f"pixel turns the unit on, blue: off)</div>"
                     f"<img alt='weight tiles' src='data:image/png;base64,{base64.b64encode(tiles).decode()}'>")
    if model.history:
        parts.append("<div style='margin-top: 6px'>" + _curves_svg(model) + "</div>")
    parts.append("</div>")
    return "\n".join(parts)


def _results_line(model: Model) -> str:
    results, history = model.results, model.history
    if not history:
        return "untrained: no epoch yet"
    words = [f"{len(history)} epoch{'s' if len(history) != 1 else ''}"]
    if results.get("stopped_early"):
        words[0] += f" (stopped early, of {model.config.epochs})"
    if isinstance(results.get("test_accuracy"), (int, float)):
        words.append(f"<b>test accuracy {results['test_accuracy']:.2%}</b>")
    if isinstance(results.get("test_loss"), (int, float)):
        words.append(f"test loss {results['test_loss']:.4f}")
    if "val_accuracy" in history[-1]:
        words.append(f"validation accuracy {history[-1]['val_accuracy']:.2%}")
    if isinstance(results.get("seconds"), (int, float)):
        words.append(f"{results['seconds']:.1f} s of training")
    return ", ".join(words)


def _settings_line(model: Model) -> str:
    """The main settings, then any other that differs from the defaults."""
    config = model.config.to_dict()
    names = list(SHOWN_SETTINGS) + [name for name, value in config.items()
                                    if name not in SHOWN_SETTINGS and name != "dataset"
                                    and value != getattr(DEFAULTS, name, None)]
    return ", ".join(f"{name}={config[name]:g}" if isinstance(config[name], float) else f"{name}={config[name]}"
                     for name in names if name in config)


def _tiles_png(model: Model) -> bytes | None:
    """The first hidden units' input weights as 28x28 tiles in a blue-white-red PNG, or None without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return None
    w1 = model.params.w1                                          # (784, H)
    shown = min(w1.shape[1], TILE_UNITS)
    tiles = w1[:, :shown].T.reshape(shown, 28, 28).astype(np.float64)    # (U, 28, 28)
    limits = np.maximum(np.abs(tiles).max(axis=(1, 2)), np.finfo(np.float32).tiny)
    middle = (RAMP_LEVELS - 1) / 2
    levels = np.rint(np.clip(tiles / limits[:, None, None], -1, 1) * middle + middle).astype(np.uint8)
    levels = levels.repeat(TILE_ZOOM, axis=1).repeat(TILE_ZOOM, axis=2)
    side = 28 * TILE_ZOOM
    grid, _ = tile_grid(levels, min(TILE_COLUMNS, shown), (side + TILE_GAP, side + TILE_GAP), fill=BACKGROUND)
    grid = np.ascontiguousarray(grid[:-TILE_GAP, :-TILE_GAP])     # no gap after the last row and column
    image = Image.frombytes("P", (grid.shape[1], grid.shape[0]), grid.tobytes())
    image.putpalette(diverging_palette())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _curves_svg(model: Model) -> str:
    """Loss and accuracy per epoch (training, validation) and the test result, as two small SVG panels."""
    history, results = model.history, model.results
    panels, shown = [], {TRAIN_COLOUR: "training (mean over each epoch)"}
    for metric, title, factor in (("loss", f"loss ({model.loss})", 1.0), ("accuracy", "accuracy (%)", 100.0)):
        series = [(f"train_{metric}", TRAIN_COLOUR, "training")]
        if all(f"val_{metric}" in entry for entry in history):
            series.append((f"val_{metric}", VAL_COLOUR, "validation"))
            shown[VAL_COLOUR] = "validation (after each epoch)"
        lines = {key: [(entry["epoch"], entry[key] * factor) for entry in history if _finite(entry.get(key))]
                 for key, _, _ in series}
        test = results.get(f"test_{metric}")
        test_point = ((results.get("best_epoch") or history[-1]["epoch"], test * factor) if _finite(test) else None)
        if test_point is not None:
            shown[TEST_COLOUR] = "test (after training)"
        panels.append(_panel(title, [(lines[key], colour) for key, colour, _ in series], test_point))
    legend = " &nbsp; ".join(f"<span style='color: {colour}'>{'&#9675;' if colour == TEST_COLOUR else '&#9679;'}"
                             f"</span> {words}" for colour, words in shown.items())
    return "".join(panels) + f"<div style='color: #555'>{legend}</div>"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _panel(title: str, lines: list[tuple[list[tuple[float, float]], str]], test: tuple[float, float] | None) -> str:
    width, height = CURVE_SIZE
    left, right, top, bottom = CURVE_MARGIN
    points = [p for line, _ in lines for p in line] + ([test] if test else [])
    epochs = [x for x, _ in points] or [1]
    values = [y for _, y in points] or [0.0]
    x_low, x_high = min(epochs) - 0.5, max(epochs) + 0.5
    y_low, y_high = min(values), max(values)
    pad = (y_high - y_low) * 0.1 or abs(y_high) * 0.05 or 1.0
    y_low, y_high = y_low - pad, y_high + pad

    def sx(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * (width - left - right)

    def sy(y: float) -> float:
        return top + (y_high - y) / (y_high - y_low) * (height - top - bottom)

    shapes = [f"<rect x='{left}' y='{top}' width='{width - left - right}' height='{height - top - bottom}' "
              f"fill='none' stroke='#bbb'/>",
              f"<text x='{left}' y='{top - 5}' font-size='11'>{html.escape(title)}</text>"]
    for y in (y_high - pad, y_low + pad):
        shapes.append(f"<text x='{left - 3}' y='{sy(y) + 4:.1f}' font-size='10' text-anchor='end'>{y:.3g}</text>")
    first, last = min(epochs), max(epochs)
    ticks = range(first, last + 1) if last - first < 12 else sorted({first, (first + last) // 2, last})
    for x in ticks:
        shapes.append(f"<text x='{sx(x):.1f}' y='{height - 18}' font-size='10' text-anchor='middle'>{x:g}</text>")
    shapes.append(f"<text x='{(left + width - right) / 2:.1f}' y='{height - 4}' font-size='10' "
                  f"text-anchor='middle'>epoch</text>")
    for line, colour in lines:
        coordinates = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
        if len(line) > 1:
            shapes.append(f"<polyline points='{coordinates}' fill='none' stroke='{colour}' stroke-width='1.5'/>")
        shapes += [f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='2.5' fill='{colour}'/>" for x, y in line]
    if test is not None:
        shapes.append(f"<circle cx='{sx(test[0]):.1f}' cy='{sy(test[1]):.1f}' r='4' fill='none' "
                      f"stroke='{TEST_COLOUR}' stroke-width='2'/>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"style='margin-right: 8px'>{''.join(shapes)}</svg>")

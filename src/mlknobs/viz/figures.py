"""What every chart shares: matplotlib (an optional extra) on its own canvas, rendering, tile mosaics.

Figures are built with `matplotlib.figure.Figure` on the Agg canvas directly, so the global pyplot
backend of a program that imports mlknobs is left alone. Every figure has a fixed size in inches
at `DPI` dots per inch (no tight bounding box), so the size of a picture depends only on what it
shows, not on the length of its labels.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np

from mlknobs.errors import MissingExtra
from mlknobs.viz.tiles import tile_grid

DPI = 100
TITLE_INCHES = 0.8                    # room for a grid picture's title
MARGIN_INCHES = 0.1
MIN_GRID_PICTURE_INCHES = 8.0         # narrower pictures would cut their titles
DIGIT_TILE_INCHES = 1.1               # one 28x28 digit (mistakes, augment); its cell adds room for a caption
TITLE_NAME_CHARS = 60                 # a file name in a title line: its middle gives way to an ellipsis


def matplotlib_parts() -> SimpleNamespace:
    """The parts of matplotlib the pictures use, or MissingExtra naming the plot extra."""
    try:
        import matplotlib  # noqa: F401  (imported first so a missing package fails here, not deeper)
        from matplotlib import colormaps, colors, ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.cm import ScalarMappable
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtra(feature="drawing a picture", extra="plot", module="matplotlib") from e

    def new_figure(width: float, height: float, layout: str | None = "constrained"):
        # Whole pixels, so a picture's size is exactly what its layout says.
        fig = Figure(figsize=(round(width * DPI) / DPI, round(height * DPI) / DPI), dpi=DPI, layout=layout)
        FigureCanvasAgg(fig)
        return fig

    return SimpleNamespace(new_figure=new_figure, colormaps=colormaps, colors=colors, ticker=ticker,
                           ScalarMappable=ScalarMappable)


def require_matplotlib() -> None:
    """Raise MissingExtra now if matplotlib is missing (before loading models and data)."""
    matplotlib_parts()


def render(fig, fmt: str) -> bytes:
    """The figure as the bytes of a PNG, SVG or PDF file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI)
    return buffer.getvalue()


def tile_mosaic(tiles: np.ndarray, columns: int, cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Lay tiles (n, 28, 28) out in rows of `columns` cells of `cell` = (width, height) pixels.

    Each tile sits at the bottom centre of its cell; the blank rows above it hold its caption.
    Blank pixels are NaN, so a colour map paints them as its "bad" colour (the background).
    Returns the mosaic and each caption's anchor (n, 2) as (x, y): the middle of the tile's top
    edge in imshow's pixel coordinates.
    """
    width, height = cell
    mosaic, origins = tile_grid(tiles.astype(np.float32), columns, cell, offset=((width - 28) // 2, height - 28))
    # imshow centres pixel (i, j) on (j, i), so a tile's top edge is half a pixel above its first row.
    return mosaic, origins + np.array([13.5, -0.5])


def mosaic_axes(new_figure, mosaic: np.ndarray, inches_per_pixel: float, right_inches: float = 0.0):
    """A figure holding one Axes sized so each mosaic pixel is `inches_per_pixel`, below room for a title."""
    grid_height, grid_width = (size * inches_per_pixel for size in mosaic.shape)
    width = max(MIN_GRID_PICTURE_INCHES, grid_width + 2 * MARGIN_INCHES) + right_inches
    height = grid_height + TITLE_INCHES + MARGIN_INCHES
    fig = new_figure(width, height, layout=None)
    width, height = fig.get_size_inches()
    left = (width - right_inches - grid_width) / 2
    ax = fig.add_axes((left / width, MARGIN_INCHES / height, grid_width / width, grid_height / height))
    ax.set_axis_off()
    return fig, ax


def grid_title(fig, text: str) -> None:
    """A grid picture's title, in the room `mosaic_axes` left above the grid."""
    fig.suptitle(text, fontsize=9.5, y=1 - MARGIN_INCHES / fig.get_size_inches()[1], va="top")

"""One helper for every picture made of 28x28 tiles: `plot weights`, `plot mistakes` and the GIF."""

from __future__ import annotations

import math

import numpy as np


def grid_shape(count: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) for `count` tiles: square-ish unless the column count is given."""
    columns = min(columns or math.ceil(math.sqrt(count)), count)
    return math.ceil(count / columns), columns


def tile_grid(tiles: np.ndarray, columns: int | None, cell: tuple[int, int], offset: tuple[int, int] = (0, 0),
              fill=np.nan) -> tuple[np.ndarray, np.ndarray]:
    """Lay tiles (n, h, w) out in rows of `columns` cells of `cell` = (width, height) pixels.

    Each tile sits at `offset` = (x, y) inside its cell; everything else is `fill`. Returns the
    mosaic (rows * height, columns * width), of the tiles' dtype unless `fill` needs a wider one,
    and each tile's top-left corner in it, (n, 2) as (x, y).
    """
    n, h, w = tiles.shape
    rows, columns = grid_shape(n, columns)
    width, height = cell
    x, y = offset
    cells = np.full((rows * columns, height, width), fill, np.result_type(tiles.dtype, np.min_scalar_type(fill)))
    cells[:n, y:y + h, x:x + w] = tiles
    mosaic = cells.reshape(rows, columns, height, width).transpose(0, 2, 1, 3).reshape(rows * height, columns * width)
    index = np.arange(n)
    origins = np.stack([(index % columns) * width + x, (index // columns) * height + y], axis=1)
    return mosaic, origins

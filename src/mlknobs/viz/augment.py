"""The picture of `train --augment`: training digits beside freshly distorted copies of each."""

from __future__ import annotations

import numpy as np

from mlknobs.text import value_text
from mlknobs.viz.figures import DIGIT_TILE_INCHES, grid_title, matplotlib_parts, mosaic_axes, render, tile_mosaic

AUGMENT_ROWS, AUGMENT_COPIES = 8, 7
AUGMENT_CELL = (28 + 6, 28 + 6)


def augment_figure(images: np.ndarray, settings: dict, source: str, seed: int = 0, fmt: str = "png") -> bytes:
    """Training digits (left column) and freshly distorted copies of each: what `--augment` shows the network.

    settings: the distortions (config.DISTORTIONS names), as a model records them or `--augment` sets them.
    """
    from mlknobs.data.augment import Distortions, distort
    from mlknobs.data.batches import augment_rng

    mpl = matplotlib_parts()
    rng = np.random.default_rng(seed)
    originals = images[rng.choice(len(images), AUGMENT_ROWS, replace=False)]                  # (R, 784)
    copies = [distort(originals, augment_rng(seed, 0, k), Distortions(**settings))
              for k in range(AUGMENT_COPIES)]                                                  # C x (R, 784)
    rows = np.stack([originals, *copies], axis=1).reshape(-1, 28, 28)                          # (R * (1+C), 28, 28)
    mosaic, anchors = tile_mosaic(rows.astype(np.float32), 1 + AUGMENT_COPIES, AUGMENT_CELL)
    fig, ax = mosaic_axes(mpl.new_figure, mosaic, DIGIT_TILE_INCHES / 28)
    ax.imshow(mosaic, cmap=mpl.colormaps["gray_r"].with_extremes(bad="white"), vmin=0, vmax=255,
              interpolation="nearest")
    for column, label in ((0, "original"), (1, "distorted copies ->")):
        x, y = anchors[column]
        ax.text(x, y - 1, label, ha="center" if column == 0 else "left", va="bottom", fontsize=8)
    shown = ", ".join(f"{name.replace('_', ' ')} {value_text(value)}" for name, value in settings.items())
    grid_title(fig, f"What the network is shown with {source}: every epoch draws new distortions\n{shown}")
    return render(fig, fmt)

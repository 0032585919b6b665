"""The one seam between data and training: mini-batches of pixels and labels, in a given order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mlknobs.data.splits import Split


def batches(data: Split, order: np.ndarray, batch_size: int,
            buffer: np.ndarray) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield (positions, pixels, labels) for consecutive batches of `data` taken in `order`.

    positions: where the batch sits in `order` (a slice), so per-sample results can be stored;
    pixels: uint8 (n, 784), gathered into `buffer` (at least batch_size rows), valid until the
    next batch; labels: (n,). The last batch may be shorter.
    """
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        pixels = np.take(data.images, rows, axis=0, out=buffer[:len(rows)])   # (n, 784)
        yield slice(start, start + len(rows)), pixels, data.labels[rows]

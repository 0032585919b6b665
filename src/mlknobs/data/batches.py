"""The one seam between data and training: mini-batches of pixels and labels, in a given order.

`batches` gathers the clean digits. `augmented_batches` yields distorted copies instead, made a
chunk at a time by a worker thread on the other core while the current chunk trains: at most
PREFETCH chunks wait in a queue (1.6 MB each) and one is being made (in the Distorter's ~70 MB of
buffers, allocated once an epoch), so memory stays bounded, never a whole epoch. Chunk k of an
epoch is distorted with its own Generator derived from (seed, epoch, k), so the images depend
only on the seed, the epoch and the position, never on timing: the same seed gives the same
weights, and a resumed run continues with exactly the digits an uninterrupted one would have seen.
The distortion code is NumPy, which releases the interpreter lock while it works, so a thread
runs truly in parallel with training (scripts/bench_augment.py measures it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np

from mlknobs.data.augment import Distorter, Distortions
from mlknobs.data.splits import Split
from mlknobs.errors import AugmentationFailed

CHUNK_ROWS = 2048     # digits distorted per work item: whole-array speed, ~70 MB of buffers
PREFETCH = 2          # chunks ready or being made ahead of training


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


AUGMENT_STREAM = 1    # spawn key: the distortions' random streams never overlap the run's own Generator


def augment_rng(seed: int, epoch: int, chunk: int) -> np.random.Generator:
    """The Generator for one chunk's distortions: a child stream of the run's seed, named by position.

    (A plain default_rng([seed, 0, 0]) would be the run's own stream again: SeedSequence pads
    short entropy with zeros.)
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(AUGMENT_STREAM, epoch, chunk)))


def augmented_batches(data: Split, order: np.ndarray, batch_size: int, distortions: Distortions,
                      seed: int, epoch: int) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Like `batches`, but every digit is a freshly distorted copy (see the module note).

    Close the generator (or let it finish) to stop the worker: a `with contextlib.closing(...)`
    or a for loop that ends does it; an exception in the consumer (Ctrl-C) does too.
    """
    chunk_rows = batch_size * max(1, CHUNK_ROWS // batch_size)    # whole batches per chunk
    chunks = range(0, len(order), chunk_rows)

    distorter = Distorter(chunk_rows, distortions)                # its buffers serve every chunk of the epoch

    def make(k: int) -> np.ndarray:
        rows = order[chunks[k]:chunks[k] + chunk_rows]
        return distorter(data.images[rows], augment_rng(seed, epoch, k))

    worker = _Prefetcher(make, len(chunks))
    try:
        for k, pixels in enumerate(worker):
            start = chunks[k]
            for offset in range(0, len(pixels), batch_size):
                rows = order[start + offset:start + offset + batch_size]
                done = slice(start + offset, start + offset + len(rows))
                yield done, pixels[offset:offset + len(rows)], data.labels[rows]
    finally:
        worker.close()


class _Prefetcher:
    """Runs make(0), make(1), ... on a thread, at most PREFETCH results ahead of the reader.

    The reader gets results in order. An error in make is re-raised to the reader as
    AugmentationFailed; a worker that vanished is an error too, never a hang; close() stops it.
    """

    POLL_SECONDS = 0.2

    def __init__(self, make, count: int):
        self._make, self._count = make, count
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="mlknobs-augment", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            for k in range(self._count):
                if not self._put(("ok", self._make(k))):
                    return
        except BaseException as e:           # reported to the reader, who decides
            self._put(("error", e))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=self.POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        for _ in range(self._count):
            kind, value = self._get()
            if kind == "error":
                raise AugmentationFailed(f"making distorted digits failed: {type(value).__name__}: {value}") \
                    from value
            yield value

    def _get(self):
        while True:
            try:
                return self._queue.get(timeout=self.POLL_SECONDS)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise AugmentationFailed("the worker making distorted digits stopped without a word") \
                        from None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

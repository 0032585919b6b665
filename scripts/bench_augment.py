"""Does `train --augment` cost training time? Epochs with and without distorted digits, interleaved.

The distortions are made a chunk at a time on a worker thread while the network trains on the
main one (one BLAS thread), so on a 2-core machine an augmented epoch should take little longer
than a plain one. This script runs the two kinds of epoch alternately (plain, augmented, plain, ...)
so that load from elsewhere hits both alike, and reports the median epoch time of each and the
median of the per-round ratios. It also times the distortion of one chunk on its own, and a
variant with the worker made synchronous (distort, then train, on one thread) for comparison.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_augment.py --mirror ../shared/data
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from machine import cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4, help="Epochs of each kind (alternating).")
    parser.add_argument("--data-dir", default=os.environ.get("MLKNOBS_DATA_DIR", "data"))
    parser.add_argument("--mirror", action="append", default=[])
    parser.add_argument("--json", dest="json_path", help="Also write the results here.")
    args = parser.parse_args()

    from mlknobs.config import AUGMENT_DEFAULTS, TrainConfig
    from mlknobs.data import batches as batches_module
    from mlknobs.data.augment import Distorter, Distortions
    from mlknobs.data.splits import load_split
    from mlknobs.training.loop import fit

    train = load_split("mnist", "train", args.data_dir, args.mirror, progress=False)
    test = load_split("mnist", "test", args.data_dir, args.mirror, progress=False)
    names = [str(d) for d in range(10)]
    kernels = [f"{p['internal_api']} {p['version']} ({p.get('architecture')})" for p in threadpool_info()]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; BLAS: {', '.join(kernels)}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}", file=sys.stderr)

    with threadpool_limits(1, user_api="blas"):
        chunk = train.images[:4096]
        distorter = Distorter(len(chunk), Distortions(**AUGMENT_DEFAULTS))   # as a run keeps one
        distorter(chunk, np.random.default_rng(1))                            # buffers touched once
        chunk_seconds = math.inf
        for _ in range(5):
            start = time.perf_counter()
            distorter(chunk, np.random.default_rng(0))
            chunk_seconds = min(chunk_seconds, time.perf_counter() - start)

    def epoch_seconds(augmented: bool, seed: int) -> float:
        settings = dict(AUGMENT_DEFAULTS) if augmented else {}
        config = TrainConfig(epochs=1, hidden_size=args.hidden_size, seed=seed, **settings)
        model = fit(config, train, test, names)
        return model.history[0]["seconds"]

    def synchronous_epoch_seconds(seed: int) -> float:
        """The same augmented epoch with the worker's job done inline: what the thread saves."""
        real = batches_module.augmented_batches

        def inline(data, order, batch_size, distortions, seed_, epoch):
            chunk_rows = batch_size * max(1, batches_module.CHUNK_ROWS // batch_size)
            distorter = Distorter(chunk_rows, distortions)
            for k, start in enumerate(range(0, len(order), chunk_rows)):
                rows = order[start:start + chunk_rows]
                pixels = distorter(data.images[rows], np.random.default_rng([seed_, epoch, k]))
                for offset in range(0, len(rows), batch_size):
                    part = rows[offset:offset + batch_size]
                    yield slice(start + offset, start + offset + len(part)), pixels[offset:offset + len(part)], \
                        data.labels[part]

        from mlknobs.training import loop
        loop.augmented_batches = inline
        try:
            return epoch_seconds(True, seed)
        finally:
            loop.augmented_batches = real

    plain, augmented, inline, ratios = [], [], [], []
    for r in range(args.rounds):
        plain.append(epoch_seconds(False, r))
        augmented.append(epoch_seconds(True, r))
        inline.append(synchronous_epoch_seconds(r))
        ratios.append(augmented[-1] / plain[-1])
        print(f"round {r + 1}: plain {plain[-1]:.2f} s, augmented {augmented[-1]:.2f} s "
              f"(x{ratios[-1]:.2f}), augmented on one thread {inline[-1]:.2f} s", file=sys.stderr)

    result = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "blas": kernels, "hidden_size": args.hidden_size,
        "distortions": AUGMENT_DEFAULTS, "chunk_of_4096_seconds": chunk_seconds,
        "plain_epoch_median": statistics.median(plain), "augmented_epoch_median": statistics.median(augmented),
        "synchronous_augmented_epoch_median": statistics.median(inline),
        "augmented_over_plain_median_ratio": statistics.median(ratios), "rounds": args.rounds,
    }
    print(f"| H | plain epoch | augmented epoch (worker thread) | ratio | augmented, one thread | "
          f"distorting 4096 digits |\n|---:|---:|---:|---:|---:|---:|\n"
          f"| {args.hidden_size} | {result['plain_epoch_median']:.2f} s | {result['augmented_epoch_median']:.2f} s | "
          f"{result['augmented_over_plain_median_ratio']:.2f} | {result['synchronous_augmented_epoch_median']:.2f} s | "
          f"{chunk_seconds:.3f} s |")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

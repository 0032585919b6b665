"""How long loading a whole dataset (train + test) takes, cold (inflating the .gz) and warm (from the cache).

Cold: the cache folder is removed before each load, so every file is verified, inflated and parsed,
and the cache written. Warm: the cache from the previous load is read. The files are fetched once,
untimed, from a mirror (a local folder such as ../shared/data works offline). Target: warm well
under a second for all of MNIST.

    python scripts/bench_data.py --mirror ../shared/data
    python scripts/bench_data.py --dataset fashion-mnist --repeats 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mlknobs.data.datasets import DATASETS, get_dataset
from mlknobs.data.download import ensure_dataset
from mlknobs.data.splits import load_split

DEFAULT_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_all(dataset: str, data_dir: Path) -> int:
    """Load both splits; return the number of samples, so the work cannot be skipped."""
    return sum(len(load_split(dataset, split, data_dir, progress=False)) for split in ("train", "test"))


def time_loads(dataset: str, data_dir: Path, repeats: int, cold: bool) -> list[float]:
    cache = data_dir / dataset / "cache"
    seconds = []
    load_all(dataset, data_dir)   # leaves a warm cache for the warm runs (and warms the page cache)
    for _ in range(repeats):
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        samples = load_all(dataset, data_dir)
        seconds.append(time.perf_counter() - start)
        assert samples == 70_000, samples
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="mnist", help="Which dataset (default mnist).")
    parser.add_argument("--mirror", default=os.environ.get("MLKNOBS_MIRROR") or str(DEFAULT_MIRROR),
                        help="Where to fetch the files from (default $MLKNOBS_MIRROR or ../shared/data).")
    parser.add_argument("--repeats", type=int, default=5, help="Timed loads per mode (default 5).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        data_dir = Path(tmp)
        ensure_dataset(get_dataset(args.dataset), data_dir, args.mirror.split(), progress=False)
        rows = [(mode, time_loads(args.dataset, data_dir, args.repeats, cold=mode == "cold"))
                for mode in ("cold", "warm")]

    print(f"{args.dataset}: train + test (70000 images), {args.repeats} loads each, python {sys.version.split()[0]}")
    print(f"{'mode':<6}{'min s':>9}{'median s':>10}{'max s':>9}")
    for mode, seconds in rows:
        print(f"{mode:<6}{min(seconds):>9.3f}{statistics.median(seconds):>10.3f}{max(seconds):>9.3f}")


if __name__ == "__main__":
    main()

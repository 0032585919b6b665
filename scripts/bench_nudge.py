#!/usr/bin/env python3
"""Learning by nudging against backprop on this machine: time per step, the gradients' difference,
and where the same run ends (README, "Learning with just arithmetic").

For each hidden size H, one training step (batch 128 of the first --train-size MNIST digits) is
timed both ways, interleaved round-robin (backprop, nudge, backprop, nudge, ...) so that a busy
shared machine slows both alike; the ratio of the medians is the number to read. Then, at the
first H, the largest difference between the nudged slopes (float64) and backprop's (float64 and
the float32 that training uses) on a real batch, and two `fit` runs with the same seed and
settings, one per --gradients, with their test accuracy.

Examples:
  python scripts/bench_nudge.py --mirror ../shared/data
  python scripts/bench_nudge.py --hidden-sizes 8,32 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from mlknobs.config import TrainConfig
from mlknobs.data.splits import Split, load_split
from mlknobs.nn.losses import LOSSES
from mlknobs.nn.model import InputScaling, Network, Params
from mlknobs.nn.nudge import nudge_slopes
from mlknobs.training.loop import fit
from mlknobs.training.step import Stepper


def time_steps(train: Split, hidden: int, gradients: str, rounds: int) -> list[float]:
    config = TrainConfig(hidden_size=hidden, gradients=gradients)
    rng = np.random.default_rng(0)
    params, scaling = Params.initial(hidden, rng), InputScaling.fit(train.images)
    stepper = Stepper(config, params, scaling, 128, rng)
    seconds = []
    for r in range(rounds):
        rows = slice((r * 128) % (len(train) - 128), (r * 128) % (len(train) - 128) + 128)
        started = time.perf_counter()
        _, cache = stepper.forward(train.images[rows])
        stepper.step(cache, train.labels[rows], 0.1)
        seconds.append(time.perf_counter() - started)
    return seconds


def gradient_difference(train: Split, hidden: int) -> dict:
    rng = np.random.default_rng(0)
    params, scaling = Params.initial(hidden, rng), InputScaling.fit(train.images)
    pixels, labels = train.images[:128], train.labels[:128]
    x = pixels.astype(np.float64) * scaling.scale + scaling.offset
    nudged = nudge_slopes(params, LOSSES["cross-entropy"], x, labels).flat
    result = {}
    for name, dtype in (("float64", np.float64), ("float32", np.float32)):
        net = Network(params.astype(dtype), "cross-entropy", 128)
        _, cache = net.forward(x.astype(dtype))
        backprop = net.backward(cache, labels).flat.astype(np.float64)
        result[f"max_abs_difference_{name}"] = float(np.abs(nudged - backprop).max())
        result[f"max_relative_to_largest_{name}"] = float(np.abs(nudged - backprop).max() / np.abs(backprop).max())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden-sizes", default="8,32,128")
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--mirror", default=None)
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()
    mirrors = [args.mirror] if args.mirror else []
    train = load_split("mnist", "train", args.data_dir, mirrors, progress=False)
    test = load_split("mnist", "test", args.data_dir, mirrors, progress=False)
    train = Split(train.images[:args.train_size], train.labels[:args.train_size])
    report = {"steps": []}
    for hidden in map(int, args.hidden_sizes.split(",")):
        times = {"backprop": [], "nudge": []}
        for _ in range(args.rounds):                      # interleaved: load hits both alike
            for gradients in times:
                times[gradients] += time_steps(train, hidden, gradients, 1)
        backprop, nudge = (statistics.median(times[g]) for g in ("backprop", "nudge"))
        row = {"hidden_size": hidden, "knobs": 795 * hidden + 10, "backprop_s": backprop, "nudge_s": nudge,
               "ratio": nudge / backprop}
        report["steps"].append(row)
        print(json.dumps(row))
    first = int(args.hidden_sizes.split(",")[0])
    report["gradients"] = gradient_difference(train, first)
    print(json.dumps(report["gradients"]))
    runs = {}
    for gradients in ("backprop", "nudge"):
        config = TrainConfig(hidden_size=first, epochs=args.epochs, gradients=gradients, seed=0)
        model = fit(config, train, test, [str(d) for d in range(10)])
        runs[gradients] = {"test_accuracy": model.results["test_accuracy"], "seconds": model.results["seconds"],
                           "final_train_loss": model.history[-1]["train_loss"]}
        print(json.dumps({gradients: runs[gradients]}))
    report["runs"] = runs
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""Why the saturation guard exists: time a training step of a saturated network with and without it.

Saturated sigmoid units make the textbook formulas produce subnormal floats (below 1.2e-38), which
x86 CPUs process through slow microcode. mlknobs computes the sigmoid as (1 + tanh(z/2)) / 2 and
floors the softmax's shifted logits at -30, so saturation yields exact zeros instead.

    python scripts/bench_subnormals.py [--hidden-size 512] [--steps 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import mlknobs.nn.model
from mlknobs.nn.losses import LOSSES, Loss
from mlknobs.nn.model import InputScaling, Network, Params


def textbook_sigmoid_(z: np.ndarray) -> np.ndarray:
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    return np.reciprocal(z, out=z)


def textbook_softmax_(z: np.ndarray) -> np.ndarray:
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def time_steps(hidden_size: int, weight_scale: float, textbook: bool, steps: int) -> tuple[float, int]:
    """(milliseconds per forward + backward step, number of subnormal values in the buffers)."""
    rng = np.random.default_rng(0)
    params = Params.initial(hidden_size, rng)
    params.w1 *= weight_scale
    params.w2 *= weight_scale
    loss = LOSSES["cross-entropy"]
    guarded_sigmoid = mlknobs.nn.model.sigmoid_
    if textbook:
        loss = Loss("textbook", "softmax", textbook_softmax_, None, loss.samples, loss.delta, loss.probabilities_)
        mlknobs.nn.model.sigmoid_ = textbook_sigmoid_    # Network.forward looks the name up at each call
    try:
        net = Network(params, loss, 128)
        x = net.load_pixels(rng.integers(0, 256, (128, 784), dtype=np.uint8), InputScaling(0.1307, 0.3081))
        labels = rng.integers(0, 10, 128)
        with np.errstate(all="ignore"):
            start = time.perf_counter()
            for _ in range(steps):
                _, cache = net.forward(x)
                net.backward(cache, labels)
            seconds = time.perf_counter() - start
    finally:
        mlknobs.nn.model.sigmoid_ = guarded_sigmoid
    tiny = np.finfo(np.float32).tiny
    subnormal = sum(int(np.count_nonzero((a != 0) & (np.abs(a) < tiny)))
                    for a in (net.a1, net.a2, net.dz1, net.dz2, net.grads.w1))
    return 1000 * seconds / steps, subnormal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print("| sigmoid/softmax | weights | ms per step | subnormal values |")
    print("|---|---|---:|---:|")
    with threadpool_limits(1):
        for textbook in (False, True):
            for scale in (1.0, 300.0):
                ms, subnormal = time_steps(args.hidden_size, scale, textbook, args.steps)
                name = "textbook" if textbook else "mlknobs (guarded)"
                state = "saturated (x300)" if scale > 1 else "fresh"
                print(f"| {name} | {state} | {ms:.2f} | {subnormal} |")


if __name__ == "__main__":
    main()

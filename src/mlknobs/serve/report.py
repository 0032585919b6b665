"""One picture through the network, with what the page shows beside the answer.

The answer itself is what `mlknobs predict --json` prints (mlknobs.vision.classify.classify), for
the input that predict would make of the same bytes (mlknobs.vision.images.read_input). Beside
it the page shows how the network got there:

    input    the 28x28 picture the network sees (uint8 gray levels, light ink on black)
    hidden   the hidden units that fire most for it, a1 = sigmoid(z1), z1 = x @ w1 + b1, the
             largest first, each with its 784 input weights as a 28x28 tile (what the unit looks
             for), scaled to its own largest |weight| as `mlknobs plot weights` draws them

NumPy only, no web framework: the app runs `picture_report` in a worker thread.
"""

from __future__ import annotations

import numpy as np

from mlknobs.nn.activations import sigmoid_
from mlknobs.nn.model import INPUT_SIZE, Model
from mlknobs.vision.classify import classify
from mlknobs.vision.images import SIDE, read_input

TOP_K = 3            # classes listed in top_k, as `mlknobs predict` lists by default
TOP_UNITS = 8        # hidden units shown
TILE_DECIMALS = 3    # weights in [-1, 1] to 3 decimals: finer than any colour map shows, 1/3 the JSON


def weight_tile(model: Model, unit: int) -> np.ndarray:
    """A hidden unit's 784 input weights as a 28x28 tile scaled to [-1, 1]: (28, 28) float64.

    Divided by the unit's own largest |weight|, as `plot weights` draws by default: units differ
    several-fold in strength and on one shared scale the weak ones would fade to white although
    their pattern is just as clear. (float64: a rounded float32 prints as 0.12300000339746475.)
    """
    weights = model.params.w1[:, unit].astype(np.float64)                 # (784,) column of (784, H)
    limit = max(float(np.abs(weights).max()), np.finfo(np.float32).tiny)  # an all-zero unit stays 0
    return np.round(weights / limit, TILE_DECIMALS).reshape(SIDE, SIDE)


def hidden_layer(model: Model, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hidden layer's input z1 and output a1, both (H,), for one uint8 input (784,).

    The same first layer as Network.forward, kept apart here because the ranking needs z1: a
    sigmoid rounds to exactly 1 for z1 above ~17, so several units can tie at a1 = 1.
    """
    p = model.params
    x = np.empty((1, INPUT_SIZE), p.w1.dtype)
    model.scaling.apply(pixels.reshape(1, INPUT_SIZE), out=x)          # (1, 784), standardised
    z1 = x @ p.w1 + p.b1                                               # (1, 784) @ (784, H) -> (1, H)
    a1 = sigmoid_(z1.copy())                                           # sigmoid(z1), in place on a copy
    return z1[0].astype(np.float64), a1[0].astype(np.float64)


def strongest_units(model: Model, z1: np.ndarray, a1: np.ndarray, count: int = TOP_UNITS) -> list[dict]:
    """The `count` units that fire most (largest z1, so largest a1), strongest first: each one's
    activation a1, its input z1 (which still tells apart units whose a1 rounds to 1) and weights."""
    ranked = np.argsort(-z1, kind="stable")[:count]
    return [{"unit": int(unit), "activation": round(float(a1[unit]), 4), "z": round(float(z1[unit]), 3),
             "weights": weight_tile(model, unit).tolist()} for unit in ranked]


def picture_report(model: Model, data: bytes, name: str, top_k: int = TOP_K, top_units: int = TOP_UNITS) -> dict:
    """What the page shows for a picture's bytes: predict's report plus `input` and `hidden`.

    Raises ImageError, naming the picture `name`, for anything predict cannot read, with
    predict's own message.
    """
    pixels = read_input(data, model.dataset, name=name)                # (784,) uint8
    return {**classify(model, pixels, top_k),
            "input": pixels.reshape(SIDE, SIDE).tolist(),
            "hidden": strongest_units(model, *hidden_layer(model, pixels), top_units)}

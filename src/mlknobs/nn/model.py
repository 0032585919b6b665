"""The network: 784 inputs -> H sigmoid hidden units -> 10 outputs, forward and backward by hand.

Read nn/plain.py first: it writes one training step as plain equations with their shapes. This
module computes the same step fast, with buffers allocated once and filled in place; the tests
(tests/nn/test_plain.py) hold the two together, so neither needs the other's prose.

Batches are rows: x (B, 784) @ w1 (784, H) -> (B, H); a1 (B, H) @ w2 (H, 10) -> (B, 10).
Dropout (training only) multiplies the hidden activations by a random mask `keep` (B, H) that
holds 0 with probability p and 1/(1-p) otherwise ("inverted" dropout: the expected activation is
unchanged, so evaluation needs no rescaling and simply leaves the mask out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mlknobs.config import INPUT_SCALING_NAMES
from mlknobs.nn.activations import HIDDEN_ACTIVATION, sigmoid_, sigmoid_slope
from mlknobs.nn.losses import LOSSES, Loss

if TYPE_CHECKING:
    from mlknobs.config import TrainConfig

INPUT_SIZE = 28 * 28
OUTPUT_SIZE = 10


PARAM_NAMES = ("w1", "b1", "w2", "b2")
FLAT_ORDER = ("w1", "w2", "b1", "b2")    # weights first, so weight decay touches one slice


@dataclass
class Params:
    """The knobs: two weight matrices and two bias vectors (also used for their gradients).

    All four are views into one flat vector, `flat`, so the optimizer can turn every knob with a
    handful of whole-vector operations instead of a handful per array. Constructing a Params
    copies the given arrays into a new flat vector.
    """

    w1: np.ndarray  # (784, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H, 10)
    b2: np.ndarray  # (10,)
    flat: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        arrays = [np.asarray(getattr(self, name)) for name in FLAT_ORDER]
        self.flat = np.empty(sum(a.size for a in arrays), np.result_type(*arrays))
        start = 0
        for name, array in zip(FLAT_ORDER, arrays):
            view = self.flat[start:start + array.size].reshape(array.shape)
            view[...] = array
            setattr(self, name, view)
            start += array.size

    @property
    def weight_count(self) -> int:
        """flat[:weight_count] are the weights (w1, w2); the biases follow."""
        return self.w1.size + self.w2.size

    @classmethod
    def initial(cls, hidden_size: int, rng: np.random.Generator, dtype=np.float32, scale: float = 1.0) -> Params:
        """Glorot/Xavier uniform weights (their range times `scale`), zero biases.

        Keeping Var(z) near 1 at the start puts every sigmoid in its steep middle, where it learns;
        a large `scale` starts them on their flat ends instead (see `mlknobs plot activations`).
        """
        def glorot(fan_in: int, fan_out: int) -> np.ndarray:
            limit = scale * np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)

        return cls(w1=glorot(INPUT_SIZE, hidden_size), b1=np.zeros(hidden_size, dtype),
                   w2=glorot(hidden_size, OUTPUT_SIZE), b2=np.zeros(OUTPUT_SIZE, dtype))

    @property
    def hidden_size(self) -> int:
        return self.w1.shape[1]

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def zeros_like(self) -> Params:
        return Params(**{k: np.zeros_like(v) for k, v in self.arrays().items()})

    def copy(self) -> Params:
        return Params(**{k: v.copy() for k, v in self.arrays().items()})

    def astype(self, dtype) -> Params:
        return Params(**{k: v.astype(dtype) for k, v in self.arrays().items()})

    def copy_from(self, other: Params) -> None:
        np.copyto(self.flat, other.flat)

    def all_finite(self) -> bool:
        return bool(np.isfinite(self.flat).all())


# The std of pixel/255 over a training set: at most 0.5 (half the pixels 0, half 255); below 1e-3
# the images are practically constant, and dividing by the std would blow noise up into inputs.
# (`unit` scaling stores std 1: x = pixel/255 is the formula with mean 0 and std 1.)
MIN_INPUT_STD, MAX_INPUT_STD = 1e-3, 0.5


@dataclass(frozen=True)
class InputScaling:
    """How raw pixels 0..255 become network inputs: x = pixel * scale + offset.

    Standardising with the training set's mean and std (x = (pixel/255 - mean) / std) centres the
    inputs, which makes the first layer's gradient steps far better conditioned than raw 0..1.
    """

    mean: float   # of pixel / 255 over the training images
    std: float

    @property
    def scale(self) -> float:
        return 1.0 / (255.0 * self.std)

    @property
    def offset(self) -> float:
        return -self.mean / self.std

    @classmethod
    def fit(cls, images: np.ndarray, chunk_rows: int = 1024) -> InputScaling:
        """Mean and std of pixel/255 over uint8 images (N, 784).

        Summed in float64 over chunks of rows: a float64 copy of all of MNIST would be 376 MB.
        """
        total, total_sq, count = 0.0, 0.0, 0
        for start in range(0, len(images), chunk_rows):
            chunk = images[start:start + chunk_rows].astype(np.float64).reshape(-1)
            total += chunk.sum()
            total_sq += chunk @ chunk
            count += chunk.size
        mean = total / count / 255.0
        variance = total_sq / count / 255.0**2 - mean**2
        return cls(mean=float(mean), std=float(np.sqrt(max(variance, 1e-12))))

    @classmethod
    def unit(cls, images: np.ndarray | None = None) -> InputScaling:
        """x = pixel / 255: inputs in 0..1, all positive (mean 0, std 1 in the formula)."""
        return cls(mean=0.0, std=1.0)

    @classmethod
    def raw(cls, images: np.ndarray | None = None) -> InputScaling:
        """x = pixel: inputs 0..255, the scale a camera gives (mean 0, std 1/255 in the formula)."""
        return cls(mean=0.0, std=1.0 / 255.0)

    def apply(self, pixels: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Scale uint8 pixels (n, 784) into the float buffer `out` (n, 784)."""
        np.multiply(pixels, out.dtype.type(self.scale), out=out, casting="unsafe")
        out += out.dtype.type(self.offset)
        return out


# `train --input-scaling`: how a new run's inputs are made from pixels (the images are the training
# set's; only `standardize` looks at them). Names in config.INPUT_SCALING_NAMES.
INPUT_SCALINGS = {"standardize": InputScaling.fit, "unit": InputScaling.unit, "raw": InputScaling.raw}
assert tuple(INPUT_SCALINGS) == INPUT_SCALING_NAMES, "config.INPUT_SCALING_NAMES must list exactly these"


@dataclass(frozen=True)
class Cache:
    """What a forward pass keeps for its backward pass: views of the Network's buffers, valid until
    the next forward pass."""

    x: np.ndarray               # (n, 784) inputs, for dw1
    a1: np.ndarray              # (n, H) hidden activations, for sigmoid'(z1) = a1 (1 - a1)
    h: np.ndarray               # (n, H) what the output layer saw: a1, or a1 * keep with dropout; for dw2
    keep: np.ndarray | None     # (n, H) the dropout mask, or None
    a2: np.ndarray              # (n, 10) outputs, for dz2


class Network:
    """Forward and backward passes for one set of Params, with every buffer allocated once.

    Batches up to `max_batch` rows reuse the same memory (the last, short batch of an epoch uses
    the first rows). A buffer holds different quantities as a step goes on; the code names it by
    what it holds at each line (the a1 buffer holds z1 until the sigmoid turns it into a1).
    `grads` is overwritten by each backward call. `dropout` > 0 allocates the buffers a training
    pass with a mask needs; evaluation passes no mask. nn/plain.py is the same step written
    without buffers; tests/nn/test_plain.py holds the two together.
    """

    def __init__(self, params: Params, loss: Loss | str, max_batch: int, dropout: float = 0.0):
        self.params = params
        self.loss = LOSSES[loss] if isinstance(loss, str) else loss
        dtype = params.w1.dtype
        hidden = params.hidden_size
        self.max_batch = max_batch
        self.x = np.empty((max_batch, INPUT_SIZE), dtype)      # scaled inputs
        self.a1 = np.empty((max_batch, hidden), dtype)         # z1, then a1 = sigmoid(z1)
        self.a2 = np.empty((max_batch, OUTPUT_SIZE), dtype)    # z2, then the outputs a2
        self.dz2 = np.empty((max_batch, OUTPUT_SIZE), dtype)
        self.dz1 = np.empty((max_batch, hidden), dtype)        # dh, then da1, then dz1
        self.slope = np.empty((max_batch, hidden), dtype)      # sigmoid'(z1) = a1 (1 - a1)
        self.grads = params.zeros_like()
        self.dropout = dropout
        if dropout:
            self.h = np.empty((max_batch, hidden), dtype)      # a1 * keep
            self.keep = np.empty((max_batch, hidden), dtype)   # the mask buffer (see dropout_mask)

    def dropout_mask(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """A fresh inverted-dropout mask (n, H): 0 with probability p, else 1 / (1 - p)."""
        keep = self.keep[:n]
        rng.random(dtype=keep.dtype, out=keep)                 # u ~ U[0, 1)
        np.greater_equal(keep, self.dropout, out=keep)         # 1 where u >= p (kept), else 0
        keep *= 1 / (1 - self.dropout)
        return keep

    def load_pixels(self, pixels: np.ndarray, scaling: InputScaling) -> np.ndarray:
        """Scale a uint8 batch into the input buffer; returns the (n, 784) view to pass to forward."""
        return scaling.apply(pixels, self.x[:len(pixels)])

    def forward(self, x: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, Cache]:
        """Outputs a2 (n, 10) for inputs x (n, 784), and the cache the backward pass needs.

        keep: a dropout mask (n, H) for a training pass (see dropout_mask), None to evaluate.
        """
        p, n = self.params, len(x)
        z1 = np.matmul(x, p.w1, out=self.a1[:n])      # (n, 784) @ (784, H) -> (n, H)
        z1 += p.b1                                    # + (H,)
        a1 = sigmoid_(z1)                             # in place: the buffer now holds a1
        h = a1 if keep is None else np.multiply(a1, keep, out=self.h[:n])   # (n, H) dropped units are 0
        z2 = np.matmul(h, p.w2, out=self.a2[:n])      # (n, H) @ (H, 10) -> (n, 10)
        z2 += p.b2                                    # + (10,)
        a2 = self.loss.output_(z2)                    # in place: softmax (cross-entropy) or sigmoid (mse)
        return a2, Cache(x=x, a1=a1, h=h, keep=keep, a2=a2)

    def backward(self, cache: Cache, labels: np.ndarray) -> Params:
        """Gradients of the mean loss of the cached forward pass with respect to every knob."""
        p, g, n = self.params, self.grads, len(labels)
        dz2 = self.loss.delta(cache.a2, labels, out=self.dz2[:n])   # (n, 10), see losses.py
        np.matmul(cache.h.T, dz2, out=g.w2)           # dw2: (H, n) @ (n, 10) -> (H, 10)
        np.sum(dz2, axis=0, out=g.b2)                 # db2: (10,)
        dh = np.matmul(dz2, p.w2.T, out=self.dz1[:n])  # (n, 10) @ (10, H) -> (n, H)
        da1 = dh
        if cache.keep is not None:
            da1 *= cache.keep                         # a dropped unit passes no gradient back
        slope = sigmoid_slope(cache.a1, out=self.slope[:n])   # sigmoid'(z1) = a1 (1 - a1), (n, H)
        dz1 = da1
        dz1 *= slope                                  # dz1 = da1 * sigmoid'(z1)
        np.matmul(cache.x.T, dz1, out=g.w1)           # dw1: (784, n) @ (n, H) -> (784, H)
        np.sum(dz1, axis=0, out=g.b1)                 # db1: (H,)
        return g


def outputs(params: Params, loss: str, scaling: InputScaling, pixels: np.ndarray,
            batch_size: int = 2000) -> np.ndarray:
    """The network's outputs a2 (N, 10) for uint8 images (N, 784), computed in batches."""
    net = Network(params, loss, max_batch=min(batch_size, max(len(pixels), 1)))
    out = np.empty((len(pixels), OUTPUT_SIZE), params.w1.dtype)
    for start in range(0, len(pixels), net.max_batch):
        chunk = pixels[start:start + net.max_batch]
        out[start:start + len(chunk)], _ = net.forward(net.load_pixels(chunk, scaling))
    return out


def predict_proba(params: Params, loss: str, scaling: InputScaling, pixels: np.ndarray) -> np.ndarray:
    """Output probabilities (N, 10) for uint8 images (N, 784)."""
    return LOSSES[loss].probabilities_(outputs(params, loss, scaling, pixels))


def architecture(hidden_size: int, loss: str) -> dict:
    """The network's shape and activations, as model files record them."""
    return {"input_size": INPUT_SIZE, "hidden_size": hidden_size, "output_size": OUTPUT_SIZE,
            "hidden_activation": HIDDEN_ACTIVATION, "output_activation": LOSSES[loss].output_activation}


@dataclass
class Model:
    """A trained network with everything needed to use and describe it."""

    params: Params
    config: TrainConfig     # the settings it was trained with (mlknobs.config)
    scaling: InputScaling
    class_names: list[str]
    history: list[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)     # test_accuracy, test_loss, seconds, ...
    meta: dict = field(default_factory=dict)        # the whole metadata as read from disk
    parent: dict | None = None                      # the model it started from: path, sha256, dataset, test_accuracy
    step_losses: list = field(default_factory=list)  # [step, batch loss] every config.log_every steps

    @property
    def loss(self) -> str:
        return self.config.loss

    @property
    def dataset(self) -> str:
        return self.config.dataset

    @property
    def architecture(self) -> dict:
        return architecture(self.params.hidden_size, self.loss)

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities (N, 10) for uint8 images (N, 784)."""
        return predict_proba(self.params, self.loss, self.scaling, pixels)

    def _repr_html_(self) -> str:
        """How Jupyter shows a model: settings, accuracy, weight tiles and curves (viz/summary.py)."""
        from mlknobs.viz.summary import model_html  # drawing stays out of nn/: imported on display only

        return model_html(self)

"""One step of learning on one digit, with every number a learner needs to redo it on paper.

`explain_step` walks one input through the plain step (nn/plain.py) in float64: the forward pass,
the loss, the chain rule back to one knob, the same slope found by nudging the knob by h and
watching the loss, and one step of plain gradient descent on this digit alone. It returns plain
numbers; `mlknobs explain` prints them and `viz.explain` draws them.

The knobs are computed in float64 from the model's float32 ones, so the nudged slope and the
backprop slope agree to many digits: what is left between them is the central difference's own
error, of order h^2, and round-off of order 1e-16 / h.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from mlknobs.errors import KnobError
from mlknobs.lesson_settings import DEFAULT_H
from mlknobs.nn import plain
from mlknobs.nn.gradcheck import relative_difference
from mlknobs.nn.losses import LOSSES
from mlknobs.nn.model import INPUT_SIZE, OUTPUT_SIZE, PARAM_NAMES, InputScaling, Params

_KNOB = re.compile(r"^\s*(w1|b1|w2|b2)\s*\[\s*(\d+)\s*(?:,\s*(\d+)\s*)?\]\s*$")
_SHAPE_WORDS = {"w1": "w1[pixel, unit]", "b1": "b1[unit]", "w2": "w2[unit, output]", "b2": "b2[output]"}


@dataclass(frozen=True)
class Knob:
    """One knob: which array (w1, b1, w2, b2) and its index in it."""

    array: str
    index: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.array}[{','.join(map(str, self.index))}]"


def knob_shapes(hidden_size: int) -> dict[str, tuple[int, ...]]:
    return {"w1": (INPUT_SIZE, hidden_size), "b1": (hidden_size,), "w2": (hidden_size, OUTPUT_SIZE),
            "b2": (OUTPUT_SIZE,)}


def parse_knob(text: str, hidden_size: int) -> Knob:
    """`w1[350,3]`, `b1[3]`, `w2[3,7]` or `b2[7]` as a Knob of a 784 x hidden_size x 10 network."""
    match = _KNOB.match(text)
    if match is None:
        raise KnobError(text, "not a knob name: write w1[pixel,unit], b1[unit], w2[unit,output] or b2[output]")
    array, first, second = match.groups()
    index = (int(first),) if second is None else (int(first), int(second))
    shape = knob_shapes(hidden_size)[array]
    if len(index) != len(shape):
        raise KnobError(text, f"{array} takes {len(shape)} index(es): {_SHAPE_WORDS[array]}")
    for i, size in zip(index, shape):
        if i >= size:
            sizes = " x ".join(map(str, shape))
            raise KnobError(text, f"outside the network: {array} is {sizes} here "
                                  f"(indexes 0 to {' and 0 to '.join(str(s - 1) for s in shape)})")
    return Knob(array, index)


@dataclass
class ChainLink:
    """One equation of the chain rule: the quantity, its formula, its value; `terms` when it is a sum."""

    name: str
    formula: str
    value: float | None           # None for a quantity with ten values (listed in terms)
    terms: list[dict] = field(default_factory=list)
    numbers: str = ""             # the formula with the numbers put in


@dataclass
class KnobReport:
    knob: Knob
    name: str
    value: float
    backprop_slope: float
    nudge_slope: float
    h: float
    relative_difference: float
    loss_plus: float              # L(knob + h)
    loss_minus: float             # L(knob - h)
    chain: list[ChainLink]


@dataclass
class StepReport:
    learning_rate: float
    loss_before: float
    loss_after: float
    predicted_change: float       # first order: -learning_rate * sum of squared slopes
    label_probability_before: float
    label_probability_after: float
    probabilities_after: np.ndarray   # (10,)


@dataclass
class Explanation:
    label: int
    loss_name: str
    pixels: np.ndarray            # (784,) uint8, what the network was shown
    x: np.ndarray                 # (784,) float64 inputs, x = pixel * scale + offset
    scale: float
    offset: float
    z1: np.ndarray                # (H,)
    a1: np.ndarray                # (H,)
    z2: np.ndarray                # (10,)
    outputs: np.ndarray           # a2 (10,)
    probabilities: np.ndarray     # (10,), as predict reports them
    loss: float
    dz2: np.ndarray               # (10,) dLoss/dz2
    slopes: Params                # dLoss/dknob for every knob, float64
    hidden: list[dict]            # the units that fire most: unit, z1, a1, dot (x . w1[:, j]), bias
    knob: KnobReport
    step: StepReport
    top_knobs: list[tuple[str, float]]
    params: Params                # the knobs in float64, before the step


def _loss_and_outputs(p: Params, x: np.ndarray, label: int, loss: str) -> tuple[float, np.ndarray]:
    z2, _ = plain.forward(p, x[None, :])
    value, a2, _ = plain.LOSS_FUNCTIONS[loss](z2, np.array([label]))
    return value, a2[0]


def _probabilities(loss: str, outputs: np.ndarray) -> np.ndarray:
    return LOSSES[loss].probabilities_(outputs[None, :].copy())[0]


def explain_step(params: Params, loss: str, scaling: InputScaling, pixels: np.ndarray, label: int,
                 knob: Knob | None = None, learning_rate: float = 0.5, h: float = DEFAULT_H,
                 hidden_units: int = 5, top: int = 5) -> Explanation:
    """One digit (uint8 pixels (784,), its label) through one step of learning, in float64.

    knob: the knob whose slope is walked back by the chain rule and checked by nudging; default:
    the w1 knob with the largest |slope|, so the walk goes all the way back to a pixel.
    """
    if loss not in plain.LOSS_FUNCTIONS:
        raise ValueError(f"unknown loss {loss!r}")
    if not (h > 0 and np.isfinite(h)):
        raise ValueError(f"the nudge h must be a positive number, not {h}")
    p = params.astype(np.float64)
    pixels = np.asarray(pixels, np.uint8).reshape(INPUT_SIZE)
    x = pixels * scaling.scale + scaling.offset                    # (784,) float64
    labels = np.array([label])

    z2, cache = plain.forward(p, x[None, :])                       # (1, 10)
    loss_value, a2, dz2 = plain.LOSS_FUNCTIONS[loss](z2, labels)   # B = 1: the mean is this digit's loss
    slopes = plain.backward(p, cache, dz2)
    z1 = x @ p.w1 + p.b1                                           # (H,), as forward computed it
    a1, outputs, dz2 = cache.a1[0], a2[0], dz2[0]

    if knob is None:
        flat = int(np.argmax(np.abs(slopes.w1)))
        knob = Knob("w1", tuple(int(i) for i in np.unravel_index(flat, slopes.w1.shape)))
    knob_report = _knob_report(p, x, label, loss, knob, h, z1, a1, outputs, dz2, slopes)

    stepped = plain.update(p, slopes, learning_rate)
    loss_after, outputs_after = _loss_and_outputs(stepped, x, label, loss)
    probabilities = _probabilities(loss, outputs)
    probabilities_after = _probabilities(loss, outputs_after)
    step = StepReport(learning_rate=float(learning_rate), loss_before=loss_value, loss_after=loss_after,
                      predicted_change=float(-learning_rate * (slopes.flat @ slopes.flat)),
                      label_probability_before=float(probabilities[label]),
                      label_probability_after=float(probabilities_after[label]),
                      probabilities_after=probabilities_after)

    strongest = np.argsort(-z1, kind="stable")[:hidden_units]     # the units that fire most
    hidden = [{"unit": int(j), "z1": float(z1[j]), "a1": float(a1[j]), "dot": float(x @ p.w1[:, j]),
               "bias": float(p.b1[j])} for j in strongest]
    return Explanation(label=int(label), loss_name=loss, pixels=pixels, x=x, scale=scaling.scale,
                       offset=scaling.offset, z1=z1, a1=a1, z2=z2[0], outputs=outputs, probabilities=probabilities,
                       loss=loss_value, dz2=dz2, slopes=slopes, hidden=hidden, knob=knob_report, step=step,
                       top_knobs=largest_slopes(slopes, top), params=p)


def largest_slopes(slopes: Params, count: int) -> list[tuple[str, float]]:
    """The `count` knobs with the largest |slope|, over all four arrays, largest first."""
    candidates = []
    for name in PARAM_NAMES:
        array = getattr(slopes, name)
        flat = np.abs(array).reshape(-1)
        best = np.argsort(-flat, kind="stable")[:count]
        candidates += [(float(flat[i]), Knob(name, tuple(int(k) for k in np.unravel_index(i, array.shape))),
                        float(array.reshape(-1)[i])) for i in best]
    candidates.sort(key=lambda c: -c[0])
    return [(knob.name, slope) for _, knob, slope in candidates[:count]]


def _knob_report(p: Params, x: np.ndarray, label: int, loss: str, knob: Knob, h: float, z1: np.ndarray,
                 a1: np.ndarray, outputs: np.ndarray, dz2: np.ndarray, slopes: Params) -> KnobReport:
    """The chain rule from dLoss/dz2 back to `knob`, and the same slope found by nudging it."""
    array = getattr(p, knob.array)
    original = float(array[knob.index])
    losses = []
    for nudged in (original + h, original - h):                    # L(w + h), then L(w - h)
        array[knob.index] = nudged
        losses.append(_loss_and_outputs(p, x, label, loss)[0])
    array[knob.index] = original
    loss_plus, loss_minus = losses
    nudge = (loss_plus - loss_minus) / (2 * h)
    backprop = float(getattr(slopes, knob.array)[knob.index])
    return KnobReport(knob=knob, name=knob.name, value=original, backprop_slope=backprop, nudge_slope=float(nudge), h=h,
                      # One knob, no noise floor: the plain |b - n| / (|b| + |n|).
                      relative_difference=float(relative_difference(backprop, nudge, floor=np.finfo(float).tiny)),
                      loss_plus=loss_plus, loss_minus=loss_minus,
                      chain=chain_rule(p, x, label, loss, knob, z1, a1, outputs, dz2))


def chain_rule(p: Params, x: np.ndarray, label: int, loss: str, knob: Knob, z1: np.ndarray, a1: np.ndarray,
               outputs: np.ndarray, dz2: np.ndarray) -> list[ChainLink]:
    """The chain rule's equations for one knob, each with its value, for one digit (B = 1)."""
    y = np.zeros(OUTPUT_SIZE)
    y[label] = 1
    links = [ChainLink("dLoss/dz2", f"{plain.LOSS_FORMULAS[loss]['dz2']}  (y: 1 at the label {label}, else 0)",
                       None, [{"k": k, "a2": float(outputs[k]), "y": float(y[k]), "dz2": float(dz2[k])}
                              for k in range(OUTPUT_SIZE)])]
    if knob.array == "b2":
        (k,) = knob.index
        links.append(ChainLink(f"dLoss/db2[{k}]", f"dLoss/db2[{k}] = dLoss/dz2[{k}] * 1", float(dz2[k]),
                               numbers=f"{dz2[k]:.6g} * 1"))
        return links
    if knob.array == "w2":
        j, k = knob.index
        links.append(ChainLink(f"dLoss/dw2[{j},{k}]", f"dLoss/dw2[{j},{k}] = a1[{j}] * dLoss/dz2[{k}]",
                               float(a1[j] * dz2[k]), numbers=f"{a1[j]:.6g} * {dz2[k]:.6g}"))
        return links
    j = knob.index[-1]
    terms = [{"k": k, "dz2": float(dz2[k]), "w2": float(p.w2[j, k]), "product": float(dz2[k] * p.w2[j, k])}
             for k in range(OUTPUT_SIZE)]
    da1 = float(dz2 @ p.w2[j])
    slope = float(a1[j] * (1 - a1[j]))
    dz1 = da1 * slope
    links += [
        ChainLink(f"dLoss/da1[{j}]", f"dLoss/da1[{j}] = sum_k dLoss/dz2[k] * w2[{j},k]", da1, terms),
        ChainLink(f"sigmoid'(z1[{j}])", f"sigmoid'(z1[{j}]) = a1[{j}] * (1 - a1[{j}])", slope,
                  numbers=f"{a1[j]:.6g} * (1 - {a1[j]:.6g})"),
        ChainLink(f"dLoss/dz1[{j}]", f"dLoss/dz1[{j}] = dLoss/da1[{j}] * sigmoid'(z1[{j}])", dz1,
                  numbers=f"{da1:.6g} * {slope:.6g}"),
    ]
    if knob.array == "b1":
        links.append(ChainLink(f"dLoss/db1[{j}]", f"dLoss/db1[{j}] = dLoss/dz1[{j}] * 1", dz1,
                               numbers=f"{dz1:.6g} * 1"))
    else:
        i = knob.index[0]
        links.append(ChainLink(f"dLoss/dw1[{i},{j}]", f"dLoss/dw1[{i},{j}] = x[{i}] * dLoss/dz1[{j}]",
                               float(x[i] * dz1), numbers=f"{x[i]:.6g} * {dz1:.6g}"))
    return links

"""explain_step's numbers, computed here independently: a reference forward pass written another
way (sigmoid through tanh, cross-entropy through logsumexp), and slopes by this file's own nudges."""

from __future__ import annotations

import numpy as np
import pytest

from mlknobs.errors import KnobError
from mlknobs.io.modelfile import load_model
from mlknobs.nn.explain import Knob, explain_step, parse_knob
from mlknobs.nn.model import INPUT_SIZE, InputScaling, Params

SCALING = InputScaling(mean=0.1307, std=0.3081)


def reference_loss(p: Params, x: np.ndarray, label: int, loss: str) -> tuple[float, np.ndarray, np.ndarray]:
    """(loss, outputs a2, z2) for one input, written unlike nn/plain.py on purpose."""
    z1 = np.einsum("i,ij->j", x, p.w1) + p.b1
    a1 = 0.5 * (1 + np.tanh(z1 / 2))
    z2 = np.einsum("j,jk->k", a1, p.w2) + p.b2
    if loss == "cross-entropy":
        top = z2.max()
        log_sum = top + np.log(np.exp(z2 - top).sum())
        return float(log_sum - z2[label]), np.exp(z2 - log_sum), z2
    a2 = 0.5 * (1 + np.tanh(z2 / 2))
    target = np.eye(10)[label]
    return float(0.5 * np.sum((a2 - target) ** 2)), a2, z2


def own_slope(p: Params, x: np.ndarray, label: int, loss: str, knob: Knob, h: float = 1e-6) -> float:
    array = getattr(p, knob.array)
    original = array[knob.index]
    array[knob.index] = original + h
    plus = reference_loss(p, x, label, loss)[0]
    array[knob.index] = original - h
    minus = reference_loss(p, x, label, loss)[0]
    array[knob.index] = original
    return (plus - minus) / (2 * h)


def fresh(hidden: int, seed: int = 0) -> Params:
    return Params.initial(hidden, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def trained(synthetic_model_path):
    return load_model(synthetic_model_path)


def cases(trained, synthetic_splits):
    _, test = synthetic_splits
    return [("fresh", fresh(16), SCALING, test.images[0], int(test.labels[0])),
            ("trained", trained.params, trained.scaling, test.images[3], int(test.labels[3]))]


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
@pytest.mark.parametrize("which", ["fresh", "trained"])
def test_forward_numbers_and_loss_match_an_independent_reference(loss, which, trained, synthetic_splits):
    _, params, scaling, pixels, label = next(c for c in cases(trained, synthetic_splits) if c[0] == which)
    e = explain_step(params, loss, scaling, pixels, label)
    p64 = params.astype(np.float64)
    x = pixels.astype(np.float64) * scaling.scale + scaling.offset
    expected_loss, a2, z2 = reference_loss(p64, x, label, loss)
    np.testing.assert_allclose(e.x, x, rtol=1e-15)
    assert e.loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(e.z2, z2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(e.outputs, a2, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(e.probabilities, a2 / a2.sum(), rtol=1e-10, atol=1e-15)
    for unit in e.hidden:
        j = unit["unit"]
        assert unit["z1"] == pytest.approx(x @ p64.w1[:, j] + p64.b1[j], rel=1e-10, abs=1e-12)
        assert unit["z1"] == pytest.approx(unit["dot"] + unit["bias"], rel=1e-12, abs=1e-12)
    assert [u["z1"] for u in e.hidden] == sorted((u["z1"] for u in e.hidden), reverse=True)
    assert max(u["z1"] for u in e.hidden) == pytest.approx((x @ p64.w1 + p64.b1).max())


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
@pytest.mark.parametrize("which", ["fresh", "trained"])
@pytest.mark.parametrize("knob_name", [None, "b1[3]", "w2[3,7]", "b2[7]", "w1[350,3]"])
def test_the_slope_is_the_one_this_test_measures_by_nudging(loss, which, knob_name, trained, synthetic_splits):
    _, params, scaling, pixels, label = next(c for c in cases(trained, synthetic_splits) if c[0] == which)
    knob = parse_knob(knob_name, params.hidden_size) if knob_name else None
    e = explain_step(params, loss, scaling, pixels, label, knob)
    p64 = params.astype(np.float64)
    x = pixels.astype(np.float64) * scaling.scale + scaling.offset
    chosen = e.knob.knob
    measured = own_slope(p64, x, label, loss, chosen)
    # abs: a central difference's round-off, ~1e-16 * L / h; it matters only for the tiny slopes of a
    # trained network's knobs. The default knob (the largest slope) is held to 1e-6 relative alone.
    tiny = 0 if knob_name is None else 1e-9
    assert e.knob.backprop_slope == pytest.approx(measured, rel=1e-6, abs=tiny)
    assert e.knob.nudge_slope == pytest.approx(e.knob.backprop_slope, rel=1e-6, abs=tiny)
    assert e.knob.value == float(p64.w1[chosen.index] if chosen.array == "w1" else getattr(p64, chosen.array)[chosen.index])
    # The chain ends in the slope, and every link's value is what its formula says.
    assert e.knob.chain[-1].value == pytest.approx(e.knob.backprop_slope, rel=1e-12, abs=1e-300)
    dz2 = [t["dz2"] for t in e.knob.chain[0].terms]
    np.testing.assert_allclose(dz2, e.dz2, rtol=1e-15)
    for link in e.knob.chain[1:]:
        if link.terms:
            assert link.value == pytest.approx(sum(t["dz2"] * t["w2"] for t in link.terms), rel=1e-10, abs=1e-15)


def test_the_default_knob_is_the_w1_knob_with_the_largest_slope(synthetic_splits):
    _, test = synthetic_splits
    params = fresh(8, seed=2)
    e = explain_step(params, "cross-entropy", SCALING, test.images[5], int(test.labels[5]))
    assert e.knob.knob.array == "w1"
    assert abs(e.knob.backprop_slope) == pytest.approx(np.abs(e.slopes.w1).max())


def test_the_step_and_its_first_order_prediction_match_this_tests_own_slopes(synthetic_splits):
    _, test = synthetic_splits
    params, label, lr = fresh(4, seed=1), int(test.labels[1]), 0.002
    e = explain_step(params, "cross-entropy", SCALING, test.images[1], label, learning_rate=lr)
    p64 = params.astype(np.float64)
    x = test.images[1].astype(np.float64) * SCALING.scale + SCALING.offset
    slopes = {name: np.zeros_like(getattr(p64, name)) for name in ("w1", "b1", "w2", "b2")}
    for name, array in slopes.items():
        for index in np.ndindex(array.shape):
            array[index] = own_slope(p64, x, label, "cross-entropy", Knob(name, index))
    stepped = Params(**{name: getattr(p64, name) - lr * slope for name, slope in slopes.items()})
    after, a2_after, _ = reference_loss(stepped, x, label, "cross-entropy")
    before, a2_before, _ = reference_loss(p64, x, label, "cross-entropy")
    squared = sum(float((s ** 2).sum()) for s in slopes.values())
    assert e.step.loss_before == pytest.approx(before, rel=1e-12)
    assert e.step.loss_after == pytest.approx(after, rel=1e-8)
    assert e.step.predicted_change == pytest.approx(-lr * squared, rel=1e-6)
    assert e.step.label_probability_before == pytest.approx(a2_before[label], rel=1e-12)
    assert e.step.label_probability_after == pytest.approx(a2_after[label], rel=1e-8)
    assert e.step.loss_after - e.step.loss_before == pytest.approx(e.step.predicted_change, rel=0.05)  # small step
    # The five largest |slopes| (pixels of equal ink tie: compare sizes, then each named knob's slope).
    largest = sorted((abs(v) for a in slopes.values() for v in a.reshape(-1)), reverse=True)[:5]
    np.testing.assert_allclose([abs(slope) for _, slope in e.top_knobs], largest, rtol=1e-6)
    for name, slope in e.top_knobs:
        knob = parse_knob(name, 4)
        assert slope == pytest.approx(slopes[knob.array][knob.index], rel=1e-6)


@pytest.mark.parametrize("text, problem", [
    ("w1[784,0]", "outside the network"), ("w1[0,8]", "outside the network"), ("b2[10]", "outside the network"),
    ("w1[3]", "takes 2 index"), ("b1[1,2]", "takes 1 index"), ("w3[1]", "not a knob name"), ("w1", "not a knob name"),
    ("w1[-1,0]", "not a knob name"),
])
def test_knob_names_outside_the_network_are_refused_with_the_reason(text, problem):
    with pytest.raises(KnobError, match=problem):
        parse_knob(text, hidden_size=8)


def test_knob_names_parse_with_spaces():
    assert parse_knob(" w1[ 350 , 3 ] ", 8) == Knob("w1", (350, 3))
    assert parse_knob("b2[7]", 8).name == "b2[7]"


def test_a_bad_nudge_is_refused():
    with pytest.raises(ValueError, match="positive"):
        explain_step(fresh(4), "cross-entropy", SCALING, np.zeros(INPUT_SIZE, np.uint8), 0, h=0.0)

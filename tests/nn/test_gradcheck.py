"""Hand-derived gradients against central finite differences, through the library and the CLI."""

import json

import pytest
from click.testing import CliRunner

from mlknobs.cli import cli
from mlknobs.nn.gradcheck import gradcheck


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_backprop_matches_finite_differences_for_every_knob(loss):
    result = gradcheck(loss, hidden_size=12, batch_size=6, seed=3)
    assert result.passed, result.max_relative_error
    assert result.knobs_checked == {"w1": 784 * 12, "b1": 12, "w2": 120, "b2": 10}
    assert max(result.max_relative_error.values()) < 1e-5
    for sample in result.samples:
        assert sample.numeric == pytest.approx(sample.backprop, rel=1e-6)


def test_a_wrong_gradient_is_caught(monkeypatch):
    """Break the backward pass on purpose (forget the sigmoid slope): gradcheck must fail on the
    first layer's knobs, whose gradient passes through the slope, and pass on the second's."""
    import mlknobs.nn.model as model

    def forgotten_slope(a, out):
        out[...] = 1.0                   # as if sigmoid'(z1) were 1 everywhere
        return out

    monkeypatch.setattr(model, "sigmoid_slope", forgotten_slope)
    result = gradcheck("cross-entropy", hidden_size=4, batch_size=3)
    assert not result.passed
    assert result.max_relative_error["w1"] > 1e-1 and result.max_relative_error["b1"] > 1e-1
    assert result.max_relative_error["w2"] < 1e-5 and result.max_relative_error["b2"] < 1e-5


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_dropout_backward_matches_finite_differences_through_a_fixed_mask(loss):
    result = gradcheck(loss, hidden_size=10, batch_size=6, seed=5, dropout=0.5)
    assert result.passed, result.max_relative_error
    assert max(result.max_relative_error.values()) < 1e-5


def test_a_dropout_backward_that_ignores_the_mask_is_caught(monkeypatch):
    """A dropped unit must pass no gradient back: forgetting `da1 = dh * keep` must fail w1 and b1."""
    import dataclasses

    import mlknobs.nn.model as model

    original = model.Network.backward

    def mask_forgotten(self, cache, labels):
        return original(self, dataclasses.replace(cache, keep=None), labels)

    monkeypatch.setattr(model.Network, "backward", mask_forgotten)
    result = gradcheck("cross-entropy", hidden_size=10, batch_size=6, seed=5, dropout=0.5)
    assert not result.passed
    assert result.max_relative_error["w1"] > 1e-1 and result.max_relative_error["b1"] > 1e-1
    assert result.max_relative_error["w2"] < 1e-5      # dw2 = h.T @ dz2 still uses the masked h


@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_cli_gradcheck_passes_for_both_losses(loss):
    result = CliRunner().invoke(cli, ["gradcheck", "--loss", loss, "--hidden-size", "8", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output and "w1" in result.output

    result = CliRunner().invoke(cli, ["gradcheck", "--loss", loss, "--hidden-size", "8", "--json"])
    data = json.loads(result.output)
    assert data["passed"] is True and data["loss"] == loss
    assert set(data["max_relative_error"]) == {"w1", "b1", "w2", "b2"}
    assert {"name", "value", "numeric", "backprop", "relative_error"} <= set(data["samples"][0])


def test_cli_gradcheck_exits_1_above_tolerance():
    # A huge h makes the central difference a poor slope estimate: the check must say so.
    result = CliRunner().invoke(cli, ["gradcheck", "--hidden-size", "4", "--eps", "1.0"])
    assert result.exit_code == 1
    assert "FAILED" in result.output

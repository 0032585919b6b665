"""The knobs dataclass: validated once, round-trips through JSON."""

import json

import pytest

from mlknobs.config import TrainConfig


def test_defaults_round_trip_through_json():
    config = TrainConfig(hidden_size=64, loss="mse")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("knobs, message", [
    ({"epochs": 0}, "epochs"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"momentum": 1.0}, "momentum"),
    ({"nesterov": True, "momentum": 0.0}, "nesterov"),
    ({"schedule": "warp"}, "schedule"),
    ({"loss": "hinge"}, "loss"),
    ({"early_stopping": 2}, "validation"),
    ({"dataset": "cifar"}, "dataset"),
])
def test_bad_knobs_are_refused_with_the_reason(knobs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**knobs)


def test_unknown_saved_knobs_are_refused():
    with pytest.raises(ValueError, match="unknown training settings: warp"):
        TrainConfig.from_dict({"warp": 9})

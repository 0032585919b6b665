"""The training settings dataclass: validated once, round-trips through JSON."""

import json

import pytest

from mlknobs.config import TrainConfig


def test_defaults_round_trip_through_json():
    config = TrainConfig(hidden_size=64, loss="mse")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("settings, message", [
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
def test_bad_settings_are_refused_with_the_reason(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_unknown_saved_settings_are_refused():
    with pytest.raises(ValueError, match="unknown training settings: warp"):
        TrainConfig.from_dict({"warp": 9})


@pytest.mark.parametrize(("settings", "message"), [
    ({"hidden_size": 0}, "hidden_size must be a whole number from 1 to 65,536"),
    ({"seed": -1}, "seed must be a whole number from 0 to 9,223,372,036,854,775,807"),
    ({"val_size": 2.0}, "val_size must be a whole number >= 0"),
    ({"learning_rate": float("inf")}, "learning_rate must be a positive number"),
    ({"momentum": 1.0}, "momentum must be a number from 0 to below 1"),
    ({"weight_decay": -0.1}, "weight_decay must be a number >= 0"),
    ({"dropout": True}, "dropout must be a number from 0 to 0.9"),
    ({"elastic_sigma": 0.1}, "elastic_sigma must be a number from 0.5 to 20"),
])
def test_each_range_is_worded_by_the_range_checker(settings, message):
    with pytest.raises(ValueError) as error:
        TrainConfig(**settings)

    assert str(error.value) == f"invalid training settings: {message}"


def test_every_bad_setting_is_reported_not_only_the_first_of_a_wrong_type():
    with pytest.raises(ValueError) as error:
        TrainConfig(momentum="high", dropout=2.0, epochs="3")

    assert error.value.settings == ["epochs", "momentum", "dropout"]


def test_config_sits_below_the_data_layer_and_names_exactly_the_registered_datasets():
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, mlknobs.config; "
                             "print(sorted(m for m in sys.modules if m.startswith(('mlknobs.', 'numpy'))))"],
                            capture_output=True, text=True, check=True).stdout
    from mlknobs.config import DATASET_NAMES
    from mlknobs.data.datasets import DATASETS

    assert "mlknobs.data" not in loaded and "numpy" not in loaded and "mlknobs.config" in loaded
    assert tuple(DATASETS) == DATASET_NAMES

"""training.step.fresh_model: the untrained network is exactly the one loop.fit starts from."""

from __future__ import annotations

import numpy as np
import pytest

from mlknobs.config import TrainConfig
from mlknobs.data.splits import Split
from mlknobs.errors import SettingsError
from mlknobs.nn.model import PARAM_NAMES
from mlknobs.training.loop import fit
from mlknobs.training.step import fresh_model

CLASS_NAMES = [str(d) for d in range(10)]


def fits_start(config: TrainConfig, train, test):
    """The knobs fit holds at its "start" event, and the trained model (whose input scaling never changes)."""
    started = {}

    def keep_start(progress):
        if progress.event == "start":
            started.update({name: getattr(progress.params, name).copy() for name in PARAM_NAMES})

    model = fit(config, train, test, CLASS_NAMES, callback=keep_start)
    return started, model


@pytest.mark.parametrize("settings", [
    {},                                                                  # every training image
    {"train_size": 700, "val_size": 200, "seed": 5},                    # the first 500 of them fitted
    {"input_scaling": "unit", "init_scale": 0.5, "train_size": 300},
])
def test_the_fresh_model_has_the_knobs_and_scaling_fit_starts_from(synthetic_splits, settings):
    train, test = synthetic_splits
    config = TrainConfig(hidden_size=8, epochs=1, batch_size=100, **settings)
    fresh = fresh_model(config, train, CLASS_NAMES)
    started, trained = fits_start(config, train, Split(test.images[:50], test.labels[:50]))
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(getattr(fresh.params, name), started[name], err_msg=name)
    assert fresh.scaling == trained.scaling
    assert fresh.config == config and fresh.class_names == CLASS_NAMES and fresh.history == []


def test_the_scaling_is_fitted_to_the_images_trained_on_not_the_held_out_ones(synthetic_splits):
    train, _ = synthetic_splits
    whole = fresh_model(TrainConfig(hidden_size=4), train, CLASS_NAMES)
    fitted = fresh_model(TrainConfig(hidden_size=4, train_size=1000, val_size=400), train, CLASS_NAMES)
    expected = TrainConfig(hidden_size=4).replace(train_size=600)
    assert fitted.scaling == fresh_model(expected, train, CLASS_NAMES).scaling != whole.scaling


def test_settings_the_data_cannot_meet_are_refused_as_fit_refuses_them(synthetic_splits):
    train, _ = synthetic_splits
    with pytest.raises(SettingsError, match="val_size"):
        fresh_model(TrainConfig(hidden_size=4, train_size=100, val_size=100), train, CLASS_NAMES)

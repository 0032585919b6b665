"""`train --input-scaling standardize|unit|raw`: each one is trained with, recorded in the model file,
and followed by everything that reads the file (load, predict, eval, export) through its scale and offset."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from clirun import run
from mlknobs.config import INPUT_SCALING_NAMES
from mlknobs.io.modelfile import load_model
from mlknobs.nn.losses import LOSSES

# (scale, offset) each scaling must give: x = pixel * scale + offset. standardize's comes from the data.
FIXED = {"unit": (1 / 255, 0.0), "raw": (1.0, 0.0)}
# Settings each scaling learns with (raw pixels saturate Glorot weights: a 1/255 range, a small rate).
RECIPES = {"standardize": (), "unit": (), "raw": ("--init-scale", "0.004", "--lr", "0.002")}


def by_hand(model, pixels: np.ndarray) -> np.ndarray:
    """The probabilities from the stored knobs, scale and offset, computed here in float64."""
    p, s = model.params, model.scaling
    x = pixels.astype(np.float64) * s.scale + s.offset                       # (N, 784)
    a1 = 1 / (1 + np.exp(-(x @ p.w1.astype(np.float64) + p.b1)))            # (N, H)
    z2 = a1 @ p.w2.astype(np.float64) + p.b2                                 # (N, 10)
    loss = LOSSES[model.loss]
    return loss.probabilities_(loss.output_(z2.copy()))


@pytest.mark.parametrize("scaling", INPUT_SCALING_NAMES)
def test_each_scaling_round_trips_through_save_load_predict_and_export(scaling, synthetic_data_dir,
                                                                         synthetic_splits, tmp_path):
    out = tmp_path / f"{scaling}.npz"
    result = run("train", "--input-scaling", scaling, *RECIPES[scaling], "--hidden-size", "16", "--epochs", "1",
                 "--train-size", "2000", "--data-dir", synthetic_data_dir, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    model = load_model(out)
    assert model.config.input_scaling == scaling
    if scaling in FIXED:
        assert (model.scaling.scale, model.scaling.offset) == pytest.approx(FIXED[scaling], abs=1e-12)
    else:
        assert 0.1 < model.scaling.std < 0.5 and model.scaling.offset < 0
    assert model.meta["input_scaling"]["scale"] == pytest.approx(model.scaling.scale)

    _, test = synthetic_splits
    pixels = test.images[:200]
    expected = by_hand(model, pixels)
    np.testing.assert_allclose(model.predict_proba(pixels), expected, atol=1e-5)

    picture = tmp_path / "digit.png"                      # predict: a picture through the same scaling
    Image.fromarray(pixels[0].reshape(28, 28)).save(picture)
    shown = run("predict", "--model", out, "--json", picture)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["label"] == int(np.argmax(model.predict_proba(
        _as_predict_sees(picture))[0]))

    evaluated = run("eval", "--model", out, "--data-dir", synthetic_data_dir, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    accuracy = float(np.mean(np.argmax(by_hand(model, test.images), axis=1) == test.labels))
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(accuracy, abs=1e-3)
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        from mlknobs.io.export import compare_with_onnxruntime, to_onnx

        max_abs_diff, labels_agree = compare_with_onnxruntime(model, to_onnx(model), pixels)
        assert max_abs_diff < 1e-5 and labels_agree == 1.0


def _as_predict_sees(picture) -> np.ndarray:
    from mlknobs.vision.images import read_input

    return read_input(picture).reshape(1, 784)

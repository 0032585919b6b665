"""`mlknobs explain` through the real CLI: a test digit, a picture, a fresh network, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clirun import run
from mlknobs.config import DEFAULTS
from mlknobs.io.modelfile import load_model
from mlknobs.nn.explain import explain_step
from mlknobs.training.step import fresh_model
from pictures import encode, u8

JSON_KEYS = {"index", "label", "loss_name", "loss", "outputs", "probabilities", "z2", "dz2", "hidden", "knob",
             "step", "top_knobs"}
KNOB_KEYS = {"name", "value", "backprop_slope", "nudge_slope", "h", "relative_difference", "chain"}
STEP_KEYS = {"learning_rate", "loss_before", "loss_after", "predicted_change", "label_probability_before",
             "label_probability_after"}


def explain(*args, data_dir):
    return run("explain", "--data-dir", data_dir, *args)


def test_json_has_every_key_and_the_librarys_numbers(synthetic_model_path, synthetic_data_dir, synthetic_splits):
    result = explain("--model", synthetic_model_path, "--index", 4, "--lr", 0.1, "--json", data_dir=synthetic_data_dir)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert JSON_KEYS <= set(data) and KNOB_KEYS <= set(data["knob"]) and STEP_KEYS <= set(data["step"])
    _, test = synthetic_splits
    model = load_model(synthetic_model_path)
    e = explain_step(model.params, model.loss, model.scaling, test.images[4], int(test.labels[4]), learning_rate=0.1)
    assert data["index"] == 4 and data["label"] == int(test.labels[4]) and data["loss_name"] == "cross-entropy"
    assert data["loss"] == pytest.approx(e.loss, rel=1e-12)
    assert len(data["outputs"]) == len(data["probabilities"]) == len(data["z2"]) == len(data["dz2"]) == 10
    np.testing.assert_allclose(data["probabilities"], model.predict_proba(test.images[4:5])[0], rtol=1e-4)
    assert data["knob"]["name"] == e.knob.name and data["knob"]["h"] == 1e-5
    assert data["knob"]["relative_difference"] < 1e-6
    assert data["step"]["learning_rate"] == 0.1 and data["step"]["loss_after"] < data["step"]["loss_before"]
    assert {"unit", "z1", "a1"} <= set(data["hidden"][0]) and {"name", "slope"} <= set(data["top_knobs"][0])


def test_text_walks_through_the_six_parts(synthetic_model_path, synthetic_data_dir):
    result = explain("--model", synthetic_model_path, "--knob", "w1[350,3]", data_dir=synthetic_data_dir)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for part in ("1. The input", "2. Forward", "3. Backward, by the chain rule, to w1[350,3]", "4. The nudge",
                 "5. The step", "6. The knobs this digit turns most"):
        assert part in out
    assert "x[350] = " in out and "dLoss/da1[3] = sum_k dLoss/dz2[k] * w2[3,k]" in out
    assert "dLoss/dw1[350,3] = x[350] * dLoss/dz1[3]" in out and "Loss = -log a2[label]" in out
    assert "float64" in out


def test_a_picture_goes_through_predicts_preprocessing(synthetic_model_path, synthetic_splits, tmp_path):
    _, test = synthetic_splits
    path = tmp_path / "digit.png"
    path.write_bytes(encode(Image.fromarray(u8(test.images[7].reshape(28, 28) / 255)), "PNG"))
    label = int(test.labels[7])
    result = run("explain", "--model", synthetic_model_path, path, "--label", label, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["index"] is None and data["picture"] == str(path) and data["label"] == label
    model = load_model(synthetic_model_path)
    from mlknobs.vision.images import read_input

    e = explain_step(model.params, model.loss, model.scaling, read_input(path, model.dataset), label)
    assert data["loss"] == pytest.approx(e.loss, rel=1e-12)


def test_a_fresh_network_is_the_one_train_starts_from(synthetic_data_dir):
    result = explain("--fresh-network", "--hidden-size", 8, "--seed", 3, "--loss", "mse", "--json",
                     data_dir=synthetic_data_dir)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["fresh_network"] is True and data["loss_name"] == "mse" and len(data["hidden"]) == 5
    assert abs(data["knob"]["backprop_slope"]) > 0 and data["knob"]["relative_difference"] < 1e-6


def test_a_fresh_network_has_the_knobs_and_scaling_of_the_librarys_fresh_model(synthetic_data_dir, synthetic_splits):
    train, test = synthetic_splits
    result = explain("--fresh-network", "--hidden-size", 8, "--seed", 3, "--init-scale", 2, "--index", 5, "--json",
                     data_dir=synthetic_data_dir)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    fresh = fresh_model(DEFAULTS.replace(hidden_size=8, seed=3, init_scale=2.0), train, [str(d) for d in range(10)])
    e = explain_step(fresh.params, fresh.loss, fresh.scaling, test.images[5], int(test.labels[5]),
                     learning_rate=DEFAULTS.learning_rate)
    assert data["loss"] == pytest.approx(e.loss, rel=1e-12) and data["knob"]["name"] == e.knob.name
    assert data["input"] == pytest.approx({"scale": e.scale, "offset": e.offset}, rel=1e-12)
    assert data["knob"]["backprop_slope"] == pytest.approx(e.knob.backprop_slope, rel=1e-9)


def test_a_fresh_network_follows_the_input_scaling_and_init_scale_settings(synthetic_data_dir):
    raw = json.loads(explain("--fresh-network", "--hidden-size", 8, "--input-scaling", "raw", "--json",
                             data_dir=synthetic_data_dir).stdout)
    assert raw["input"] == {"scale": 1.0, "offset": 0.0}
    small = json.loads(explain("--fresh-network", "--hidden-size", 8, "--init-scale", 0.5, "--json",
                               data_dir=synthetic_data_dir).stdout)
    default = json.loads(explain("--fresh-network", "--hidden-size", 8, "--json", data_dir=synthetic_data_dir).stdout)
    # Same seed, half the weights, zero biases: every z1 = x . w1[:, j] halves, and the ranking stays.
    assert [u["unit"] for u in small["hidden"]] == [u["unit"] for u in default["hidden"]]
    for s, d in zip(small["hidden"], default["hidden"]):
        assert s["z1"] == pytest.approx(0.5 * d["z1"], rel=1e-5)


def test_plot_writes_a_picture(synthetic_model_path, synthetic_data_dir, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "step.png"
    result = explain("--model", synthetic_model_path, "--plot", out, data_dir=synthetic_data_dir)
    assert result.exit_code == 0, result.output
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size == (1300, 760)


@pytest.mark.parametrize("args, words", [
    (("--knob", "w1[784,0]"), ["--knob", "outside the network"]),
    (("--knob", "w3[1]"), ["--knob", "not a knob name"]),
    (("--knob", "b1[32]"), ["--knob", "outside the network"]),
    (("--index", "2000"), ["--index", "past the last test digit"]),
    (("--index", "-1"), ["--index"]),
    (("--h", "0"), ["--h"]),
    (("--h", "-1e-5"), ["--h"]),
    (("--h", "nan"), ["--h"]),
    (("--lr", "0"), ["--lr"]),
    (("--hidden-size", "8"), ["--hidden-size", "--fresh-network"]),
    (("--input-scaling", "raw"), ["--input-scaling", "--fresh-network"]),
    (("--label", "3"), ["--label", "PICTURE"]),
    (("--plot", "step.gif"), ["png"]),
])
def test_usage_mistakes_exit_2_naming_the_option(args, words, synthetic_model_path, synthetic_data_dir):
    result = explain("--model", synthetic_model_path, *args, data_dir=synthetic_data_dir)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


def test_a_picture_needs_a_label_and_not_an_index(synthetic_model_path, tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"not a picture")
    result = run("explain", "--model", synthetic_model_path, path)
    assert result.exit_code == 2 and "--label" in result.output
    result = run("explain", "--model", synthetic_model_path, path, "--label", 1, "--index", 2)
    assert result.exit_code == 2 and "not both" in result.output
    result = run("explain", "--model", synthetic_model_path, path, "--label", 1)
    assert result.exit_code == 1 and "Traceback" not in result.output and str(path) in result.output


def test_bad_model_files_get_the_refusals_eval_gives(tmp_path, synthetic_data_dir):
    missing = tmp_path / "none.npz"
    explained = explain("--model", missing, data_dir=synthetic_data_dir)
    evaluated = run("eval", "--model", missing, "--data-dir", synthetic_data_dir)
    assert explained.exit_code == evaluated.exit_code == 1
    assert explained.output == evaluated.output
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    explained = explain("--model", broken, data_dir=synthetic_data_dir)
    evaluated = run("eval", "--model", broken, "--data-dir", synthetic_data_dir)
    assert explained.exit_code == evaluated.exit_code == 1 and explained.output == evaluated.output

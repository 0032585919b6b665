"""`plot activations` (the sigmoid's saturation) and `plot history A B ...` (runs overlaid), through the
real CLI on the synthetic digits."""

import numpy as np
import pytest
from PIL import Image

from clirun import run
from mlknobs.io.curves import load_diverged
from mlknobs.io.modelfile import load_model
from mlknobs.viz.activations import SATURATED_SLOPE, SATURATED_Z, hidden_z1, saturation
from mlknobs.viz.compare import differing_settings, label_of

pytest.importorskip("matplotlib")


def train(data_dir, out, *extra):
    result = run("train", "--hidden-size", "8", "--epochs", "2", "--train-size", "1000", "--data-dir", data_dir,
                 "--out", out, "--quiet", *extra)
    return result


def test_the_saturation_threshold_is_where_the_slope_falls_below_the_stated_value():
    a = 1 / (1 + np.exp(-SATURATED_Z))
    assert a * (1 - a) == pytest.approx(SATURATED_SLOPE)
    z1 = np.array([[0.0, 10.0], [-10.0, 10.0], [1.0, 10.0], [0.5, -9.0]])       # unit 1 always saturated
    assert saturation(z1) == (5 / 8, 1 / 2)


def test_plot_activations_draws_a_picture_and_large_initial_weights_saturate_more(synthetic_data_dir,
                                                                                 synthetic_splits, tmp_path):
    shares = []
    for scale in ("1", "20"):
        out = tmp_path / f"init{scale}.npz"
        assert train(synthetic_data_dir, out, "--init-scale", scale, "--lr", "0.01").exit_code == 0
        model = load_model(out)
        assert model.config.init_scale == float(scale)
        shares.append(saturation(hidden_z1(model, synthetic_splits[1].images[:500]))[0])
        picture = tmp_path / f"act{scale}.png"
        result = run("plot", "activations", "--model", out, "--data-dir", synthetic_data_dir, "--out", picture)
        assert result.exit_code == 0, result.output
        assert Image.open(picture).size[0] > 800
    assert shares[1] > shares[0] + 0.3


def test_plot_history_overlays_models_and_a_diverged_curve(synthetic_data_dir, tmp_path):
    paths = []
    for lr in ("0.1", "0.5"):
        paths.append(tmp_path / f"lr{lr}.npz")
        assert train(synthetic_data_dir, paths[-1], "--lr", lr, "--log-every", "2").exit_code == 0
    assert train(synthetic_data_dir, tmp_path / "big.npz", "--lr", "1000", "--log-every", "2").exit_code == 1
    paths.append(tmp_path / "big.diverged.json")
    models = [load_model(p) for p in paths[:2]] + [load_diverged(paths[2])]
    assert differing_settings(models) == ["learning_rate"]
    assert label_of(models[2], "big", ["learning_rate"]) == "learning_rate=1000 (diverged)"
    picture = tmp_path / "lr.png"
    result = run("plot", "history", *paths, "--out", picture)
    assert result.exit_code == 0, result.output
    assert Image.open(picture).size[0] >= 1400                  # three panels: the step curves included


def test_only_plot_history_takes_several_models(synthetic_model_path, tmp_path):
    result = run("plot", "weights", synthetic_model_path, synthetic_model_path, "--out", tmp_path / "w.png")
    assert result.exit_code == 2 and "only plot history" in result.stderr


def test_plot_sweep_curves_draws_every_runs_step_curve_failed_ones_included(synthetic_data_dir, tmp_path):
    out = tmp_path / "s"
    swept = run("sweep", "--hidden-size", "8", "--epochs", "1", "--val-size", "500", "--train-size", "2000",
                "--lr", "0.5,1000", "--log-every", "3", "--jobs", "1", "--data-dir", synthetic_data_dir,
                "--out-dir", out, "--quiet")
    assert swept.exit_code == 0, swept.output
    picture = tmp_path / "curves.png"
    result = run("plot", "sweep", "--sweep", out, "--curves", "--out", picture)
    assert result.exit_code == 0, result.output
    assert Image.open(picture).size[0] > 800
    assert run("plot", "weights", "--curves", "--out", tmp_path / "w.png").exit_code == 2


def test_a_sweep_without_curves_is_a_fact_from_the_library_and_a_hint_from_the_cli():
    from mlknobs.cli.messages import to_click
    from mlknobs.errors import NoStepCurves
    from mlknobs.viz.compare import sweep_curves_figure

    with pytest.raises(NoStepCurves) as refused:
        sweep_curves_figure([{"run": "a", "status": "ok", "settings": {}}], {"learning_rate": [0.5]}, "s")
    assert refused.value.name == "s" and "--" not in str(refused.value)      # the library never names a flag
    worded = to_click(refused.value, None)
    assert worded.exit_code == 1 and worded.message.startswith("s holds no step curves")
    assert "sweep with --log-every N" in worded.message

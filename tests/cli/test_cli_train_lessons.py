"""`mlknobs train --train-size / --log-every`, and what a diverged run leaves, through the real CLI
on the synthetic digits standing in for MNIST."""

import json

from clirun import run
from mlknobs.io.curves import load_diverged
from mlknobs.io.modelfile import load_model


def train(data_dir, out, *extra):
    return run("train", "--hidden-size", "8", "--epochs", "1", "--data-dir", data_dir, "--out", out,
               "--quiet", *extra)


def test_train_size_and_log_every_reach_the_json_the_model_file_and_info(synthetic_data_dir, tmp_path):
    out = tmp_path / "m.npz"
    result = train(synthetic_data_dir, out, "--train-size", "640", "--log-every", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [step for step, _ in report["step_losses"]] == [2, 4]        # 640 digits: 5 batches of 128
    assert report["config"]["train_size"] == 640
    model = load_model(out)
    assert model.config.train_size == 640 and model.step_losses == report["step_losses"]
    assert "train_size=640" in run("info", out).stdout


def test_json_has_no_step_losses_without_log_every(synthetic_data_dir, tmp_path):
    result = train(synthetic_data_dir, tmp_path / "m.npz", "--train-size", "256", "--json")
    assert result.exit_code == 0, result.output
    assert "step_losses" not in json.loads(result.stdout)


def test_bad_train_size_and_log_every_are_usage_errors_naming_the_option(synthetic_data_dir, tmp_path):
    for args, option in ((("--train-size", "0"), "--train-size"), (("--train-size", "10001"), "--train-size"),
                         (("--log-every", "0"), "--log-every")):
        result = train(synthetic_data_dir, tmp_path / "m.npz", *args)
        assert result.exit_code == 2, (args, result.output)
        assert option in result.stderr
    assert not (tmp_path / "m.npz").exists()


def test_a_diverged_run_keeps_its_curve_where_the_error_says(synthetic_data_dir, tmp_path):
    out = tmp_path / "m.npz"
    result = train(synthetic_data_dir, out, "--lr", "1000", "--log-every", "1", "--train-size", "2000")
    assert result.exit_code == 1
    curve = tmp_path / "m.diverged.json"
    assert str(curve) in result.stderr and "mlknobs lr-find" in result.stderr
    assert "--lr " not in result.stderr                      # no guess that may collapse again
    kept = load_diverged(curve)
    assert kept.config.learning_rate == 1000 and len(kept.step_losses) >= 1
    assert not out.exists()

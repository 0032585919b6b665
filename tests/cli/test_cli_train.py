"""`mlknobs train` and `mlknobs info` through the real CLI, on the synthetic digits standing in for
MNIST; tests marked real_data train on real MNIST."""

import json
import os

import numpy as np
import pytest

import mlknobs.training.loop
from clirun import run
from mlknobs.io.modelfile import load_model


@pytest.fixture
def mnist_data_dir(request):
    """The data dir "mnist" is trained from: the synthetic digits (registered as "mnist" for the
    test), or real MNIST (conftest's mnist_data_dir) for a test marked real_data."""
    if request.node.get_closest_marker("real_data"):
        return request.getfixturevalue("mnist_data_dir")    # the same name: conftest's fixture
    return request.getfixturevalue("synthetic_data_dir")


def train_args(data_dir, out, *extra):
    return ["train", "--hidden-size", "16", "--epochs", "2", "--lr", "0.5",
            "--data-dir", data_dir, "--out", out, "--quiet", *extra]


def test_train_json_reports_results_and_saves_the_model(mnist_data_dir, tmp_path):
    out = tmp_path / "m.npz"
    result = run(*train_args(mnist_data_dir, out, "--json", "--val-size", "5000"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"test_accuracy", "test_loss", "epochs", "seconds", "model", "history"} <= set(report)
    assert 0.85 < report["test_accuracy"] <= 1 and report["epochs"] == 2 and report["model"] == str(out)
    assert len(report["history"]) == 2 and "val_accuracy" in report["history"][0]
    model = load_model(out)
    assert model.results["test_accuracy"] == report["test_accuracy"]
    assert model.config.hidden_size == 16 and model.config.val_size == 5000
    assert not (tmp_path / "m.ckpt.npz").exists()     # the checkpoint goes once the model is saved


def test_train_prints_epoch_lines_and_the_test_accuracy(mnist_data_dir, tmp_path):
    args = [a for a in train_args(mnist_data_dir, tmp_path / "m.npz") if a != "--quiet"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "epoch 1/2" in result.stderr and "epoch 2/2" in result.stderr
    assert "test accuracy" in result.stdout


def test_environment_variables_set_the_defaults(mnist_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLKNOBS_DATA_DIR", str(mnist_data_dir))
    monkeypatch.setenv("MLKNOBS_MODEL", str(tmp_path / "env.npz"))
    result = run("train", "--hidden-size", "8", "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env.npz").exists()
    assert "env.npz" in run("info").stdout


def test_info_describes_the_model(mnist_data_dir, tmp_path):
    out = tmp_path / "m.npz"
    assert run(*train_args(mnist_data_dir, out)).exit_code == 0
    text = run("info", out)
    assert text.exit_code == 0
    assert "784 -> 16 sigmoid -> 10 softmax" in text.stdout and "test" in text.stdout
    data = json.loads(run("info", out, "--json").stdout)
    assert data["architecture"]["hidden_size"] == 16 and len(data["history"]) == 2
    assert data["config"]["learning_rate"] == 0.5 and "test_accuracy" in data


def test_ctrl_c_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(mnist_data_dir, tmp_path, monkeypatch):
    whole = tmp_path / "whole.npz"
    assert run(*train_args(mnist_data_dir, whole, "--epochs", "3")).exit_code == 0

    out = tmp_path / "m.npz"
    real_run_epoch = mlknobs.training.loop._Fit.run_epoch

    def ctrl_c_in_epoch_3(self, epoch):
        if epoch == 2:                  # 0-based: the third epoch
            raise KeyboardInterrupt
        return real_run_epoch(self, epoch)

    monkeypatch.setattr(mlknobs.training.loop._Fit, "run_epoch", ctrl_c_in_epoch_3)
    result = run(*train_args(mnist_data_dir, out, "--epochs", "3"))
    assert result.exit_code == 130
    assert "epoch 2 of 3" in result.stderr and "mlknobs train --resume" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() and (tmp_path / "m.ckpt.npz").exists()

    monkeypatch.setattr(mlknobs.training.loop._Fit, "run_epoch", real_run_epoch)
    clash = run("train", "--resume", "--lr", "0.1", "--data-dir", mnist_data_dir, "--out", out)
    assert clash.exit_code == 1 and "learning_rate" in clash.stderr and "Drop --lr" in clash.stderr
    assert "--fresh" in clash.stderr

    result = run("train", "--resume", "--data-dir", mnist_data_dir, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    a, b = load_model(whole), load_model(out)
    for name, array in a.params.arrays().items():
        np.testing.assert_array_equal(getattr(b.params, name), array)
    assert not (tmp_path / "m.ckpt.npz").exists()


def test_resume_without_a_checkpoint_says_so(tmp_path):
    result = run("train", "--resume", "--out", tmp_path / "m.npz")
    assert result.exit_code == 1 and "nothing to resume" in result.stderr


def test_a_huge_learning_rate_exits_1_and_leaves_the_old_model_untouched(mnist_data_dir, tmp_path):
    out = tmp_path / "m.npz"
    assert run(*train_args(mnist_data_dir, out, "--epochs", "1")).exit_code == 0
    before = out.read_bytes()
    result = run(*train_args(mnist_data_dir, out, "--lr", "1000"))
    assert result.exit_code == 1
    assert "smaller learning rate" in result.stderr and "Traceback" not in result.output
    assert out.read_bytes() == before
    # no checkpoint or temp left; only the diverged run's curve beside the model (the error names it)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.diverged.json", "m.npz"]


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--lr", "-1"], ["--momentum", "1"],
                                  ["--loss", "hinge"], ["--schedule", "warp"]])
def test_bad_options_are_usage_errors(args, tmp_path):
    result = run("train", "--out", tmp_path / "m.npz", *args)
    assert result.exit_code == 2


def test_invalid_combinations_are_one_line_errors(tmp_path):
    result = run("train", "--out", tmp_path / "m.npz", "--early-stopping", "3")
    assert result.exit_code == 2 and "--early-stopping needs a validation set (--val-size above 0)" in result.stderr
    assert "val_size" not in result.stderr


@pytest.mark.real_data
def test_default_three_epochs_reach_98_percent_on_real_mnist(mnist_data_dir, tmp_path):
    """The README's promise: `mlknobs train --epochs 3` with defaults, measured on the real test set."""
    result = run("train", "--epochs", "3", "--data-dir", mnist_data_dir, "--out", tmp_path / "m.npz",
                 "--json", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test_accuracy"] >= 0.98


def test_an_interrupted_runs_checkpoint_is_not_silently_replaced(mnist_data_dir, tmp_path):
    out = tmp_path / "m.npz"
    checkpoint = tmp_path / "m.ckpt.npz"
    checkpoint.write_bytes(b"an interrupted run's state")
    result = run(*train_args(mnist_data_dir, out))
    assert result.exit_code == 1 and "--resume" in result.stderr and "--fresh" in result.stderr
    assert checkpoint.read_bytes() == b"an interrupted run's state"
    result = run(*train_args(mnist_data_dir, out, "--fresh"))
    assert result.exit_code == 0, result.output
    assert out.exists() and not checkpoint.exists()


def test_output_paths_are_checked_before_training(mnist_data_dir, tmp_path):
    result = run(*train_args(mnist_data_dir, tmp_path / "missing" / "m.npz"))
    assert result.exit_code == 1 and "does not exist" in result.stderr and "Traceback" not in result.output
    out = tmp_path / "m.npz"
    for snapshots, message in ((out, "must be a .gif"), (tmp_path / "m.ckpt.npz", "must be a .gif"),
                               (tmp_path / "w.png", "must be a .gif")):
        result = run(*train_args(mnist_data_dir, out, "--snapshots", snapshots))
        assert result.exit_code == 2 and message in result.output
    assert not out.exists()


def test_a_batch_larger_than_the_data_allocates_only_what_the_data_needs(mnist_data_dir, tmp_path, monkeypatch):
    """--batch-size 65536 on 300 digits, 100 of them held out: the training buffers (the Stepper's
    pixels and its Network's, dropout's included) get the 200 rows of the fit set, as
    training/loop.py bounds them, not 65,536 rows (~200 MB for x alone); the networks that
    evaluate the validation and test digits get at most their own rows."""
    from mlknobs.nn.model import Network
    from mlknobs.training.step import Stepper

    networks, steppers = [], []

    def recording(init, built):
        def recording_init(self, *args, **kwargs):
            init(self, *args, **kwargs)
            built.append(self)
        return recording_init

    monkeypatch.setattr(Network, "__init__", recording(Network.__init__, networks))
    monkeypatch.setattr(Stepper, "__init__", recording(Stepper.__init__, steppers))
    result = run(*train_args(mnist_data_dir, tmp_path / "m.npz", "--batch-size", "65536", "--epochs", "1",
                             "--train-size", "300", "--val-size", "100", "--dropout", "0.2"))
    assert result.exit_code == 0, result.output

    [stepper] = steppers
    assert stepper.pixels.shape == (200, 784)
    buffers = ("x", "a1", "a2", "dz2", "dz1", "slope", "h", "keep")
    assert {name: len(getattr(stepper.net, name)) for name in buffers} == dict.fromkeys(buffers, 200)
    # then the 100 validation digits at once, and the 2,000 synthetic test digits in one chunk of
    # nn.model.outputs (2,000 rows at most): neither takes the batch size
    assert [net.max_batch for net in networks] == [200, 100, 2000]


def test_a_tiny_learning_rate_is_slow_not_collapsed(mnist_data_dir, tmp_path):
    result = run(*train_args(mnist_data_dir, tmp_path / "m.npz", "--lr", "1e-5", "--epochs", "1"))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args", [["--lr", "nan"], ["--weight-decay", "inf"]])
def test_non_finite_settings_are_usage_errors(args, tmp_path):
    result = run("train", "--out", tmp_path / "m.npz", *args)
    assert result.exit_code == 2 and "not a finite number" in result.output


def test_a_validation_set_as_large_as_the_data_is_a_usage_error_naming_the_option(mnist_data_dir, tmp_path):
    result = run(*train_args(mnist_data_dir, tmp_path / "m.npz", "--val-size", "60000"))
    assert result.exit_code == 2 and "--val-size 60,000 leaves nothing to train on" in result.stderr


def test_learning_rate_is_an_alias_of_lr(tmp_path):
    result = run("train", "--out", tmp_path / "m.npz", "--learning-rate", "-1")
    assert result.exit_code == 2 and "--lr" in result.stderr


def test_more_threads_than_cores_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKNOBS_THREADS", "4096")
    result = run("train", "--out", tmp_path / "m.npz")
    assert result.exit_code == 2 and "--threads" in result.stderr and "4096" in result.stderr


def test_augment_sets_the_measured_distortions_unless_given_and_info_shows_them(mnist_data_dir, tmp_path):
    from mlknobs.config import AUGMENT_DEFAULTS

    out = tmp_path / "m.npz"
    result = run(*train_args(mnist_data_dir, out, "--epochs", "1", "--augment", "--rotate", "5", "--dropout", "0.25"))
    assert result.exit_code == 0, result.output
    config = load_model(out).config
    assert config.rotate == 5 and config.dropout == 0.25
    assert all(getattr(config, name) == value for name, value in AUGMENT_DEFAULTS.items() if name != "rotate")
    info = run("info", out).stdout
    assert "rotate=5.0" in info and "elastic=1.0" in info and "dropout=0.25" in info


def test_distortion_limits_are_usage_errors(tmp_path):
    result = run("train", "--out", tmp_path / "m.npz", "--rotate", "400")
    assert result.exit_code == 2 and "--rotate" in result.stderr


def test_a_second_run_on_a_live_runs_output_is_refused_naming_the_holder(mnist_data_dir, tmp_path):
    from mlknobs.files import OutputLock

    out = tmp_path / "m.npz"
    (tmp_path / "m.ckpt.npz").write_bytes(b"the live run's checkpoint")
    with OutputLock(out):                      # a live run (this process) owns the output
        for extra in ([], ["--fresh"]):        # --fresh replaces an interrupted run, never a live one
            result = run(*train_args(mnist_data_dir, out, *extra))
            assert result.exit_code == 1 and f"pid {os.getpid()}" in result.stderr, result.output
    assert (tmp_path / "m.ckpt.npz").read_bytes() == b"the live run's checkpoint" and not out.exists()

"""`mlknobs train --init-from MODEL`: a new run that starts from a trained model's knobs."""

from __future__ import annotations

import hashlib
import json

import pytest

from clirun import run
from mlknobs.io.modelfile import load_model


def train(data_dir, out, *extra):
    return run("train", "--epochs", "1", "--hidden-size", "32", "--data-dir", data_dir, "--out", out, "--quiet",
               "--json", *extra)


def test_a_run_from_a_trained_model_starts_where_it_left_off(synthetic_model_path, synthetic_data_dir, tmp_path):
    fresh = train(synthetic_data_dir, tmp_path / "fresh.npz")
    onward = train(synthetic_data_dir, tmp_path / "onward.npz", "--init-from", synthetic_model_path)
    assert fresh.exit_code == 0 and onward.exit_code == 0, onward.output
    fresh_loss = json.loads(fresh.stdout)["history"][0]["train_loss"]
    onward_loss = json.loads(onward.stdout)["history"][0]["train_loss"]
    assert onward_loss < 0.6 * fresh_loss             # far below: it never started from scratch

    parent, child = load_model(synthetic_model_path), load_model(tmp_path / "onward.npz")
    assert child.scaling == parent.scaling             # the parent's input scaling, not refitted
    sha = hashlib.sha256(synthetic_model_path.read_bytes()).hexdigest()
    assert child.parent == {"path": str(synthetic_model_path), "sha256": sha, "dataset": "mnist",
                            "test_accuracy": parent.results["test_accuracy"]}
    info = run("info", tmp_path / "onward.npz").stdout
    assert f"trained from  {synthetic_model_path}" in info and sha[:12] in info


def test_the_hidden_size_must_match_and_the_error_says_what_the_model_has(synthetic_model_path,
                                                                          synthetic_data_dir, tmp_path):
    result = train(synthetic_data_dir, tmp_path / "m.npz", "--init-from", synthetic_model_path,
                   "--hidden-size", "64")
    assert result.exit_code == 2
    assert "--hidden-size 64 does not match" in result.stderr and "which has 32 hidden units" in result.stderr
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("content, words", [(None, "point --init-from at a model file"),
                                            (b"PK\x03\x04 not really a zip", "not an mlknobs model file")])
def test_a_missing_or_damaged_initial_model_is_refused_like_eval_refuses_it(synthetic_data_dir, tmp_path,
                                                                           content, words):
    model = tmp_path / "parent.npz"
    if content is not None:
        model.write_bytes(content)
    result = train(synthetic_data_dir, tmp_path / "m.npz", "--init-from", model)
    assert result.exit_code == 1 and words in result.stderr and "Traceback" not in result.output


def test_resume_and_init_from_do_not_mix(synthetic_model_path, tmp_path):
    result = run("train", "--resume", "--init-from", synthetic_model_path, "--out", tmp_path / "m.npz")
    assert result.exit_code == 2 and "--init-from" in result.stderr


def test_resume_and_augment_do_not_mix(tmp_path):
    result = run("train", "--resume", "--augment", "--out", tmp_path / "m.npz")
    assert result.exit_code == 2 and "drop --augment" in result.stderr


def test_a_model_cannot_be_saved_under_a_checkpoints_name(tmp_path):
    result = run("train", "--out", tmp_path / "m.ckpt.npz")
    assert result.exit_code == 2 and "checkpoint's name" in result.stderr


def test_fresh_that_diverges_at_once_leaves_the_interrupted_runs_checkpoint(synthetic_data_dir, tmp_path):
    checkpoint = tmp_path / "m.ckpt.npz"
    checkpoint.write_bytes(b"an interrupted run's state")
    result = train(synthetic_data_dir, tmp_path / "m.npz", "--fresh", "--lr", "1000")
    assert result.exit_code == 1 and "smaller learning rate" in result.stderr
    assert checkpoint.read_bytes() == b"an interrupted run's state"


def test_plain_model_files_leave_out_the_settings_older_readers_do_not_know(synthetic_model_path):
    import numpy as np

    with np.load(synthetic_model_path, allow_pickle=False) as npz:
        saved = json.loads(str(npz["metadata"]))["config"]
    assert "dropout" not in saved and "rotate" not in saved
    assert load_model(synthetic_model_path).config.dropout == 0.0

"""`mlknobs eval` through the real CLI on a small model trained on the synthetic digits."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest

from clirun import run
from mlknobs.config import TrainConfig
from mlknobs.data import datasets
from mlknobs.data.datasets import FASHION_MNIST
from mlknobs.io.modelfile import load_model, save_model


def strict_json(text: str):
    """Parse JSON refusing NaN and Infinity, which are not JSON."""
    def refuse(token):
        raise ValueError(f"not valid JSON: {token}")
    return json.loads(text, parse_constant=refuse)


def test_eval_json_schema_and_numbers(synthetic_model_path, synthetic_data_dir, synthetic_splits):
    result = run("eval", "--model", synthetic_model_path, "--data-dir", synthetic_data_dir, "--json")
    assert result.exit_code == 0, result.output
    report = strict_json(result.stdout)
    model = load_model(synthetic_model_path)
    assert report["accuracy"] == model.results["test_accuracy"]
    assert report["n"] == len(synthetic_splits[1]) and report["dataset"] == "mnist" and report["split"] == "test"
    assert isinstance(report["loss"], float) and report["loss"] > 0
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == report["n"]
    assert np.trace(confusion) / report["n"] == report["accuracy"]
    assert [c["label"] for c in report["per_class"]] == list(range(10))
    for c in report["per_class"]:
        assert set(c) == {"label", "name", "precision", "recall", "f1", "support"}
        assert c["name"] == str(c["label"])
        assert c["support"] == confusion[c["label"]].sum()
        assert c["recall"] == pytest.approx(confusion[c["label"], c["label"]] / c["support"])
    assert sum(c["support"] for c in report["per_class"]) == report["n"]
    top = report["most_confused"][0]
    assert top["count"] == max(confusion[t, p] for t in range(10) for p in range(10) if t != p)


def test_eval_text_report(synthetic_model_path, synthetic_data_dir, synthetic_splits):
    result = run("eval", "--model", synthetic_model_path, "--data-dir", synthetic_data_dir)
    assert result.exit_code == 0, result.output
    accuracy = load_model(synthetic_model_path).results["test_accuracy"]
    n = len(synthetic_splits[1])
    text = result.stdout
    assert f"accuracy   {accuracy * 100:.2f} %" in text
    assert f"{n:,} images" in text
    for heading in ("precision", "recall", "F1", "support", "confusion matrix", "most confused"):
        assert heading in text
    # Ten rows of the confusion matrix, each with ten cells that add up to the class's support.
    rows = [line for line in text.splitlines() if re.fullmatch(r"\d( +([\d,]+|\.)){10}", line)]
    assert len(rows) == 10
    counts = [[0 if cell == "." else int(cell.replace(",", "")) for cell in row.split()[1:]] for row in rows]
    assert sum(map(sum, counts)) == n


def test_eval_on_the_training_split(synthetic_model_path, synthetic_data_dir, synthetic_splits):
    result = run("eval", "--model", synthetic_model_path, "--data-dir", synthetic_data_dir, "--split", "train",
                 "--json")
    assert result.exit_code == 0, result.output
    report = strict_json(result.stdout)
    assert report["split"] == "train" and report["n"] == len(synthetic_splits[0])


def test_a_class_never_predicted_keeps_json_valid(synthetic_model_path, synthetic_data_dir, tmp_path):
    """A model that always answers 3: precision 0/0 for the other classes is reported as 0.0."""
    model = load_model(synthetic_model_path)
    model.params.w2[:] = 0
    model.params.b2[:] = 0
    model.params.b2[3] = 10
    always_three = tmp_path / "always3.npz"
    save_model(always_three, model)
    result = run("eval", "--model", always_three, "--data-dir", synthetic_data_dir, "--json")
    assert result.exit_code == 0, result.output
    report = strict_json(result.stdout)
    for c in report["per_class"]:
        if c["label"] != 3:
            assert (c["precision"], c["recall"], c["f1"]) == (0.0, 0.0, 0.0)
    assert report["per_class"][3]["recall"] == 1.0
    text = run("eval", "--model", always_three, "--data-dir", synthetic_data_dir)
    assert text.exit_code == 0 and "nan" not in text.stdout.lower()


def test_eval_reads_the_models_own_dataset(synthetic_model_path, synthetic_mnist, tmp_path, monkeypatch):
    """A Fashion-MNIST model is evaluated on Fashion-MNIST with its class names.

    The synthetic digits stand in for Fashion-MNIST here, served from a mirror of their own.
    """
    shared = tmp_path / "mirror"
    shutil.copytree(synthetic_mnist.mirror / "mnist", shared / "fashion-mnist")
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist",
                        replace(synthetic_mnist.spec, name="fashion-mnist", class_names=FASHION_MNIST.class_names))
    model = load_model(synthetic_model_path)
    model.config = TrainConfig(**{**model.config.to_dict(), "dataset": "fashion-mnist"})
    model.class_names = list(FASHION_MNIST.class_names)
    fashion = tmp_path / "fashion.npz"
    save_model(fashion, model)
    result = run("eval", "--model", fashion, "--data-dir", tmp_path / "data", "--mirror", shared, "--json")
    assert result.exit_code == 0, result.output
    report = strict_json(result.stdout)
    assert report["dataset"] == "fashion-mnist"
    assert [c["name"] for c in report["per_class"]] == list(FASHION_MNIST.class_names)
    text = run("eval", "--model", fashion, "--data-dir", tmp_path / "data").stdout
    assert "9 Ankle boot" in text


def test_eval_without_a_model_points_to_train(tmp_path):
    result = run("eval", "--model", tmp_path / "missing.npz", "--data-dir", tmp_path)
    assert result.exit_code == 1
    assert "mlknobs train" in result.output and "Traceback" not in result.output
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    result = run("eval", "--model", broken, "--data-dir", tmp_path)
    assert result.exit_code == 1 and "not an mlknobs model file" in result.output

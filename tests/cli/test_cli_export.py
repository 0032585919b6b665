"""`mlknobs export` through the real CLI: the file, the report (text and JSON), and the usual errors."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from clirun import run

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx") is None or
                                importlib.util.find_spec("onnxruntime") is None,
                                reason="needs the export extra (onnx, onnxruntime)")

JSON_KEYS = {"out", "opset", "inputs", "outputs", "max_abs_diff"}


def test_export_writes_the_file_and_reports_the_comparison(synthetic_model_path, synthetic_data_dir, tmp_path):
    import onnx

    out = tmp_path / "model.onnx"
    result = run("export", "--model", synthetic_model_path, "--out", out, "--data-dir", synthetic_data_dir)
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(onnx.load(out), full_check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == f"wrote {out} (ONNX opset 17)"
    assert "pixels: float32 (N, 784)" in lines[1] and "probabilities: float32 (N, 10)" in lines[2]
    assert "label: int64 (N)" in lines[3]
    assert lines[4].startswith("onnxruntime vs mlknobs on 2,000 mnist test images: max abs diff ")
    assert lines[4].endswith("labels agree on 2,000 of 2,000") and len(lines) == 5
    assert result.stderr == ""


def test_export_json(synthetic_model_path, synthetic_data_dir, tmp_path):
    out = tmp_path / "model.onnx"
    result = run("export", "--model", synthetic_model_path, "--out", out, "--data-dir", synthetic_data_dir,
                 "--check-images", "300", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert JSON_KEYS <= set(report)
    assert report["out"] == str(out) and report["opset"] >= 17
    assert report["inputs"] == [{"name": "pixels", "type": "float32", "shape": ["N", 784]}]
    assert [o["name"] for o in report["outputs"]] == ["probabilities", "label"]
    assert 0 <= report["max_abs_diff"] < 1e-5 and report["labels_agree"] == 1.0
    assert report["compared_on"] == "mnist test images" and report["images_compared"] == 300
    assert report["notes"] == []


def test_check_images_0_needs_no_dataset(synthetic_model_path, tmp_path):
    result = run("export", "--model", synthetic_model_path, "--out", tmp_path / "m.onnx", "--check-images", "0",
                 "--data-dir", tmp_path / "nowhere", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_diff"] is None
    assert (tmp_path / "m.onnx").is_file() and not (tmp_path / "nowhere").exists()


def test_a_dataset_that_cannot_be_loaded_means_random_pixels_and_a_note(synthetic_model_path, synthetic_mnist,
                                                                        monkeypatch, tmp_path):
    from mlknobs.data import datasets

    monkeypatch.setitem(datasets.DATASETS, "mnist", synthetic_mnist.spec)     # no built-in mirrors: offline
    result = run("export", "--model", synthetic_model_path, "--out", tmp_path / "m.onnx", "--json",
                 "--data-dir", tmp_path / "empty", "--check-images", "500")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["compared_on"] == "random-pixel images" and report["max_abs_diff"] < 1e-5
    (text,) = report["notes"]
    assert "could not be loaded" in text and "random pixels" in text
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Note: mnist test images could not be loaded, so images of random pixels")
    assert len(lines) > 1 and all(line.startswith("  ") for line in lines[1:])     # the reason, as lines


def test_without_onnxruntime_the_file_is_written_and_a_note_says_how_to_install(synthetic_model_path, monkeypatch,
                                                                                 tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    out = tmp_path / "m.onnx"
    result = run("export", "--model", synthetic_model_path, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["max_abs_diff"] is None and out.is_file()
    assert 'pip install "mlknobs[export]"' in report["notes"][0]
    assert 'pip install "mlknobs[export]"' in result.stderr


def test_without_onnx_the_extra_is_named(synthetic_model_path, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    result = run("export", "--model", synthetic_model_path, "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1
    assert result.stderr.strip() == ('Error: mlknobs export needs onnx, which is not installed: install the export '
                                     'extra: pip install "mlknobs[export]" (from a clone: pip install ".[export]")')
    assert not (tmp_path / "m.onnx").exists()


def test_a_missing_model_is_one_line(tmp_path):
    result = run("export", "--model", tmp_path / "none.npz", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: no model file at {tmp_path / 'none.npz'}: train one with "
                                     f"`mlknobs train` (or point --model / MLKNOBS_MODEL at one)")
    assert not (tmp_path / "m.onnx").exists()


def test_a_damaged_model_is_one_line(synthetic_model_path, tmp_path):
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(synthetic_model_path.read_bytes()[:1000])
    result = run("export", "--model", damaged, "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: {damaged}") and "train a new one with `mlknobs train`" in line
    assert not (tmp_path / "m.onnx").exists()


def test_an_unwritable_out_is_one_line(synthetic_model_path, tmp_path):
    result = run("export", "--model", synthetic_model_path, "--out", tmp_path / "missing" / "m.onnx")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: cannot write {tmp_path / 'missing' / 'm.onnx'}: folder "
                                     f"{tmp_path / 'missing'} does not exist")
    result = run("export", "--model", synthetic_model_path, "--out", "/dev/null")
    assert result.exit_code == 1
    assert "it is a character device, not a regular file" in result.stderr


def test_out_is_required(synthetic_model_path):
    result = run("export", "--model", synthetic_model_path)
    assert result.exit_code == 2 and "--out" in result.stderr


def test_check_images_is_bounded_by_a_test_set(synthetic_model_path, tmp_path):
    result = run("export", "--model", synthetic_model_path, "--out", tmp_path / "m.onnx", "--check-images", 10**12)
    assert result.exit_code == 2 and "--check-images" in result.output
    assert not (tmp_path / "m.onnx").exists()

"""No command writes its output over a file it reads: export, plot, explain and train refuse an output that
is one of their inputs (the same path, a symlink either way, a hard link) with a usage error naming
both options, before any work, and the input is left as it was."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from clirun import run

needs = {extra: pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in modules), reason=f"needs {extra}")
         for extra, modules in {"export": ("onnx", "onnxruntime"), "plot": ("matplotlib",)}.items()}


def same_path(source: Path, folder: Path) -> Path:
    return source


def relative_path(source: Path, folder: Path) -> Path:
    return Path(os.path.relpath(source)).parent / "." / source.name


def symlink_to_input(source: Path, folder: Path) -> Path:
    link = folder / f"link-{source.stem}{source.suffix}"
    link.symlink_to(source)
    return link


def hard_link(source: Path, folder: Path) -> Path:
    link = folder / f"hard-{source.stem}{source.suffix}"
    os.link(source, link)
    return link


WAYS = [same_path, relative_path, symlink_to_input, hard_link]


def copy_of(path: Path, folder: Path, name: str) -> Path:
    """The session's model copied into this test's folder, so that a test can never harm it."""
    folder.mkdir(exist_ok=True)
    return Path(shutil.copy(path, folder / name))


def assert_refused(result, out_option: str, in_option: str, source: Path, before: bytes) -> None:
    assert result.exit_code == 2, result.output
    assert f"{out_option} " in result.stderr and f"is the same file as {in_option} " in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert source.read_bytes() == before


@needs["export"]
@pytest.mark.parametrize("way", WAYS)
def test_export_refuses_to_write_the_onnx_file_over_its_model(synthetic_model_path, tmp_path, monkeypatch, way):
    monkeypatch.chdir(tmp_path)
    model = copy_of(synthetic_model_path, tmp_path / "models", "m.npz")
    before = model.read_bytes()

    result = run("export", "--model", model, "--out", way(model, tmp_path), "--check-images", "0")

    assert_refused(result, "--out", "--model", model, before)


@needs["export"]
def test_export_refuses_a_model_given_through_a_symlink_to_its_out(synthetic_model_path, tmp_path):
    model = copy_of(synthetic_model_path, tmp_path, "m.npz")
    before = model.read_bytes()

    result = run("export", "--model", symlink_to_input(model, tmp_path), "--out", model, "--check-images", "0")

    assert_refused(result, "--out", "--model", model, before)


@needs["export"]
def test_export_beside_its_model_under_another_name_still_works(synthetic_model_path, tmp_path):
    model = copy_of(synthetic_model_path, tmp_path, "m.npz")

    result = run("export", "--model", model, "--out", tmp_path / "m.onnx", "--check-images", "0")

    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").is_file() and model.read_bytes() == synthetic_model_path.read_bytes()


@needs["plot"]
@pytest.mark.parametrize("way", [symlink_to_input, hard_link])
def test_plot_refuses_a_picture_that_is_its_model(synthetic_model_path, tmp_path, way):
    model = copy_of(synthetic_model_path, tmp_path, "m.npz")
    before = model.read_bytes()
    picture = way(model, tmp_path).rename(tmp_path / "weights.png")    # a link with a picture's name

    result = run("plot", "weights", "--model", model, "--out", picture)

    assert_refused(result, "--out", "--model", model, before)


@needs["plot"]
def test_explain_refuses_to_draw_over_the_picture_it_explains(tmp_path):
    picture = tmp_path / "digit.png"
    picture.write_bytes(b"a user's own drawing")

    result = run("explain", picture, "--label", "3", "--fresh-network", "--plot", picture)

    assert_refused(result, "--plot", "PICTURE", picture, b"a user's own drawing")


@needs["plot"]
def test_explain_refuses_to_draw_over_its_model(synthetic_model_path, tmp_path):
    model = copy_of(synthetic_model_path, tmp_path, "m.npz")
    before = model.read_bytes()

    result = run("explain", "--model", model, "--plot", hard_link(model, tmp_path).rename(tmp_path / "step.png"))

    assert_refused(result, "--plot", "--model", model, before)


@pytest.mark.parametrize("way", WAYS)
def test_train_refuses_to_save_over_the_model_it_starts_from(synthetic_model_path, tmp_path, monkeypatch, way):
    monkeypatch.chdir(tmp_path)
    parent = copy_of(synthetic_model_path, tmp_path / "models", "parent.npz")
    before = parent.read_bytes()

    result = run("train", "--init-from", parent, "--out", way(parent, tmp_path), "--epochs", "1",
                 "--hidden-size", "32", "--data-dir", tmp_path / "no-data")

    assert_refused(result, "--out", "--init-from", parent, before)
    assert not (tmp_path / "no-data").exists()                # refused before any data was loaded


def test_train_from_model_npz_with_the_default_out_is_refused(synthetic_model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parent = copy_of(synthetic_model_path, tmp_path, "model.npz")    # --out defaults to model.npz
    before = parent.read_bytes()

    result = run("train", "--init-from", "model.npz", "--epochs", "1", "--hidden-size", "32",
                 "--data-dir", tmp_path / "no-data", env={"MLKNOBS_MODEL": None})

    assert_refused(result, "--out", "--init-from", parent, before)

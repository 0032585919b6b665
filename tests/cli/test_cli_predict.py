"""`mlknobs predict` through the real CLI: users' pictures of synthetic test digits, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clirun import run
from mlknobs.config import TrainConfig
from mlknobs.data.datasets import FASHION_MNIST
from mlknobs.io.modelfile import load_model, save_model
from mlknobs.vision.images import read_input
from pictures import UNDECODABLE, bad_inputs, encode, enlarged, noisy, on_paper, png_of_zeros, rgba_transparent, u8


@pytest.fixture(scope="module")
def model(synthetic_model_path):
    return load_model(synthetic_model_path)


@pytest.fixture(scope="module")
def pictures(model, synthetic_splits, tmp_path_factory):
    """Eight test digits the model reads confidently, as users' pictures: (paths, labels, test split)."""
    _, test = synthetic_splits
    proba = model.predict_proba(test.images[:200])
    clear = np.nonzero((proba.argmax(1) == test.labels[:200]) & (proba.max(1) > 0.9))[0][:8]
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    paths = []
    for i, k in enumerate(clear):
        digit = test.images[k]
        if i % 4 == 0:
            path, data = folder / f"digit{i}.jpg", encode(Image.fromarray(u8(on_paper(enlarged(digit, rng), .9, .1))),
                                                         "JPEG", quality=70)
        elif i % 4 == 1:
            path, data = folder / f"digit{i}.png", rgba_transparent(digit, rng)
        elif i % 4 == 2:
            path, data = folder / f"digit{i}.jpeg", noisy(digit, rng)
        else:
            path, data = folder / f"digit{i}.webp", encode(Image.fromarray(u8(enlarged(digit, rng))), "WEBP")
        path.write_bytes(data)
        paths.append(path)
    return paths, [int(test.labels[k]) for k in clear], test


def test_predict_prints_one_line_per_picture(synthetic_model_path, model, pictures):
    paths, labels, _ = pictures
    result = run("predict", "--model", synthetic_model_path, *paths)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(paths)
    for line, path, label in zip(lines, paths, labels):
        expected = model.predict_proba(read_input(path)[None])[0]
        assert line.startswith(f"{path}: {label} ({expected[label] * 100:.1f} %)   next: ")
        assert len(line.split("next: ")[1].split(", ")) == 2         # --top-k 3 by default


def test_predict_json_lines(synthetic_model_path, model, pictures):
    paths, labels, _ = pictures
    result = run("predict", "--model", synthetic_model_path, "--json", "--top-k", "4", *paths)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in paths]
    for record, label in zip(records, labels):
        assert record["label"] == label and record["name"] == str(label)
        probabilities = record["probabilities"]
        assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1, abs=1e-5)
        assert record["confidence"] == max(probabilities) == probabilities[label]
        assert [t["label"] for t in record["top_k"]] == list(np.argsort(probabilities)[::-1][:4])


def test_a_28x28_digit_predicts_exactly_as_eval(synthetic_model_path, model, pictures, tmp_path):
    _, _, test = pictures
    for k in (0, 1, 2, 3, 4):
        path = tmp_path / f"raw{k}.png"
        Image.fromarray(test.images[k].reshape(28, 28)).save(path)
        record = json.loads(run("predict", "--model", synthetic_model_path, "--json", path).stdout)
        expected = model.predict_proba(test.images[k:k + 1])[0]
        assert record["probabilities"] == [float(p) for p in expected]    # bit for bit
        assert record["label"] == int(expected.argmax())


def test_stdin(synthetic_model_path, pictures):
    paths, labels, _ = pictures
    result = run("predict", "--model", synthetic_model_path, "-", "--top-k", "1", input=paths[0].read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"-: {labels[0]} (") and "next" not in result.stdout
    assert run("predict", "--model", synthetic_model_path, "-", "-").exit_code == 2   # stdin only once


def test_stdin_through_a_real_pipe(synthetic_model_path, pictures):
    paths, labels, _ = pictures
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "mlknobs", "predict", "--model", str(synthetic_model_path),
                           "--json", "-"], input=paths[1].read_bytes(), capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == labels[1]


def test_bad_pictures_are_reported_and_the_rest_still_predicted(synthetic_model_path, pictures, tmp_path):
    paths, labels, _ = pictures
    expectations = bad_inputs(tmp_path)
    bad = [tmp_path / name for name in expectations]
    result = run("predict", "--model", synthetic_model_path, paths[0], *bad, paths[1])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith(f"{paths[0]}: {labels[0]} (")
    assert result.stdout.splitlines()[1].startswith(f"{paths[1]}: {labels[1]} (")
    errors = result.stderr.splitlines()
    assert len(errors) == len(bad)
    for line, path, word in zip(errors, bad, expectations.values()):
        assert line.startswith(f"Error: {path}: ") and word in line, line
    assert "Traceback" not in result.output


def test_bad_pictures_in_json_mode(synthetic_model_path, pictures, tmp_path):
    paths, _, _ = pictures
    expectations = bad_inputs(tmp_path)
    result = run("predict", "--model", synthetic_model_path, "--json", *(tmp_path / n for n in expectations), paths[2])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(expectations) + 1
    for record, name in zip(records, expectations):
        assert set(record) == {"image", "error"} and record["image"] == str(tmp_path / name)
    assert "label" in records[-1]


def test_show_draws_the_networks_input(synthetic_model_path, pictures):
    paths, _, test = pictures
    result = run("predict", "--model", synthetic_model_path, "--show", paths[0])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    drawing = lines[1:31]
    assert len(drawing) == 30 and all(len(row) == 58 for row in drawing)       # framed 28 × (2 × 28)
    assert drawing[0].startswith("┌") and drawing[-1].startswith("└")
    pixels = read_input(paths[0]).reshape(28, 28)
    inked_rows = [i for i, row in enumerate(drawing[1:-1]) if row.strip("│ ")]
    assert inked_rows == [i for i in range(28) if pixels[i].max() >= 32]
    record = json.loads(run("predict", "--model", synthetic_model_path, "--show", "--json", paths[0]).stdout)
    assert np.array_equal(np.array(record["input"], np.uint8), pixels)


def test_missing_or_broken_model(tmp_path, pictures):
    paths, _, _ = pictures
    result = run("predict", "--model", tmp_path / "none.npz", paths[0])
    assert result.exit_code == 1 and "mlknobs train" in result.output
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    result = run("predict", "--model", broken, paths[0])
    assert result.exit_code == 1 and "not an mlknobs model file" in result.output
    assert "Traceback" not in result.output
    assert run("predict", "--model", broken).exit_code == 2                   # no IMAGE given


def test_fashion_model_names_its_classes(synthetic_model_path, tmp_path):
    model = load_model(synthetic_model_path)
    model.config = TrainConfig(**{**model.config.to_dict(), "dataset": "fashion-mnist"})
    model.class_names = list(FASHION_MNIST.class_names)
    fashion = tmp_path / "fashion.npz"
    save_model(fashion, model)
    canvas = np.full((90, 60), 255, np.uint8)
    canvas[10:80, 15:45] = 30                                   # something dark on white
    picture = tmp_path / "thing.png"
    Image.fromarray(canvas).save(picture)
    record = json.loads(run("predict", "--model", fashion, "--json", picture).stdout)
    assert record["name"] == FASHION_MNIST.class_names[record["label"]]
    pixels = read_input(picture, "fashion-mnist").reshape(28, 28)
    expected = model.predict_proba(pixels.reshape(1, 784))[0]
    assert record["probabilities"] == [float(p) for p in expected]
    text = run("predict", "--model", fashion, picture, "--top-k", "2").stdout
    assert text.startswith(f"{picture}: {record['name']} (")


def test_a_closed_stdin_and_a_full_stdout_are_one_line_errors(synthetic_model_path, tmp_path):
    command = [sys.executable, "-m", "mlknobs", "predict", "--model", str(synthetic_model_path)]
    closed = subprocess.run(command + ["-"], capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: os.close(0))      # stdin closed in the child
    assert closed.returncode == 1 and "<stdin>: cannot read" in closed.stderr
    assert "Traceback" not in closed.stderr
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            result = subprocess.run([sys.executable, "-m", "mlknobs", "info", str(synthetic_model_path)],
                                    stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
        assert result.returncode == 1 and "cannot write the output" in result.stderr


def test_pictures_no_decoder_can_read_and_degenerate_shapes_are_one_line_each(synthetic_model_path, pictures,
                                                                                tmp_path):
    """A real process (a traceback would reach stderr): one `Error:` line per picture, exit 1, the good
    picture still predicted, no Python warning."""
    paths, labels, _ = pictures
    bad = []
    for name, data in {**UNDECODABLE, "tall.png": png_of_zeros(1, 64_000_000),
                       "wide.png": png_of_zeros(20_000, 10)}.items():
        bad.append(tmp_path / name)
        bad[-1].write_bytes(data)
    done = subprocess.run([sys.executable, "-m", "mlknobs", "predict", "--model", str(synthetic_model_path),
                           *map(str, bad), str(paths[0])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout.startswith(f"{paths[0]}: {labels[0]} (")
    errors = done.stderr.splitlines()
    assert len(errors) == len(bad), done.stderr
    for line, path in zip(errors, bad):
        assert line.startswith(f"Error: {path}: "), line
    assert "too large" in errors[-2] and "too narrow" in errors[-1]
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr


def test_an_undecodable_picture_on_stdin_in_json_mode(synthetic_model_path):
    result = run("predict", "--model", synthetic_model_path, "--json", "-", input=UNDECODABLE["unknown-fourcc.dds"])
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["image"] == "-" and record["error"].startswith("<stdin>: a kind of picture Pillow cannot decode")

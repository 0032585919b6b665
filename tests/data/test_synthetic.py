"""The synthetic digits: deterministic, laid out like MNIST, written as MNIST's four files, learnable."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mlknobs.config import TrainConfig
from mlknobs.data.datasets import MNIST, DatasetSpec
from mlknobs.data.splits import load_split
from mlknobs.data.synthetic import make_digits, write_mirror
from mlknobs.training.loop import fit


def test_the_same_seed_draws_the_same_digits():
    images, labels = make_digits(300, np.random.default_rng(7))
    again, again_labels = make_digits(300, np.random.default_rng(7))
    other, _ = make_digits(300, np.random.default_rng(8))
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)
    assert not np.array_equal(images, other)


def test_digits_are_laid_out_as_mnist_digits_are():
    """uint8 white on black, every class equally often, ink in a 19-20 px box centred by mass."""
    images, labels = make_digits(1000, np.random.default_rng(0))
    assert images.shape == (1000, 784) and images.dtype == np.uint8
    assert labels.shape == (1000,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [100] * 10
    pixels = images.reshape(-1, 28, 28)
    rows, cols = pixels.any(axis=2), pixels.any(axis=1)                    # (N, 28) each
    box = np.maximum(28 - np.argmax(rows[:, ::-1], 1) - np.argmax(rows, 1),
                     28 - np.argmax(cols[:, ::-1], 1) - np.argmax(cols, 1))
    assert box.min() >= 18 and box.max() <= 20 and np.mean(box >= 19) > 0.9
    weights = pixels.astype(np.float64)
    mass = weights.sum((1, 2))[:, None]
    centre = np.stack([weights.sum(2) @ np.arange(28), weights.sum(1) @ np.arange(28)], 1) / mass
    assert np.abs(centre - 14).max() <= 0.5 + 1e-9
    assert np.median(np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]])) == 0
    # Strokes like MNIST's: about a fifth of the pixels inked, white cores, gray edges.
    assert 0.15 < np.mean(images > 0) < 0.25 and 0.05 < np.mean(images == 255) < 0.12
    assert 0.1 < images.mean() / 255 < 0.15                                # MNIST: 0.1307


def test_no_digits_and_a_negative_count():
    images, labels = make_digits(0, np.random.default_rng(0))
    assert images.shape == (0, 784) and labels.shape == (0,)
    with pytest.raises(ValueError, match="number of images"):
        make_digits(-1, np.random.default_rng(0))


def test_mirror_holds_the_four_official_files_and_loads_as_mnist(tmp_path):
    sums = write_mirror(tmp_path / "mirror", n_train=50, n_test=20, seed=3)
    folder = tmp_path / "mirror" / "mnist"
    assert list(sums) == list(MNIST.sha256)                                 # names, in MNIST's order
    assert sorted(p.name for p in folder.iterdir()) == sorted(sums)
    for name, sha256 in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha256
    assert write_mirror(tmp_path / "again", n_train=50, n_test=20, seed=3) == sums   # the same bytes

    spec = DatasetSpec(name="mnist", sha256=sums, sizes={n: (folder / n).stat().st_size for n in sums},
                       class_names=MNIST.class_names, mirrors=())
    train = load_split(spec, "train", tmp_path / "data", mirrors=[str(tmp_path / "mirror")], progress=False)
    test = load_split(spec, "test", tmp_path / "data", mirrors=[str(tmp_path / "mirror")], progress=False)
    rng = np.random.default_rng(3)                                          # train first, then test
    for split, n in ((train, 50), (test, 20)):
        images, labels = make_digits(n, rng)
        assert np.array_equal(split.images, images) and np.array_equal(split.labels, labels)


def test_one_epoch_of_a_small_network_learns_them_but_not_perfectly(synthetic_splits):
    """The point of the data: tests can see learning (far above 10 % chance) and mistakes."""
    model = fit(TrainConfig(epochs=1, hidden_size=32), *synthetic_splits, [str(d) for d in range(10)])
    assert 0.85 <= model.results["test_accuracy"] <= 0.97

"""A dataset in memory (Dataset, load_dataset), and the checks of the data and labels a user hands in."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlknobs.bounds import Range
from mlknobs.config import DATASET_NAMES
from mlknobs.data.splits import Split
from mlknobs.errors import InputError, SettingsError
from mlknobs.nn.model import INPUT_SIZE

MIRROR_VARIABLE = "MLKNOBS_MIRROR"


@dataclass(frozen=True)
class Dataset:
    """A dataset in memory: `train` and `test` splits, each with `images` (N, 784) uint8 pixels 0..255
    (row-major 28x28, light ink on black) and `labels` (N,) uint8, and the `class_names` by label."""

    name: str                      # "mnist" or "fashion-mnist": what models trained on it record
    train: Split
    test: Split
    class_names: tuple[str, ...]

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first `train` training and `test` test samples (None: all of them), for quick runs."""
        for name, count in (("train", train), ("test", test)):
            problem = Range(1, integer=True).problem(count, name) if count is not None else None
            if problem:
                raise InputError(name, problem)
        return Dataset(self.name, _head(self.train, train), _head(self.test, test), self.class_names)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: {len(self.train):,} training and {len(self.test):,} test images "
                f"of 28x28 uint8, {len(self.class_names)} classes)")


def _head(split: Split, count: int | None) -> Split:
    return split if count is None else Split(split.images[:count], split.labels[:count])


def mirrors_from_env() -> tuple[str, ...]:
    return tuple(os.environ.get(MIRROR_VARIABLE, "").split())


def load_dataset(name: str = "mnist", *, data_dir: str | os.PathLike | None = None,
                 mirrors: list[str] | tuple[str, ...] | None = None, progress: bool = False) -> Dataset:
    """Load MNIST or Fashion-MNIST into memory, downloading and verifying the files on first use.

    data_dir: where the files are kept (default: MLKNOBS_DATA_DIR, else ./data). mirrors: folders
    or URLs to fetch from instead of the built-in ones (default: MLKNOBS_MIRROR, whitespace-separated).
    progress: show download bars. Raises DownloadError when no mirror delivers a verified file.

        >>> data = mlknobs.load_dataset("mnist")
        >>> data.train.images.shape, data.test.labels[:3], data.class_names[7]
        ((60000, 784), array([7, 2, 1], dtype=uint8), '7')
    """
    from mlknobs.training.run import DataSource

    check_dataset_name(name)
    mirrors = mirrors_from_env() if mirrors is None else tuple(mirrors)
    source = DataSource(Path(data_dir) if data_dir is not None else None, mirrors, progress)
    train, test, class_names = source.load(name)
    return Dataset(name, train, test, tuple(class_names))


def check_dataset_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise SettingsError([("dataset", f"{{dataset}} must be one of {', '.join(DATASET_NAMES)}, not {name!r}")])


def check_dataset(data: Dataset) -> None:
    """A Dataset a run can train on: uint8 images (N, 784), one label per image, each a class."""
    if not isinstance(data, Dataset):
        raise InputError("data", f"data must be a mlknobs.Dataset (from load_dataset), not {type(data).__name__}")
    for split_name, split in (("train", data.train), ("test", data.test)):
        images, labels = split.images, split.labels
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2
                and images.shape[1] == INPUT_SIZE):
            raise InputError(f"{split_name}.images", f"data.{split_name}.images must be a uint8 array (N, 784)")
        if not (isinstance(labels, np.ndarray) and labels.ndim == 1 and len(labels) == len(images)
                and labels.dtype.kind in "ui"):
            raise InputError(f"{split_name}.labels",
                             f"data.{split_name}.labels must be whole numbers (N,), one per image")
        if len(labels) == 0:
            raise InputError(split_name, f"data.{split_name} holds no images")
        problem = label_problem(labels, len(data.class_names), f"data.{split_name}.labels")
        if problem:
            raise InputError(f"{split_name}.labels", problem)


def label_problem(labels: np.ndarray, classes: int, name: str) -> str | None:
    """Whole-number labels outside the classes 0..classes-1, in words; None if there are none.
    A negative label is refused too: as an index it would quietly pick a class from the end."""
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        return f"{name} must be classes 0 to {classes - 1}, not {labels.min()}..{labels.max()}"
    return None

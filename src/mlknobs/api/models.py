"""Using a model from Python: its file (load_model, save_model), and its answers for pictures and
arrays of pixels (read_picture, predict, predict_proba, evaluate)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlknobs.api.data import check_dataset_name, label_problem
from mlknobs.errors import InputError
from mlknobs.nn.model import INPUT_SIZE, Model

if TYPE_CHECKING:
    from mlknobs.nn.evaluate import Evaluation

SIDE = 28
Picture = str | os.PathLike | bytes                   # a picture file's path, or its bytes


# --- model files --------------------------------------------------------------------------------------

def load_model(path: str | os.PathLike) -> Model:
    """Load and check a model file written by save_model, train_and_save or `mlknobs train`.

    Raises ModelFileMissing when there is no file, ModelFileError for one that is not a valid model.
    """
    from mlknobs.io.modelfile import load_model as load

    return load(Path(path))


def save_model(path: str | os.PathLike, model: Model) -> None:
    """Save a model as an .npz file (arrays and JSON, no pickle), atomically: the file is whole or
    untouched. Every mlknobs command reads it (`mlknobs predict --model PATH`). Raises OutputError."""
    from mlknobs.io.modelfile import save_model as save

    check_model(model)
    save(Path(path), model)


def check_model(model) -> None:
    if not isinstance(model, Model):
        raise InputError("model", f"model must be a mlknobs.Model, not {type(model).__name__}")


# --- its answers --------------------------------------------------------------------------------------

def read_picture(picture: Picture, dataset: str = "mnist") -> np.ndarray:
    """A picture of a digit (a file's path, or its bytes) as the network's input: (784,) uint8, made
    to look like `dataset`'s images the way `mlknobs predict` does (grayscale, light ink on black,
    cropped, scaled and centred). Raises ImageError for a file that is no readable picture."""
    from mlknobs.vision.images import read_input

    check_dataset_name(dataset)
    if isinstance(picture, os.PathLike):
        picture = os.fspath(picture)
    return read_input(picture, dataset)


def image_rows(model: Model, images) -> tuple[np.ndarray, bool]:
    """uint8 (N, 784) rows from an array (one image or many) or a picture; and whether it was one."""
    if isinstance(images, (str, bytes, os.PathLike)):
        return read_picture(images, model.dataset)[None, :], True
    array = np.asarray(images)
    if array.dtype.kind not in "ui":
        kind = "true/false" if array.dtype.kind == "b" else array.dtype.name
        raise InputError("images", f"images must hold whole-number pixels 0..255 (uint8), not {kind} values; "
                                   f"for floats in 0..1 use (images * 255).round().astype(np.uint8)")
    if array.shape[-2:] == (SIDE, SIDE):
        array = array.reshape(*array.shape[:-2], INPUT_SIZE)
    if array.ndim not in (1, 2) or array.shape[-1] != INPUT_SIZE:
        raise InputError("images", f"images must be one image (784,) or (28, 28), or many (N, 784) or "
                                   f"(N, 28, 28), not an array of shape {array.shape}")
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise InputError("images", f"pixels must be 0..255, not {array.min()}..{array.max()}")
        array = array.astype(np.uint8)
    return array.reshape(-1, INPUT_SIZE), array.ndim == 1


def predict_proba(model: Model, images) -> np.ndarray:
    """The class probabilities the model gives: (10,) for one image, (N, 10) for many.

    images: uint8 pixels 0..255 as one image, (784,) or (28, 28), or many, (N, 784) or (N, 28, 28)
    (other whole-number types within 0..255 are accepted); or a picture file's path or bytes (see
    read_picture). With the mse loss, the ten sigmoid outputs are normalised to sum to 1, as
    `mlknobs predict` reports them.
    """
    check_model(model)
    rows, single = image_rows(model, images)
    probabilities = model.predict_proba(rows)
    return probabilities[0] if single else probabilities


def predict(model: Model, images) -> int | np.ndarray:
    """The most likely class: an int for one image (or picture), an array (N,) for many.
    images: as for predict_proba. The class's name is model.class_names[label]."""
    probabilities = predict_proba(model, images)
    labels = np.argmax(probabilities, axis=-1)
    return int(labels) if labels.ndim == 0 else labels


def evaluate(model: Model, images, labels) -> Evaluation:
    """How well the model does on labelled images (N, 784) or (N, 28, 28): an Evaluation with
    `accuracy`, mean `loss`, the `confusion` matrix (rows: true class) and `per_class` scores.

        >>> mlknobs.evaluate(model, data.test.images, data.test.labels).accuracy
        0.93...
    """
    from mlknobs.nn.evaluate import evaluate as evaluate_arrays

    check_model(model)
    rows, single = image_rows(model, images)
    labels = np.asarray(labels).reshape(-1)
    if single or len(rows) == 0:
        raise InputError("images", "evaluate needs a non-empty batch of images (N, 784) or (N, 28, 28)")
    if labels.dtype.kind not in "ui" or len(labels) != len(rows):
        raise InputError("labels", f"labels must be {len(rows):,} whole numbers, one per image "
                                   f"(got {labels.dtype.name}, {len(labels):,})")
    problem = label_problem(labels, len(model.class_names), "labels")
    if problem:
        raise InputError("labels", problem)
    return evaluate_arrays(model.params, model.loss, model.scaling, rows, labels, n_classes=len(model.class_names))

"""mlknobs: a two-layer MLP for handwritten digits, derived by hand in NumPy.

The Python API, for notebooks and scripts (each name has its own docstring):

    import mlknobs

    data = mlknobs.load_dataset("mnist")                     # uint8 images (N, 784), labels, class names
    model = mlknobs.train(data, hidden_size=32, epochs=1)    # in memory; train_and_save writes files
    mlknobs.predict(model, data.test.images[:5])             # array([7, 2, 1, 0, 4])
    mlknobs.explain(model, data.test.images[0], 7)           # one step of learning, every number
    mlknobs.plain.forward(model.params, x)                   # the step written plainly, for your own loop

The names are imported on first use (module `__getattr__`), so `import mlknobs` and the `mlknobs`
command stay fast. Errors are the library's typed errors (mlknobs.errors), never an exit or a print.
"""

import sys

__version__ = "0.1.0"

# public name -> (module, attribute in it; None: the module itself)
_EXPORTS = {
    "Dataset": ("mlknobs.api.data", "Dataset"),
    "load_dataset": ("mlknobs.api.data", "load_dataset"),
    "TrainConfig": ("mlknobs.config", "TrainConfig"),
    "train": ("mlknobs.api.training", "train"),
    "train_and_save": ("mlknobs.api.training", "train_and_save"),
    "fresh_model": ("mlknobs.api.training", "fresh_model"),
    "Progress": ("mlknobs.training.loop", "Progress"),
    "Model": ("mlknobs.nn.model", "Model"),
    "Params": ("mlknobs.nn.model", "Params"),
    "load_model": ("mlknobs.api.models", "load_model"),
    "save_model": ("mlknobs.api.models", "save_model"),
    "read_picture": ("mlknobs.api.models", "read_picture"),
    "predict": ("mlknobs.api.models", "predict"),
    "predict_proba": ("mlknobs.api.models", "predict_proba"),
    "evaluate": ("mlknobs.api.models", "evaluate"),
    "explain": ("mlknobs.api.inside", "explain"),
    "gradcheck": ("mlknobs.api.inside", "gradcheck"),
    "plain": ("mlknobs.nn.plain", None),
    "MlknobsError": ("mlknobs.errors", "MlknobsError"),
    "SettingsError": ("mlknobs.errors", "SettingsError"),
    "InputError": ("mlknobs.errors", "InputError"),
    "TrainingDiverged": ("mlknobs.errors", "TrainingDiverged"),
    "TrainingInterrupted": ("mlknobs.errors", "TrainingInterrupted"),
    "DownloadError": ("mlknobs.errors", "DownloadError"),
    "ModelFileError": ("mlknobs.errors", "ModelFileError"),
    "ImageError": ("mlknobs.errors", "ImageError"),
    "KnobError": ("mlknobs.errors", "KnobError"),
}

__all__ = [  # the same names as _EXPORTS, written out so that linters and readers see them
    "__version__", "Dataset", "load_dataset", "TrainConfig", "train", "train_and_save", "fresh_model", "Progress",
    "Model", "Params", "load_model", "save_model", "read_picture", "predict", "predict_proba", "evaluate",
    "explain", "gradcheck", "plain", "MlknobsError", "SettingsError", "InputError", "TrainingDiverged",
    "TrainingInterrupted", "DownloadError", "ModelFileError", "ImageError", "KnobError",
]


def __getattr__(name: str):
    """Import a public name on first use, then keep it in the module (the next access is direct)."""
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'mlknobs' has no attribute {name!r}") from None
    __import__(module_name)             # importlib itself would cost `import mlknobs` a third more
    module = sys.modules[module_name]
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


# What editors and type checkers see (they read any `TYPE_CHECKING` as true); at run time
# __getattr__ imports the names, and importing `typing` here would slow `import mlknobs` down.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mlknobs.api.data import Dataset, load_dataset
    from mlknobs.api.inside import explain, gradcheck
    from mlknobs.api.models import evaluate, load_model, predict, predict_proba, read_picture, save_model
    from mlknobs.api.training import fresh_model, train, train_and_save
    from mlknobs.config import TrainConfig
    from mlknobs.errors import (
        DownloadError,
        ImageError,
        InputError,
        KnobError,
        MlknobsError,
        ModelFileError,
        SettingsError,
        TrainingDiverged,
        TrainingInterrupted,
    )
    from mlknobs.nn import plain
    from mlknobs.nn.model import Model, Params
    from mlknobs.training.loop import Progress

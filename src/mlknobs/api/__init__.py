"""The Python API behind `import mlknobs`'s names (see the package's `__all__`), one idea a module:

    data.py       Dataset, load_dataset: a dataset in memory, and the checks of one a user hands in
    training.py   train, train_and_save, fresh_model: a run in memory or to a model file, its progress bar
    models.py     load_model, save_model, read_picture, predict, predict_proba, evaluate: using a model
    inside.py     explain, gradcheck: looking inside the network, one step or every knob

Each function is a thin layer over the library, the way each command in cli/ is: it checks what it
is handed, calls one library function and returns plain values or the library's objects. It never
prints or exits; it raises the library's typed errors (mlknobs.errors). The data is found as the
CLI finds it: in MLKNOBS_DATA_DIR (default ./data), downloaded on first use from the mirrors in
MLKNOBS_MIRROR (whitespace-separated) or else the built-in ones.

Nothing is imported here: `mlknobs.predict` loads models.py alone, not training's code.
"""

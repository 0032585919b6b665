"""Pictures out: plots of a model and the animated GIF of its weights while they learn.

PLOT_KINDS names the kinds of `mlknobs plot` without importing NumPy or matplotlib (the CLI's
--help reads it); viz.plots.DRAW draws each one and checks at import that the two agree.
"""

PLOT_KINDS = {   # kind: (what it shows, whether it reads the model's test split)
    "weights": ("every hidden unit's 784 input weights as a 28x28 tile: what it looks for", False),
    "history": ("loss and accuracy per epoch (training, validation) and the test result", False),
    "confusion": ("the test-set confusion matrix, every count written in", True),
    "mistakes": ("the test images the model gets wrong, the most confident mistakes first", True),
}

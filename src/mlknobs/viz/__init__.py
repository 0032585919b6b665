"""Pictures out: plots of a model and the animated GIF of its weights while they learn.

PLOT_KINDS names the kinds of `mlknobs plot` without importing NumPy or matplotlib (the CLI's
--help reads it); viz.plots.DRAW draws each one and checks at import that the two agree.
"""

# kind: (what it shows, which split of the model's dataset it reads, if any; "sweep": it reads a
# sweep folder, --sweep DIR, instead of a model)
PLOT_KINDS = {
    "weights": ("every hidden unit's 784 input weights as a 28x28 tile: what it looks for", None),
    "history": ("loss and accuracy per epoch (and per logged step) of one model, or several overlaid", None),
    "confusion": ("the test-set confusion matrix, every count written in", "test"),
    "mistakes": ("the test images the model gets wrong, the most confident mistakes first", "test"),
    "augment": ("training digits and distorted copies, as train --augment (or the model's settings) makes them",
                "train"),
    "activations": ("the sigmoid with the hidden units' z1 over test digits on it: the share saturated", "test"),
    "sweep": ("validation accuracy against each swept setting of `mlknobs sweep` (--sweep DIR, no model)", "sweep"),
}

"""Pictures out: plots of a model and the animated GIF of its weights while they learn."""

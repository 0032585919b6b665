"""A training run: the epoch loop, checkpoints, resume, guards and the run's file lifecycle."""

"""Files that hold a model: model and checkpoint files (validated, never pickle)."""

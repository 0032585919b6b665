"""mlknobs: a two-layer MLP for handwritten digits, derived by hand in NumPy."""

__version__ = "0.1.0"

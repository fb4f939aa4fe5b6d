"""The dgss version (one place; the package and the model files it writes read it)."""

__version__ = "0.1.0"

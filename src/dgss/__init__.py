"""dgss: domain-generalized semantic segmentation on frozen vision foundation models."""

__version__ = "0.1.0"

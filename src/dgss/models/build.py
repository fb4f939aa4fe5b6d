"""Explicit assembly: a typed config in, the matching model out."""
from __future__ import annotations

from .segmentor import Segmentor, SegmentorConfig


def build_model(cfg: SegmentorConfig) -> Segmentor:
    """Build the segmentor a config describes (random weights; load frozen weights before real use)."""
    return Segmentor(cfg)

"""Image-level augmentation baselines applied in the data pipeline (0 trainable parameters).

``build_image_augment(cfg.augment)`` returns ``None`` (nothing enabled) or a callable
``(image (3, H, W) uint8 / float in 0..255, generator) -> uint8 (3, H, W)`` that the training stream
(:class:`dgss.engine.train_data.StreamDataset`) applies to every source image right after decoding,
before any geometric transform, with the sample's own seeded generator: GTR-LTR first, then PASTA.
AdvStyle acts on the batch inside the training step instead (``dgss.engine.advstyle``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ...errors import GtrLtrError
from .gtr_ltr import GtrLtr
from .pasta import Pasta, axis_frequency, frequency_radius, pasta_sigma

__all__ = [
    "GtrLtr",
    "GtrLtrError",
    "ImageAugment",
    "Pasta",
    "axis_frequency",
    "build_image_augment",
    "frequency_radius",
    "pasta_sigma",
]


class ImageAugment:
    """Apply ``steps`` in order, all drawing from the one per-sample generator."""

    def __init__(self, steps: Sequence[Callable]):
        self.steps = list(steps)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for step in self.steps:
            image = step(image, generator)
        return image

    def __repr__(self) -> str:
        return f"ImageAugment({', '.join(type(s).__name__ for s in self.steps)})"


def build_image_augment(augment) -> ImageAugment | None:
    """The data-pipeline augmentations enabled in an :class:`dgss.config.AugmentConfig` (or None)."""
    if augment is None:
        return None
    steps: list[Callable] = []
    if augment.gtr_ltr.enabled:
        steps.append(GtrLtr.from_config(augment.gtr_ltr))
    if augment.pasta.enabled:
        steps.append(Pasta.from_config(augment.pasta))
    return ImageAugment(steps) if steps else None

"""Explicit assembly: a typed config in, the matching model out."""

from __future__ import annotations

from collections.abc import Mapping

from ..backbones.weights import load_encoder_weights, mark_random
from ..errors import FrozenWeightsError
from .segmentor import Segmentor, SegmentorConfig


def build_model(cfg: SegmentorConfig):
    """Build the segmentor a config describes (random weights; load frozen weights before real use)."""
    from .catseg import CATSeg, CatSegConfig

    if isinstance(cfg, CatSegConfig):
        return CATSeg(cfg)
    return Segmentor(cfg)


def load_frozen_weights(model: Segmentor, sources: Mapping[str, str | None], *, random: bool = False) -> Segmentor:
    """Fill the frozen encoders of a freshly built model: ``sources[name]`` (file or ``hf-hub:`` id) or
    the zoo's public default, or reproducible random weights (seed = module index) when asked for."""
    for seed, (name, module) in enumerate(model.frozen_modules().items()):
        if random:
            mark_random(module, seed=seed)  # recorded in checkpoints, so evaluation can rebuild them
            continue
        source = sources.get(name) or module.cfg.default_weights
        if not source:
            raise FrozenWeightsError(
                f"no weights for the frozen {name}: pass its file (weights.{name} in a run "
                f"config, --weights {name}=... on the command line)"
            )
        load_encoder_weights(module, source, role="depth" if name == "depth_encoder" else "visual")
    return model

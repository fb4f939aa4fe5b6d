"""Helpers for dgss's own tests and benchmarks: tiny random models and generated Cityscapes folders.

Library code never imports this module (an import-layer test enforces it)."""

from __future__ import annotations

from .backbones.weights import mark_random
from .models.segmentor import Segmentor
from .models.tiny import TINY_BLOCK_ADAPTERS, TINY_CLIP, tiny_segmentor_config

__all__ = [
    "TINY_BLOCK_ADAPTERS",
    "TINY_CLIP",
    "tiny_segmentor",
    "tiny_segmentor_config",
    "tiny_text_encoder",
    "write_cityscapes_scenes",
]


def tiny_text_encoder(seed: int = 0):
    """A tiny random CLIP text tower (real tokenizer, 2 layers, 32-d output), reproducible per seed."""
    from .backbones.clip_text import build_text_encoder

    return build_text_encoder(TINY_CLIP.name, random_seed=seed)


def tiny_segmentor(method: str = "rein", *, vocab="cityscapes", **kw) -> Segmentor:
    """Tiny segmentor with random frozen weights, marked as random on purpose. Vireo models get a
    tiny random CLIP text tower and the given vocabulary."""
    model = Segmentor(tiny_segmentor_config(method, **kw))
    for seed, module in enumerate(model.frozen_modules().values()):
        mark_random(module, seed=seed)
    if model.cfg.text is not None:
        from .models.vireo import use_vocabulary

        use_vocabulary(model, vocab, text_encoder=tiny_text_encoder())
    return model


def write_cityscapes_scenes(root, n: int = 2, *, seed: int = 0, height: int = 128, width: int = 256):
    """``n`` generated scenes (``dgss.data.scenes``) in the official Cityscapes layout: val split, city
    ``synth``, trainId labels. Returns ``root``."""
    from pathlib import Path

    from PIL import Image

    from .data.scenes import make_scene

    root = Path(root)
    for i in range(n):
        s = make_scene(seed + i, height, width)
        stem = f"synth_{i:06d}_000019"
        img = root / "leftImg8bit" / "val" / "synth" / f"{stem}_leftImg8bit.png"
        lab = root / "gtFine" / "val" / "synth" / f"{stem}_gtFine_labelTrainIds.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        lab.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(s.image).save(img)
        Image.fromarray(s.label).save(lab)
    return root

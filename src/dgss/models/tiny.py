"""Tiny model configs: the real structure at a few hundred thousand parameters, for CPU demos and tests."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from ..adapters.depthforge import DepthForgeConfig
from ..adapters.rein import ReinConfig
from ..backbones.clip_text import TEXT_ENCODERS
from ..backbones.zoo import encoder_config
from ..heads.mask2former import Mask2FormerHeadConfig
from .presets import DEPTHFORGE_ABLATIONS, depthforge_config, segmentor_config
from .segmentor import SegmentorConfig

TINY_CLIP = TEXT_ENCODERS["tiny-clip-text"]
TINY_BLOCK_ADAPTERS: dict[str, dict[str, Any]] = {
    "lora": {"rank": 4},
    "adaptformer": {"bottleneck": 8},
    "vpt": {"num_prompts": 6},
    "soma": {"rank": 4, "alpha": 4.0},
}


def tiny_segmentor_config(
    method: str = "rein",
    *,
    num_classes: int = 19,
    embed_dim: int = 64,
    depth: int = 4,
    img_size: int = 64,
    num_tokens: int = 10,
    encoder: str = "dinov2-s",
    depth_encoder: str = "dav2-s",
    depth_embed_dim: int | None = None,
    depth_depth: int | None = None,
    ablation: str = "full",
    **adapter_kw,
) -> SegmentorConfig:
    """A few-hundred-thousand-parameter model with the real structure (4 taps, 10 head outputs).

    ``method="depthforge"`` adds a tiny frozen depth encoder (``depth_encoder`` zoo name for its
    family and patch size; width/depth default to the visual ones) and the switches of ``ablation``.
    """
    enc = encoder_config(encoder).replace(embed_dim=embed_dim, depth=depth, num_heads=2, img_size=img_size)
    if enc.family == "sam":
        enc = enc.replace(global_attn_indexes=(depth - 1,), rel_pos_grid=img_size // 16, window_size=2)
    if method == "vireo":
        from .vireo import vireo_config

        dcfg = encoder_config(depth_encoder)
        dep = dcfg.replace(
            embed_dim=depth_embed_dim or embed_dim,
            depth=depth_depth or depth,
            num_heads=2,
            img_size=img_size if dcfg.patch_size == 16 else round(img_size / 16) * 14,
        )
        cfg = vireo_config(
            enc,
            dep,
            ablation=ablation,
            name="tiny-vireo",
            text_dim=TINY_CLIP.embed_dim,
            cmpe_class_chunk=8,
            clip=TINY_CLIP.name,
        )
        num_classes = cfg.head.num_classes
    elif method == "depthforge":
        dcfg = encoder_config(depth_encoder)
        dimg = img_size if dcfg.patch_size == 16 else round(img_size / 16) * 14
        dep = dcfg.replace(
            embed_dim=depth_embed_dim or embed_dim, depth=depth_depth or depth, num_heads=2, img_size=dimg
        )
        cfg = depthforge_config(
            enc,
            dep,
            num_classes=num_classes,
            name="tiny-depthforge",
            **{**DEPTHFORGE_ABLATIONS[ablation], **adapter_kw},
        )
    else:
        cfg = segmentor_config(
            method, enc, num_classes=num_classes, name=f"tiny-{method}", crop_size=img_size, **adapter_kw
        )
    if isinstance(cfg.adapter, ReinConfig):  # REIN family and FADA
        cfg.adapter = dataclasses.replace(
            cfg.adapter, num_tokens=num_tokens, rank=4 if cfg.adapter.rank else None, query_dim=32
        )
    elif cfg.adapter is not None:  # LoRA / AdaptFormer / VPT / SoMA: small rank, bottleneck, prompt count
        tiny = {k: v for k, v in TINY_BLOCK_ADAPTERS[method].items() if k not in adapter_kw}
        cfg.adapter = dataclasses.replace(cfg.adapter, **tiny)
    if cfg.method == "depthforge" and cfg.depth_encoder is None:
        cfg.adapter = dataclasses.replace(cast(DepthForgeConfig, cfg.adapter), depth_dim=None)
    cfg.head = Mask2FormerHeadConfig(
        num_classes=cfg.head.num_classes,
        in_channels=[embed_dim] * 4,
        feat_channels=32,
        out_channels=32,
        num_queries=num_tokens,
        num_encoder_layers=1,
        num_decoder_layers=3,
        num_heads=4,
        num_points=2,
        encoder_ffn_dims=64,
        decoder_ffn_dims=64,
        num_groups=8,
        query_source=cfg.head.query_source,
    )
    cfg.taps = tuple(range(depth))[-4:] if depth >= 4 else cfg.taps
    cfg.crop_size = img_size
    cfg.slide_stride = img_size * 2 // 3
    SegmentorConfig.__post_init__(cfg)
    return cfg

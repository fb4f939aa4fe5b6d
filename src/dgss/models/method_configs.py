"""Config builders of the methods: one method on one encoder with the papers' settings.

:mod:`dgss.models.presets` names these configs (``<method>-<encoder>``); the Vireo builder is
:func:`dgss.models.vireo.vireo_config`."""

from __future__ import annotations

from typing import Literal, cast

from ..adapters.adaptformer import AdaptFormerConfig
from ..adapters.depthforge import DepthForgeConfig, DepthFusion
from ..adapters.fada import FADAConfig
from ..adapters.lora import LoRAConfig, default_targets
from ..adapters.rein import ReinConfig
from ..adapters.soma import SoMAConfig, default_start_block
from ..adapters.soma import default_targets as soma_targets
from ..adapters.vpt import VPTConfig
from ..backbones.config import EncoderConfig
from ..data.label_maps import CITYSCAPES_CLASSES
from ..heads.mask2former import Mask2FormerHeadConfig
from .segmentor import AdapterConfig, Method, SegmentorConfig

# Tapped blocks per encoder depth (REIN / DepthForge configs: ViT-L [7,11,15,23], SAM-H [7,15,23,31]).
DEFAULT_TAPS = {12: (3, 5, 7, 11), 24: (7, 11, 15, 23), 32: (7, 15, 23, 31), 40: (9, 19, 29, 39)}


def default_taps(depth: int) -> tuple[int, ...]:
    if depth in DEFAULT_TAPS:
        return DEFAULT_TAPS[depth]
    return tuple(int(round(depth * f)) - 1 for f in (1 / 3, 1 / 2, 2 / 3, 1.0))


_DEFAULT = object()


def segmentor_config(
    method: str,
    encoder: EncoderConfig,
    *,
    num_classes: int = 19,
    rank=_DEFAULT,
    name: str | None = None,
    crop_size: int = 512,
    **adapter_kw,
) -> SegmentorConfig:
    """Config of one method on one encoder (the papers' settings). ``rank``: token rank of REIN / FADA
    (default 16, None = full tokens), LoRA rank (default 8) or SoMA rank (default 16). ``crop_size``: training crop / window."""
    link = method in ("rein", "fada") and adapter_kw.get("link_queries", True)
    adapter: AdapterConfig | None = None
    L, C = encoder.depth, encoder.embed_dim
    if method in ("rein", "fada"):
        cls = ReinConfig if method == "rein" else FADAConfig
        adapter = cls(
            num_layers=L,
            embed_dim=C,
            patch_size=encoder.patch_size,
            rank=16 if rank is _DEFAULT else rank,
            **adapter_kw,
        )
    elif method == "lora":
        adapter_kw.setdefault("targets", default_targets(encoder.family))
        adapter = LoRAConfig(num_layers=L, embed_dim=C, rank=8 if rank is _DEFAULT else rank, **adapter_kw)
    elif method == "soma":
        adapter_kw.setdefault("targets", soma_targets(encoder.family))
        adapter_kw.setdefault("start_block", default_start_block(L))
        adapter = SoMAConfig(num_layers=L, embed_dim=C, rank=16 if rank is _DEFAULT else rank, **adapter_kw)
    elif method == "adaptformer":
        adapter = AdaptFormerConfig(num_layers=L, embed_dim=C, **adapter_kw)
    elif method == "vpt":
        adapter = VPTConfig(num_layers=L, embed_dim=C, patch_size=encoder.patch_size, **adapter_kw)
    head = Mask2FormerHeadConfig(
        num_classes=num_classes, in_channels=[encoder.embed_dim] * 4, query_source="link" if link else "learned"
    )
    classes = CITYSCAPES_CLASSES if num_classes == 19 else ()
    return SegmentorConfig(
        name=name or f"{method}-{encoder.name}",
        method=cast(Method, method),  # checked by SegmentorConfig
        encoder=encoder,
        head=head,
        adapter=adapter,
        taps=default_taps(encoder.depth),
        class_names=classes,
        crop_size=crop_size,
    )


# ---------------------------------------------------------------------------------------------- DepthForge
def depthforge_config(
    encoder: EncoderConfig,
    depth: EncoderConfig | None,
    *,
    num_classes: int = 19,
    name: str | None = None,
    depth_fusion: DepthFusion = "logit_sum",
    attention_opt: bool = True,
    head_refine: Literal["none", "aag"] = "aag",
    scale: str = "learnable",
) -> SegmentorConfig:
    """DepthForge on one visual encoder with one frozen depth encoder (``docs/methods/depthforge.md``)."""
    base = segmentor_config("rein", encoder, num_classes=num_classes)
    depth_dim = depth.embed_dim if depth is not None and depth.embed_dim != encoder.embed_dim else None
    adapter = DepthForgeConfig(
        **{**base.adapter.__dict__, "scale": scale},
        depth_fusion=depth_fusion,
        attention_opt=attention_opt,
        depth_dim=depth_dim,
    )
    return SegmentorConfig(
        name=name or f"depthforge-{encoder.name}",
        method="depthforge",
        encoder=encoder,
        head=base.head,
        adapter=adapter,
        depth_encoder=depth if depth_fusion != "none" else None,
        head_refine=head_refine,
        taps=base.taps,
        class_names=base.class_names,
    )


# Table 4/5 rows of the DepthForge paper as switch settings (docs/methods/depthforge.md).
DEPTHFORGE_ABLATIONS: dict[str, dict] = {
    "rein": dict(depth_fusion="none", attention_opt=True, head_refine="none"),
    "dav2": dict(depth_fusion="logit_sum", attention_opt=False, head_refine="none"),
    "drd": dict(depth_fusion="none", attention_opt=True, head_refine="aag"),
    "da-ao": dict(depth_fusion="logit_sum", attention_opt=True, head_refine="none"),
    "full": dict(depth_fusion="logit_sum", attention_opt=True, head_refine="aag"),
    "concatenation": dict(depth_fusion="feature_concat", head_refine="aag"),  # Table 5 (Table 4 "concat": undetermined)
    "depth-token": dict(depth_fusion="depth_token", head_refine="aag"),
    "prob-mean": dict(depth_fusion="prob_mean", head_refine="aag"),
    "learned-mix": dict(depth_fusion="learned_mix", head_refine="aag"),
    "no-scale": dict(depth_fusion="logit_sum", head_refine="aag", scale="fixed_one"),
}

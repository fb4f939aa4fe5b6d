"""The frozen-encoder zoo: every backbone of the REIN / DepthForge / Vireo tables, by name.

Names without a suffix run at patch 16 on 512 crops (32x32 grid), as the reference code runs them;
``-p14`` names are the native patch-14 encoders at 518 (37x37 grid). DINOv3 (``dinov3-{s,sp,b,l,hp}``) is
native at patch 16 and has no position table; its names build timm's ``_qkvb`` variants (q/v biases as in
Meta's and transformers' files), ``-nobias`` the plain ones (equal for the released weights).
"""

from __future__ import annotations

from ..errors import UnknownModelError
from .config import EncoderConfig

APACHE = "Apache-2.0"
CC_BY_NC = "CC-BY-NC-4.0 (non-commercial)"
MIT = "MIT"
DINOV3_LICENCE = "DINOv3 License"

_DINOV2_SIZES = {  # name -> (timm name, width, depth, heads)
    "s": ("vit_small_patch14_dinov2", 384, 12, 6),
    "b": ("vit_base_patch14_dinov2", 768, 12, 12),
    "l": ("vit_large_patch14_dinov2", 1024, 24, 16),
    "g": ("vit_giant_patch14_dinov2", 1536, 40, 24),
}
_DINOV2_HUB = {
    "s": "hf-hub:timm/vit_small_patch14_dinov2.lvd142m",
    "b": "hf-hub:timm/vit_base_patch14_dinov2.lvd142m",
    "l": "hf-hub:timm/vit_large_patch14_dinov2.lvd142m",
    "g": "hf-hub:timm/vit_giant_patch14_dinov2.lvd142m",
}
_DINOV3_SIZES = {  # name -> (timm size, width, depth, heads); patch 16, 5 prefix tokens (cls + 4 registers)
    "s": ("small", 384, 12, 6),
    "sp": ("small_plus", 384, 12, 6),
    "b": ("base", 768, 12, 12),
    "l": ("large", 1024, 24, 16),
    "hp": ("huge_plus", 1280, 32, 20),
}
_DAV2 = {  # size -> (Hub file, licence)
    "s": ("hf-hub:depth-anything/Depth-Anything-V2-Small/depth_anything_v2_vits.pth", APACHE),
    "b": ("hf-hub:depth-anything/Depth-Anything-V2-Base/depth_anything_v2_vitb.pth", CC_BY_NC),
    "l": ("hf-hub:depth-anything/Depth-Anything-V2-Large/depth_anything_v2_vitl.pth", CC_BY_NC),
}


def _build_zoo() -> dict[str, EncoderConfig]:
    zoo: dict[str, EncoderConfig] = {}
    for size, (timm_name, width, depth, heads) in _DINOV2_SIZES.items():
        base = EncoderConfig(
            name=f"dinov2-{size}",
            family="dinov2",
            timm_name=timm_name,
            embed_dim=width,
            depth=depth,
            num_heads=heads,
            keep_mask_token=True,
            licence=APACHE,
            default_weights=_DINOV2_HUB[size],
        )
        zoo[base.name] = base
        zoo[f"{base.name}-p14"] = base.replace(name=f"{base.name}-p14", patch_size=14, img_size=518)
    for size, (hub, licence) in _DAV2.items():
        timm_name, width, depth, heads = _DINOV2_SIZES[size]
        base = EncoderConfig(
            name=f"dav2-{size}",
            family="dinov2",
            timm_name=timm_name,
            embed_dim=width,
            depth=depth,
            num_heads=heads,
            keep_mask_token=True,
            licence=licence,
            default_weights=hub,
        )
        zoo[base.name] = base
        zoo[f"{base.name}-p14"] = base.replace(name=f"{base.name}-p14", patch_size=14, img_size=518)
    for size, (timm_size, width, depth, heads) in _DINOV3_SIZES.items():
        timm_name = f"vit_{timm_size}_patch16_dinov3"
        base = EncoderConfig(
            name=f"dinov3-{size}",
            family="dinov3",
            timm_name=f"{timm_name}_qkvb",
            embed_dim=width,
            depth=depth,
            num_heads=heads,
            source_patch_size=16,  # native patch 16; no position table (RoPE), nothing to resample
            source_img_size=512,
            num_register_tokens=4,  # informational: timm builds them
            licence=DINOV3_LICENCE,
            default_weights=f"hf-hub:timm/{timm_name}_qkvb.lvd1689m",
        )
        zoo[base.name] = base
        zoo[f"{base.name}-nobias"] = base.replace(
            name=f"{base.name}-nobias", timm_name=timm_name, default_weights=f"hf-hub:timm/{timm_name}.lvd1689m"
        )
    # Prompt Depth Anything ViT-L (the DepthForge Table 4 alternative): the DAv2-L encoder architecture
    zoo["promptda-l"] = zoo["dav2-l"].replace(
        name="promptda-l",
        licence="see the Prompt Depth Anything release",
        default_weights="hf-hub:depth-anything/prompt-depth-anything-vitl/model.ckpt",
    )
    zoo["eva02-l"] = EncoderConfig(
        name="eva02-l",
        family="eva02",
        timm_name="eva02_large_patch14_448",
        embed_dim=1024,
        depth=24,
        num_heads=16,
        source_patch_size=14,
        source_img_size=224,
        licence=MIT,
        default_weights="hf-hub:timm/eva02_large_patch14_224.mim_m38m",
    )
    zoo["clip-l"] = EncoderConfig(
        name="clip-l",
        family="clip",
        timm_name="vit_large_patch14_clip_224",
        embed_dim=1024,
        depth=24,
        num_heads=16,
        source_patch_size=14,
        source_img_size=224,
        licence=MIT,
        default_weights="hf-hub:timm/vit_large_patch14_clip_224.openai",
    )
    zoo["sam-h"] = EncoderConfig(
        name="sam-h",
        family="sam",
        timm_name="samvit_huge_patch16",
        embed_dim=1280,
        depth=32,
        num_heads=16,
        source_patch_size=16,
        source_img_size=1024,
        global_attn_indexes=(7, 15, 23, 31),
        rel_pos_grid=64,
        window_size=14,
        licence=APACHE,
        default_weights="hf-hub:timm/samvit_huge_patch16.sa1b",
    )
    return zoo


ENCODERS: dict[str, EncoderConfig] = _build_zoo()


def encoder_config(name: str) -> EncoderConfig:
    """Config of a zoo encoder by name; an unknown name lists the known ones."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise UnknownModelError(f"unknown encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}") from None

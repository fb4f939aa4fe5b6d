"""Named model presets: ``<method>-<encoder>`` for every encoder of the zoo.

* ``rein-<enc>``: frozen encoder + REIN (rank-16 tokens) + Mask2Former with linked queries;
* ``rein-fulltoken-<enc>``: REIN with full-rank tokens;
* ``freeze-<enc>``: frozen encoder + the same head with learned queries (baseline);
* ``full-<enc>``: encoder fine-tuned + the same head (baseline);
* ``lora-<enc>``, ``adaptformer-<enc>``, ``vpt-<enc>``: the parameter-efficient baselines of the REIN /
  DepthForge tables (``baselines.md`` §2-4; rank 8, bottleneck 64, 150 deep prompts) with the stock head
  and learned queries, as ``freeze``; VPT on every encoder but SAM (windowed blocks);
* ``fada-<enc>``: FADA (released code, ``baselines.md`` §1) with REIN's linked queries;
* ``depthforge-<enc>``: DepthForge with the DAv2-L encoder (patch 16 converted, CC-BY-NC-4.0 weights);
  ``-dav2s``: DAv2-S (Apache-2.0; width 384 -> learned projection, 12 -> 24 blocks proportional map);
  ``-dav2l-p14``: the native patch-14 DAv2-L, its token grid resampled in 2-D onto the visual grid.
"""
from __future__ import annotations

from ..adapters.adaptformer import AdaptFormerConfig
from ..adapters.fada import FADAConfig, window_problem
from ..adapters.lora import LoRAConfig, default_targets
from ..adapters.rein import ReinConfig
from ..adapters.vpt import VPTConfig
from ..backbones.config import EncoderConfig
from ..backbones.zoo import ENCODERS, UnknownModelError
from ..heads.mask2former import Mask2FormerHeadConfig
from .segmentor import Segmentor, SegmentorConfig

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")

# Tapped blocks per encoder depth (REIN / DepthForge configs: ViT-L [7,11,15,23], SAM-H [7,15,23,31]).
DEFAULT_TAPS = {12: (3, 5, 7, 11), 24: (7, 11, 15, 23), 32: (7, 15, 23, 31), 40: (9, 19, 29, 39)}
SEG_ENCODERS = tuple(n for n in ENCODERS if not n.startswith(("dav2-", "promptda")) and not n.endswith("-p14"))


def default_taps(depth: int) -> tuple[int, ...]:
    if depth in DEFAULT_TAPS:
        return DEFAULT_TAPS[depth]
    return tuple(int(round(depth * f)) - 1 for f in (1 / 3, 1 / 2, 2 / 3, 1.0))


_DEFAULT = object()


def segmentor_config(method: str, encoder: EncoderConfig, *, num_classes: int = 19, rank=_DEFAULT,
                     name: str | None = None, crop_size: int = 512, **adapter_kw) -> SegmentorConfig:
    """Config of one method on one encoder (the papers' settings). ``rank``: token rank of REIN / FADA
    (default 16, None = full tokens) or LoRA rank (default 8). ``crop_size``: training crop / window."""
    link = method in ("rein", "fada") and adapter_kw.get("link_queries", True)
    adapter = None
    L, C = encoder.depth, encoder.embed_dim
    if method in ("rein", "fada"):
        cls = ReinConfig if method == "rein" else FADAConfig
        adapter = cls(num_layers=L, embed_dim=C, patch_size=encoder.patch_size,
                      rank=16 if rank is _DEFAULT else rank, **adapter_kw)
    elif method == "lora":
        adapter_kw.setdefault("targets", default_targets(encoder.family))
        adapter = LoRAConfig(num_layers=L, embed_dim=C, rank=8 if rank is _DEFAULT else rank, **adapter_kw)
    elif method == "adaptformer":
        adapter = AdaptFormerConfig(num_layers=L, embed_dim=C, **adapter_kw)
    elif method == "vpt":
        adapter = VPTConfig(num_layers=L, embed_dim=C, patch_size=encoder.patch_size, **adapter_kw)
    head = Mask2FormerHeadConfig(num_classes=num_classes, in_channels=[encoder.embed_dim] * 4,
                                 query_source="link" if link else "learned")
    classes = CITYSCAPES_CLASSES if num_classes == 19 else ()
    return SegmentorConfig(name=name or f"{method}-{encoder.name}", method=method, encoder=encoder, head=head,
                           adapter=adapter, taps=default_taps(encoder.depth), class_names=classes,
                           crop_size=crop_size)


def _presets() -> dict[str, dict]:
    out = {}
    for enc in SEG_ENCODERS:
        out[f"rein-{enc}"] = dict(method="rein", encoder=enc)
        out[f"rein-fulltoken-{enc}"] = dict(method="rein", encoder=enc, rank=None)
        out[f"freeze-{enc}"] = dict(method="freeze", encoder=enc)
        out[f"full-{enc}"] = dict(method="full", encoder=enc)
        out[f"lora-{enc}"] = dict(method="lora", encoder=enc)
        out[f"adaptformer-{enc}"] = dict(method="adaptformer", encoder=enc)
        e = ENCODERS[enc]
        if e.family != "sam":     # VPT: prompts need global token-sequence blocks
            out[f"vpt-{enc}"] = dict(method="vpt", encoder=enc)
        if window_problem((e.grid, e.grid), e.embed_dim) is None:   # FADA: square grid, 2w | C at the crop
            out[f"fada-{enc}"] = dict(method="fada", encoder=enc)
    return out


PRESETS: dict[str, dict] = _presets()


def preset_config(name: str, *, num_classes: int = 19) -> SegmentorConfig:
    if name not in PRESETS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(PRESETS))}")
    p = dict(PRESETS[name])
    enc = ENCODERS[p.pop("encoder")]
    if p["method"] == "depthforge":
        return depthforge_config(enc, ENCODERS[p["depth"]], num_classes=num_classes, name=name)
    if p["method"] == "vireo":
        from .vireo import vireo_config
        return vireo_config(enc, ENCODERS[p["depth"]], name=name)
    return segmentor_config(p.pop("method"), enc, num_classes=num_classes, name=name, **p)


def build_preset(name: str, *, num_classes: int = 19) -> Segmentor:
    """Build a named model with random weights (load frozen weights before real use)."""
    return Segmentor(preset_config(name, num_classes=num_classes))


# ---------------------------------------------------------------------------------------------- DepthForge
def depthforge_config(encoder: EncoderConfig, depth: EncoderConfig | None, *, num_classes: int = 19,
                      name: str | None = None, depth_fusion: str = "logit_sum", attention_opt: bool = True,
                      head_refine: str = "aag", scale: str = "learnable") -> SegmentorConfig:
    """DepthForge on one visual encoder with one frozen depth encoder (``depthforge.md``)."""
    from ..adapters.depthforge import DepthForgeConfig
    base = segmentor_config("rein", encoder, num_classes=num_classes)
    depth_dim = depth.embed_dim if depth is not None and depth.embed_dim != encoder.embed_dim else None
    adapter = DepthForgeConfig(**{**base.adapter.__dict__, "scale": scale}, depth_fusion=depth_fusion,
                               attention_opt=attention_opt, depth_dim=depth_dim)
    return SegmentorConfig(
        name=name or f"depthforge-{encoder.name}", method="depthforge", encoder=encoder, head=base.head,
        adapter=adapter, depth_encoder=depth if depth_fusion != "none" else None, head_refine=head_refine,
        taps=base.taps, class_names=base.class_names)


# Table 4/5 rows of the DepthForge paper as switch settings (depthforge.md §9).
DEPTHFORGE_ABLATIONS: dict[str, dict] = {
    "rein": dict(depth_fusion="none", attention_opt=True, head_refine="none"),
    "dav2": dict(depth_fusion="logit_sum", attention_opt=False, head_refine="none"),
    "drd": dict(depth_fusion="none", attention_opt=True, head_refine="aag"),
    "da-ao": dict(depth_fusion="logit_sum", attention_opt=True, head_refine="none"),
    "full": dict(depth_fusion="logit_sum", attention_opt=True, head_refine="aag"),
    "concatenation": dict(depth_fusion="feature_concat", head_refine="aag"),   # Table 5 (Table 4 "concat": undetermined)
    "depth-token": dict(depth_fusion="depth_token", head_refine="aag"),
    "prob-mean": dict(depth_fusion="prob_mean", head_refine="aag"),
    "learned-mix": dict(depth_fusion="learned_mix", head_refine="aag"),
    "no-scale": dict(depth_fusion="logit_sum", head_refine="aag", scale="fixed_one"),
}


def _depthforge_presets() -> dict[str, dict]:
    out = {}
    for enc in SEG_ENCODERS:
        out[f"depthforge-{enc}"] = dict(method="depthforge", encoder=enc, depth="dav2-l")
        out[f"depthforge-{enc}-dav2s"] = dict(method="depthforge", encoder=enc, depth="dav2-s")
        out[f"depthforge-{enc}-dav2l-p14"] = dict(method="depthforge", encoder=enc, depth="dav2-l-p14")
        out[f"depthforge-{enc}-promptda"] = dict(method="depthforge", encoder=enc, depth="promptda-l")
    return out


PRESETS.update(_depthforge_presets())


def _vireo_presets() -> dict[str, dict]:
    out = {}
    for enc in SEG_ENCODERS:
        out[f"vireo-{enc}"] = dict(method="vireo", encoder=enc, depth="dav2-l")
    return out


PRESETS.update(_vireo_presets())

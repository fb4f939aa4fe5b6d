"""Named model presets: ``<method>-<encoder>`` for every encoder of the zoo.

* ``rein-<enc>``: frozen encoder + REIN (rank-16 tokens) + Mask2Former with linked queries;
* ``rein-fulltoken-<enc>``: REIN with full-rank tokens;
* ``freeze-<enc>``: frozen encoder + the same head with learned queries (baseline);
* ``full-<enc>``: encoder fine-tuned + the same head (baseline);
* ``lora-<enc>``, ``adaptformer-<enc>``, ``vpt-<enc>``: the parameter-efficient baselines of the REIN /
  DepthForge tables (``docs/methods/lora.md, docs/methods/adaptformer.md, docs/methods/vpt.md``; rank 8, bottleneck 64, 150 deep prompts) with the stock head
  and learned queries, as ``freeze``; VPT on every encoder but SAM (windowed blocks);
* ``soma-<enc>``: SoMA (``docs/methods/soma.md``; rank 16 on every Linear of the blocks from L/3 on) with
  the stock head and learned queries, on every encoder whose blocks it knows (a new zoo family gets it
  when its targets exist);
* ``fada-<enc>``: FADA (released code, ``docs/methods/fada.md``) with REIN's linked queries;
* ``depthforge-<enc>``: DepthForge with the DAv2-L encoder (patch 16 converted, CC-BY-NC-4.0 weights);
  ``-dav2s``: DAv2-S (Apache-2.0; width 384 -> learned projection, 12 -> 24 blocks proportional map);
  ``-dav2l-p14``: the native patch-14 DAv2-L, its token grid resampled in 2-D onto the visual grid.

Every method exists on DINOv3 (``dinov3-{s,sp,b,l,hp}``, docs/encoders.md): 24 blocks tap (7, 11, 15, 23)
as on DINOv2-L, 12 -> (3, 5, 7, 11), 32 -> (7, 15, 23, 31); ``depthforge-dinov3-l`` / ``vireo-dinov3-l`` feed
DAv2-L block l to block l (same width, depth and 32x32 grid at 512), other sizes the proportional map and a
zero-initialised 1024 -> C projection. The ``-nobias`` encoders are for loading and counts only.
"""

from __future__ import annotations

from ..adapters.fada import window_problem
from ..backbones.zoo import ENCODERS
from ..errors import UnknownModelError
from .method_configs import DEFAULT_TAPS, DEPTHFORGE_ABLATIONS, default_taps, depthforge_config, segmentor_config
from .segmentor import Segmentor, SegmentorConfig
from .vireo import vireo_config

__all__ = [
    "DEFAULT_TAPS",
    "DEPTHFORGE_ABLATIONS",
    "PRESETS",
    "SEG_ENCODERS",
    "build_preset",
    "default_taps",
    "depthforge_config",
    "preset_config",
    "segmentor_config",
]


SOMA_FAMILIES = ("dinov2", "clip", "sam", "eva02", "dinov3")  # families whose block Linears SoMA targets
SEG_ENCODERS = tuple(
    n for n in ENCODERS if not n.startswith(("dav2-", "promptda")) and not n.endswith(("-p14", "-nobias"))
)


def _presets() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for enc in SEG_ENCODERS:
        out[f"rein-{enc}"] = dict(method="rein", encoder=enc)
        out[f"rein-fulltoken-{enc}"] = dict(method="rein", encoder=enc, rank=None)
        out[f"freeze-{enc}"] = dict(method="freeze", encoder=enc)
        out[f"full-{enc}"] = dict(method="full", encoder=enc)
        out[f"lora-{enc}"] = dict(method="lora", encoder=enc)
        out[f"adaptformer-{enc}"] = dict(method="adaptformer", encoder=enc)
        e = ENCODERS[enc]
        if e.family != "sam":  # VPT: prompts need global token-sequence blocks
            out[f"vpt-{enc}"] = dict(method="vpt", encoder=enc)
        if e.family in SOMA_FAMILIES:
            out[f"soma-{enc}"] = dict(method="soma", encoder=enc)
        if window_problem((e.grid, e.grid), e.embed_dim) is None:  # FADA: square grid, 2w | C at the crop
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
        return vireo_config(enc, ENCODERS[p["depth"]], name=name)
    return segmentor_config(p.pop("method"), enc, num_classes=num_classes, name=name, **p)


def build_preset(name: str, *, num_classes: int = 19) -> Segmentor:
    """Build a named model with random weights (load frozen weights before real use)."""
    return Segmentor(preset_config(name, num_classes=num_classes))


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

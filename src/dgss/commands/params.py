"""`dgss params NAME`: per-module total / trainable / frozen parameter counts, built on the meta device."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..backbones.zoo import ENCODERS
from ..checks import positive_int
from ..errors import UnknownModelError


def _known_models() -> list[str]:
    from ..backbones.clip_text import TEXT_ENCODERS
    from ..models.catseg import CATSEG_PRESETS
    from ..models.presets import PRESETS

    return sorted(ENCODERS) + sorted(TEXT_ENCODERS) + sorted(PRESETS) + list(CATSEG_PRESETS)


def cmd_params(args: argparse.Namespace) -> int:
    """Build the named encoder or model on the meta device and print its parameter table."""
    from ..backbones.clip_text import TEXT_ENCODERS, ClipTextEncoder
    from ..models.param_report import format_rows, param_rows
    from ..models.presets import PRESETS, build_preset

    name = args.model
    from ..models.catseg import CATSEG_PRESETS

    model: Any  # by name: a CAT-Seg model, a depth model, an encoder, a text tower or a segmentor
    if name in CATSEG_PRESETS:
        from ..models.catseg import build_catseg

        with torch.device("meta"):
            model = build_catseg(name)
        rows = param_rows(model, model.param_groups())
        s = model.cfg.vision.image_size
        print(
            format_rows(
                f"{name} (built on the meta device; CLIP input {s}x{s}; no shape depends on the vocabulary)", rows
            )
        )
        return 0
    with torch.device("meta"):
        if name.startswith("dav2-"):
            from ..backbones.depth_anything import DepthAnythingV2

            size = name.split("-")[1]
            model = DepthAnythingV2(size, patch14=name.endswith("-p14"))
            rows = param_rows(model, {"encoder": model.encoder, "depth_head (DPT)": model.depth_head})
        elif name in ENCODERS:
            from ..backbones.vit_encoder import build_encoder

            model = build_encoder(name)
            rows = param_rows(model, {"encoder": model})
        elif name in TEXT_ENCODERS:
            model = ClipTextEncoder(TEXT_ENCODERS[name])
            rows = param_rows(model, {"text encoder": model})
            print(
                format_rows(
                    f"{name} (built on the meta device; context of {TEXT_ENCODERS[name].context_length} tokens)", rows
                )
            )
            return 0
        elif name in PRESETS:
            model = build_preset(name, num_classes=args.num_classes)
            rows = param_rows(model, model.param_groups(), subtotals={"head (all)": model.head})
        else:
            raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(_known_models())}")
    enc = model if hasattr(model, "embed") else getattr(model, "encoder", None)
    size = enc.cfg.img_size if enc is not None else "?"
    print(format_rows(f"{name} (built on the meta device; {size}x{size} input)", rows))
    if name in PRESETS and model.adapter is not None:
        from ..models.param_report import count, published_notes

        mask = getattr(model.encoder.vit, "mask_token", None)
        n_mask = mask.numel() if mask is not None else 0
        n_buffers = sum(b.numel() for b in model.adapter.buffers())
        for line in published_notes(model.cfg, count(model.adapter).trainable, n_mask, n_buffers):
            print(line)
    if enc is not None and enc.cfg.keep_mask_token:
        print(
            f"note: counts include the public checkpoint's unused DINOv2 mask token ({enc.cfg.embed_dim:,} "
            "parameters), so that public files load strictly"
        )
    return 0


def register(sub) -> None:
    sp = sub.add_parser("params", help="per-module total / trainable / frozen parameter counts")
    sp.add_argument(
        "model", help="encoder (dinov2-l, eva02-l, clip-l, sam-h, dav2-l, clip-l-336-text, ...) or model preset"
    )
    sp.add_argument("--num-classes", type=positive_int, default=19)
    sp.set_defaults(func=cmd_params)

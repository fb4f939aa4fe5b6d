"""`dgss predict`: segment images, folders or videos with a trained model (any vocabulary for Vireo)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..models.checkpoint import load_checkpoint
from ..models.presets import PRESETS, build_preset
from ..models.build import load_frozen_weights
from .predict import (depth_model_for, inference_context, iter_inputs, maybe_compile, predict_depth, predict_image,
                      set_classes, text_encoder_for, write_outputs)


def parse_weights(items: list[str] | None, known: tuple[str, ...] = ("encoder", "depth_encoder", "clip")
                  ) -> dict[str, str]:
    """``NAME=FILE`` pairs of frozen modules (``encoder``, ``depth_encoder``, ``clip``) -> dict."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--weights expects NAME=FILE (NAME: {', '.join(known)}), got {item!r}")
        k, v = item.split("=", 1)
        if k not in known:
            raise ValueError(f"unknown frozen module {k!r} in --weights; known: {', '.join(known)}")
        out[k] = v
    return out


def load_for_inference(spec: str, weights: dict[str, str], random_weights: bool, *, allow_hash_mismatch=False):
    """A dgss checkpoint file, or a preset name (untrained head: only useful with --random-weights
    for smoke tests, or to look at depth / attention)."""
    if Path(spec).is_file():
        model = load_checkpoint(spec, frozen_weights=weights, random_frozen=random_weights,
                                allow_frozen_hash_mismatch=allow_hash_mismatch)
    elif spec in PRESETS:
        model = load_frozen_weights(build_preset(spec), weights, random=random_weights)
    else:
        raise ValueError(f"--model {spec!r} is neither a checkpoint file nor a preset")
    if not random_weights:
        model.check_frozen_weights()
    return model


def run(args: argparse.Namespace) -> int:
    weights = parse_weights(args.weights)
    model = load_for_inference(args.model, weights, args.random_weights).eval()
    device = torch.device(args.device)
    model.to(device)
    if args.classes or args.vocab:
        set_classes(model, args.classes or args.vocab, text_encoder_for(model, weights))
    dav2 = depth_model_for(model, args.depth_weights) if args.depth else None
    out = Path(args.out)
    n = 0
    layers = [model.encoder.depth - 1 if a == -1 else a for a in (args.attention or [])]
    maybe_compile(model, args.compile)
    for name, rgb in iter_inputs(args.inputs, args.every):
        with inference_context(device, args.precision):
            pred = predict_image(model, rgb, short_side=args.short_side, attention_layers=layers)
        depth = predict_depth(dav2, model, rgb) if dav2 is not None else None
        write_outputs(out, name, rgb, pred, model.class_names, depth=depth)
        n += 1
    print(f"wrote predictions for {n} image(s) to {out}/")
    if any((m.frozen_source or {}).get("random") for m in model.frozen_modules().values()):
        print("note: frozen encoders have RANDOM weights (--random-weights): the pictures show the pipeline, "
              "not what the method can do")
    return 0


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images, folders or videos; overlays, depth and token maps")
    p.add_argument("inputs", nargs="+", help="image files, folders or video files")
    p.add_argument("--model", required=True, help="dgss checkpoint (.safetensors) or preset name")
    p.add_argument("--weights", nargs="*", metavar="NAME=FILE",
                   help="frozen weights: encoder=..., depth_encoder=..., clip=... (files or hf-hub: ids)")
    p.add_argument("--random-weights", action="store_true", help="run frozen encoders with random weights (tests)")
    p.add_argument("--classes", help='open vocabulary: "road, car, person, dog" (";" separates entries with ", ")')
    p.add_argument("--vocab", help="open vocabulary: cityscapes | deliver | ade150 | ade847 | file.json")
    p.add_argument("--depth", action="store_true", help="also write the Depth Anything V2 depth map")
    p.add_argument("--depth-weights", help="DAv2 checkpoint with its DPT head (default: the model's depth file)")
    p.add_argument("--attention", type=int, nargs="*", help="token-attention maps for these blocks (-1 = last)")
    p.add_argument("--short-side", type=int, help="resize so the short side has this length before inference")
    p.add_argument("--every", type=int, default=1, help="videos: every n-th frame")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bf16 autocast on GPUs and bf16-capable CPUs (2.5x faster here, same labels), else fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the window forward (one-off compile time)")
    p.add_argument("--out", default="predictions")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=run)

"""`dgss demo` command-line registration."""
from __future__ import annotations

import torch


def _run(args):
    from ..engine.predict_cli import parse_weights
    from .run import run
    args.weights = parse_weights(args.weights, known=("encoder", "depth_encoder"))
    return run(args)


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a small DepthForge on generated scenes; test it under night/fog/rain/snow")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--iters", type=int, default=600, help="training iterations (default 600: a few CPU minutes)")
    p.add_argument("--train-scenes", type=int, default=96)
    p.add_argument("--val-scenes", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--severity", type=int, default=3, choices=[1, 2, 3, 4, 5])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", nargs="*", metavar="NAME=FILE",
                   help="real frozen weights (encoder=..., depth_encoder=...): uses DepthForge-DINOv2-L + DAv2-L")
    p.add_argument("--images", nargs="*", help="your own images / folders / videos to segment at the end")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=_run)

"""`dgss app`: serve a local web page that segments uploaded images or generated scenes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

NO_MODEL_HINT = (
    "**How to get a model.** `dgss demo` trains a small DepthForge on generated scenes in about "
    "three CPU minutes and writes its checkpoint under `demo_out/run/`; then start the page again with "
    "`dgss app --random-weights` (the demo's frozen encoders are random, and the page will say so). "
    "Or pass your own checkpoint: `dgss app --model model.safetensors --weights encoder=FILE ...`."
)


def _web():
    try:
        from ..app import web
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "gradio":
            from ..errors import CLIError

            raise CLIError("dgss app needs Gradio, which is not installed: pip install 'dgss[app]'") from None
        raise
    return web


def build_page(args: argparse.Namespace):
    """The page for these command-line arguments: the app, or a page saying why there is no model and
    how to get one (a model that fails to load never stops the server)."""
    web = _web()
    from ..app.service import DEFAULT_MAX_PIXELS, SegmentationService, demo_checkpoint
    from ..engine.host import tune_allocator
    from .predict import parse_weights

    tune_allocator()  # this process is ours: keep large freed blocks (engine/host.py)
    weights = parse_weights(args.weights)
    spec = args.model
    if spec is None:
        found = demo_checkpoint(Path(args.demo_out))
        spec = str(found) if found else None
    if spec is None:
        problem = f"no model: --model was not given and there is no `dgss demo` checkpoint under {args.demo_out}/run/"
        print(f"dgss app: {problem}", file=sys.stderr)
        return web.error_page(problem, NO_MODEL_HINT)
    try:
        svc = SegmentationService(
            spec,
            weights=weights,
            random_weights=args.random_weights,
            depth_weights=args.depth_weights,
            device=args.device,
            precision=args.precision,
            short_side=args.short_side,
            max_pixels=int(args.max_megapixels * 1e6) if args.max_megapixels else DEFAULT_MAX_PIXELS,
        )
    except Exception as e:  # the page says what went wrong instead of the server dying
        problem = f"could not load the model {spec}: {e}"
        hint = NO_MODEL_HINT
        if "random" in str(e) and not args.random_weights:
            hint = (
                "This checkpoint was trained with random frozen encoders (as `dgss demo` does without "
                "weights). Start the app with `--random-weights` to run it that way, or pass the real "
                "frozen weights with `--weights encoder=FILE depth_encoder=FILE`."
            )
        print(f"dgss app: error: {problem}", file=sys.stderr)
        return web.error_page(problem, hint)
    return web.build_page(svc)


def run(args: argparse.Namespace) -> int:
    page = build_page(args)
    print(f"dgss app: serving on http://{args.host}:{args.port}/ (Ctrl+C to stop)", flush=True)
    _web().serve(page, args.host, args.port)
    return 0


def register(sub) -> None:
    from ..checks import float_in, int_in

    p = sub.add_parser("app", help="local web page: upload images or pick generated scenes, see the segmentation")
    p.add_argument(
        "--model",
        help="dgss checkpoint (.safetensors), exported model folder, hf-hub:org/name[@rev] "
        "or preset name (default: the checkpoint "
        "`dgss demo` wrote under --demo-out)",
    )
    p.add_argument("--demo-out", default="demo_out", help="where `dgss demo` wrote its run (default demo_out)")
    p.add_argument(
        "--weights",
        nargs="*",
        metavar="NAME=FILE",
        help="frozen weights: encoder=..., depth_encoder=..., clip=... (files or hf-hub: ids)",
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="run frozen encoders with random weights (the page then says so in a banner)",
    )
    p.add_argument("--depth-weights", help="DAv2 checkpoint with its DPT head (default: the model's depth file)")
    p.add_argument("--short-side", type=int_in(1), help="resize so the short side has this length before inference")
    p.add_argument(
        "--max-megapixels", type=float_in(0, open_lo=True), help="largest image accepted, in megapixels (default 8.4)"
    )
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="auto: bf16 autocast on GPUs, fp32 on CPUs (as fast as bf16 there, exact labels)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_in(1, 65535), default=7860)
    p.set_defaults(func=run)

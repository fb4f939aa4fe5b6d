"""`dgss demo` command-line registration."""

from __future__ import annotations

import torch

from ..checks import float_in, positive_int


def _run(args):
    from .predict import parse_weights

    if args.methods is not None:
        return _compare(args)
    from ..demo.run import run

    args.weights = parse_weights(args.weights, known=("encoder", "depth_encoder"))
    return run(args)


def _compare(args):
    """``dgss demo --methods ...``: the side-by-side comparison (``dgss.demo.compare``)."""
    from pathlib import Path

    from ..demo.compare import CompareOptions, parse_methods, run_comparison
    from ..errors import CLIError

    if args.weights or args.images:
        raise CLIError(
            "--methods compares the tiny demo models (random frozen encoders); it takes no --weights "
            "or --images (train the configs under configs/ to compare real models)"
        )
    specs = parse_methods(args.methods)  # CompareError (a ValueError): one line from dgss's main
    from ..checks import claim_output_dir

    claim_output_dir(args.out, "--out", what="dgss demo")  # the comparison replaces its runs only in its folder
    opts = CompareOptions(
        iters=args.iters,
        train_scenes=args.train_scenes,
        val_scenes=args.val_scenes,
        lr=args.lr,
        severity=args.severity,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    result = run_comparison(specs, args.out, opts)
    out = Path(args.out)
    print((out / "compare.md").read_text())
    print(f"table: {out / 'compare.md'} ({out / 'compare.json'}), chart: {out / 'compare.png'}")
    if result["failed"]:
        print(f"failed: {', '.join(result['failed'])} (details in compare.json and runs/<method>/error.log)")
    return 1 if result["failed"] else 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a small DepthForge on generated scenes; test it under night/fog/rain/snow")
    p.add_argument("--out", default="demo_out")
    p.add_argument(
        "--iters", type=positive_int, default=600, help="training iterations (default 600: a few CPU minutes)"
    )
    p.add_argument("--train-scenes", type=positive_int, default=96)
    p.add_argument("--val-scenes", type=positive_int, default=12)
    p.add_argument("--lr", type=float_in(0, open_lo=True), default=1e-3)
    p.add_argument("--severity", type=int, default=3, choices=[1, 2, 3, 4, 5])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--weights",
        nargs="*",
        metavar="NAME=FILE",
        help="real frozen weights (encoder=..., depth_encoder=...): uses DepthForge-DINOv2-L + DAv2-L",
    )
    p.add_argument("--images", nargs="*", help="your own images / folders / videos to segment at the end")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--methods",
        metavar="M[,M...]",
        help="side-by-side comparison instead: train each method (rein, freeze, full, depthforge, vireo, "
        "soma, catseg, lora, fada, ...; '+pasta' / '+advstyle' add an augmentation baseline, '@dinov3' a "
        "DINOv3-layout encoder, e.g. rein@dinov3) on the same scenes, seed and iterations; writes "
        "compare.md/.json and compare.png to --out",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="with --methods: torch threads of each method's process (default: torch's choice)",
    )
    p.set_defaults(func=_run)

"""`dgss predict`: segment images, folders or videos with a trained model (any vocabulary for Vireo)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..checks import StagedWrites, int_in, nonempty_text, open_output_folder
from ..engine.backends import BACKENDS, PRECISIONS, configure_inference
from ..engine.predict import (
    VIDEO_EXT,
    depth_model_for,
    iter_inputs,
    predict_depth,
    predict_image,
    set_classes,
    text_encoder_for,
    write_outputs,
)
from ..errors import OptionError, VocabularyError
from ..hub.resolve import load_for_inference


def parse_weights(
    items: list[str] | None, known: tuple[str, ...] = ("encoder", "depth_encoder", "clip")
) -> dict[str, str]:
    """``NAME=FILE`` pairs of frozen modules (``encoder``, ``depth_encoder``, ``clip``) -> dict."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise OptionError(f"--weights expects NAME=FILE (NAME: {', '.join(known)}), got {item!r}")
        k, v = item.split("=", 1)
        if k not in known:
            raise OptionError(f"unknown frozen module {k!r} in --weights; known: {', '.join(known)}")
        if not v.startswith("hf-hub:") and not Path(v).expanduser().is_file():
            problem = "is a folder, not a file" if Path(v).is_dir() else "file not found"
            raise OptionError(f"--weights {item}: {problem}")
        out[k] = v
    return out


PREDICTION_FILES = ("*_label.png", "*_overlay.png", "*_depth.png", "*_tokens_l*.png")


def check_attention_layers(layers: list[int] | None, depth: int) -> list[int]:
    """``--attention`` block indices (-1 = last) checked against the model's ``depth`` blocks."""
    bad = [a for a in layers or [] if not -1 <= a < depth]
    if bad:
        raise OptionError(
            f"--attention {bad[0]}: block index out of range for this {depth}-block model (allowed -1..{depth - 1})"
        )
    return [depth - 1 if a == -1 else a for a in layers or []]


def apply_classes(model, args: argparse.Namespace, weights: dict[str, str]) -> None:
    """``--classes`` / ``--vocab``: switch an open-vocabulary model's classes; a bad vocabulary names its flag."""
    spec, flag = (args.classes, "--classes") if args.classes else (args.vocab, "--vocab")
    if not spec:
        if not model.num_classes:  # an open-vocabulary preset: no trained vocabulary to fall back on
            raise OptionError(f"{args.model} has no vocabulary: name the classes with --classes or --vocab")
        return
    try:
        set_classes(model, spec, text_encoder_for(model, weights))
    except VocabularyError as e:
        raise OptionError(f"{flag} {spec}: {e}") from None


def attention_layers_for(model, layers: list[int] | None) -> list[int]:
    """``--attention`` blocks for ``model``: checked against its encoder; a model without adapter tokens
    (freeze / full fine-tuning, CAT-Seg) has no token attention to show."""
    if not layers:
        return []
    if model.adapter is None:
        raise OptionError(
            f"--attention shows which adapter token each patch attends to; {model.cfg.name} ({model.cfg.method}) "
            "has no adapter tokens: drop --attention"
        )
    return check_attention_layers(layers, model.encoder.depth)


def count_inputs(paths: list[str], every: int) -> int | None:
    """How many pictures ``iter_inputs`` will yield (None: unknown), for the progress bar."""
    from ..engine.predict import IMAGE_EXT, VIDEO_EXT

    total = 0
    for p in map(Path, paths):
        if p.is_dir():
            total += sum(1 for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXT)
        elif p.suffix.lower() in VIDEO_EXT:
            import cv2

            cap = cv2.VideoCapture(str(p))
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
            cap.release()
            if n <= 0:
                return None
            total += -(-n // every)
        else:
            total += 1
    return total


def run(args: argparse.Namespace) -> int:
    import sys

    from ..engine.host import tune_allocator

    tune_allocator()  # this process is ours: keep large freed blocks (engine/host.py)
    weights = parse_weights(args.weights)
    out = open_output_folder(args.out, "--out", own_patterns=PREDICTION_FILES)  # before any long work
    model = load_for_inference(
        args.model, weights, args.random_weights, allow_hash_mismatch=args.allow_hash_mismatch
    ).eval()
    device = torch.device(args.device)
    model.to(device)
    apply_classes(model, args, weights)
    dav2 = depth_model_for(model, args.depth_weights) if args.depth else None
    n = 0
    layers = attention_layers_for(model, args.attention)
    ctx = configure_inference(
        model,
        backend=args.backend,
        precision=args.precision,
        compile=args.compile,
        device=device,
        bf16_weights=dav2 is None,
    )  # depth maps reuse fp32 weights
    inputs: Iterable[tuple[str, np.ndarray]] = iter_inputs(args.inputs, args.every)
    several = any(Path(p).is_dir() or Path(p).suffix.lower() in VIDEO_EXT for p in args.inputs)
    if several and not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm

        inputs = tqdm(
            inputs,
            total=count_inputs(args.inputs, args.every),
            desc="predict",
            unit="image",
            file=sys.stderr,
            dynamic_ncols=True,
        )
    for name, rgb in inputs:
        with ctx():
            pred = predict_image(model, rgb, short_side=args.short_side, attention_layers=layers)
        depth = predict_depth(dav2, model, rgb) if dav2 is not None else None
        with StagedWrites(out) as staging:  # a kill never leaves a half-written picture
            write_outputs(staging, name, rgb, pred, model.class_names, depth=depth, palette=model.palette)
        n += 1
    print(f"wrote predictions for {n} image(s) to {out}/")
    if model.random_frozen:
        print(
            "note: frozen encoders have RANDOM weights (--random-weights): the pictures show the pipeline, "
            "not what the method can do"
        )
    return 0


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images, folders or videos; overlays, depth and token maps")
    p.add_argument("inputs", nargs="+", help="image files, folders or video files")
    p.add_argument(
        "--model",
        required=True,
        help="dgss checkpoint (.safetensors), exported model folder, hf-hub:org/name[@revision], or preset name",
    )
    p.add_argument(
        "--weights",
        nargs="*",
        metavar="NAME=FILE",
        help="frozen weights: encoder=..., depth_encoder=..., clip=... (files or hf-hub: ids; CAT-Seg: clip=, "
        "the OpenAI CLIP file of both towers)",
    )
    p.add_argument("--random-weights", action="store_true", help="run frozen encoders with random weights (tests)")
    p.add_argument(
        "--classes",
        type=nonempty_text,
        help='open vocabulary (Vireo, CAT-Seg): "road, car, person, dog" (";" separates entries with ", ")',
    )
    p.add_argument("--vocab", help="open vocabulary: cityscapes | deliver | ade150 | ade847 | file.json")
    p.add_argument("--depth", action="store_true", help="also write the Depth Anything V2 depth map")
    p.add_argument("--depth-weights", help="DAv2 checkpoint with its DPT head (default: the model's depth file)")
    p.add_argument("--attention", type=int_in(-1), nargs="*", help="token-attention maps for these blocks (-1 = last)")
    p.add_argument("--short-side", type=int_in(1), help="resize so the short side has this length before inference")
    p.add_argument("--every", type=int_in(1), default=1, help="videos: every n-th frame")
    p.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="auto",
        help="auto: bf16 autocast on GPUs, fp32 on CPUs (as fast as bf16 there, exact labels); "
        "int8: dynamic int8 frozen Linear layers (CPU, opt-in; agreement in docs/performance.md)",
    )
    p.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default="torch",
        help="onnxruntime: run the window forward exported by `dgss export` (cached) in ONNX Runtime "
        "(CPU; fp32 or int8)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the window forward (one-off compile time)")
    p.add_argument("--out", default="predictions")
    p.add_argument("--no-progress", action="store_true", help="no progress bar for folders and videos")
    p.add_argument(
        "--allow-hash-mismatch",
        action="store_true",
        help="use --weights files whose SHA-256 differs from the one the checkpoint records",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=run)

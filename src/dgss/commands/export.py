"""`dgss export`: a model (fixed vocabulary, fixed window) to ONNX, checked against PyTorch; or, with
``--merged``, a SoMA model's encoder with the adapter folded in (W', b') as a plain encoder file."""

from __future__ import annotations

import torch

from ..engine.export import check_onnx, export_onnx


def run(args) -> int:
    from ..checks import check_output_file
    from ..hub.resolve import load_for_inference
    from .predict import apply_classes, parse_weights

    weights = parse_weights(args.weights)
    check_output_file(args.output, "output")  # before the model is built and traced
    model = load_for_inference(args.model, weights, args.random_weights, allow_hash_mismatch=args.allow_hash_mismatch)
    if args.merged:
        return write_merged_encoder(model, args.output, origin=str(args.model))
    apply_classes(model, args, weights)
    path = export_onnx(model, args.output, window=args.window)
    x = torch.randn(1, 3, args.window or model.window_size, args.window or model.window_size)
    report = check_onnx(model, path, x)
    print(
        f"wrote {path}: onnxruntime vs PyTorch max |diff| {report['max_abs_diff']:.2e}, "
        f"labels equal on {100 * report['labels_equal']:.2f}% of pixels"
    )
    return 0


def write_merged_encoder(model, output, *, origin: str) -> int:
    """Write the encoder with W' and b' (safetensors, the encoder's own names; loads as ``--weights encoder=``)."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from ..errors import OptionError
    from ..files import atomic_write

    if model.cfg.method != "soma":
        raise OptionError(
            f"--merged folds a weight-level adapter into the encoder; {origin} is {model.cfg.method!r}, not soma"
        )
    out = Path(output)
    if out.suffix != ".safetensors":
        raise OptionError(f"--merged writes a safetensors file; name the output *.safetensors (got {out.name})")
    state = {k: v.detach().contiguous().cpu() for k, v in model.eval().merged_encoder_state().items()}
    meta = {
        "format": "dgss-merged-encoder/1",
        "encoder": model.cfg.encoder.name,
        "merged_from": origin,
        "base_licence": model.cfg.encoder.licence,
        "base_weights": json.dumps(model.encoder.frozen_source),
    }
    atomic_write(out, lambda tmp: save_file(state, tmp, metadata=meta))
    print(
        f"wrote {out}: {model.cfg.encoder.name} with the SoMA adapter folded in (a new encoder: new hashes, "
        f"licence of the base encoder: {model.cfg.encoder.licence})"
    )
    return 0


def register(sub) -> None:
    from ..checks import int_in, nonempty_text

    p = sub.add_parser("export", help="export a model (fixed vocabulary, fixed window) to ONNX and check it")
    p.add_argument("model", help="dgss checkpoint (.safetensors) or preset name")
    p.add_argument("output", help="output .onnx file (--merged: .safetensors encoder file)")
    p.add_argument(
        "--merged",
        action="store_true",
        help="SoMA: write the encoder with the adapter folded in (W', b') as a plain encoder file, not ONNX",
    )
    p.add_argument("--window", type=int_in(16, 4096), help="window side (default: the model's inference window)")
    p.add_argument("--weights", nargs="*", metavar="NAME=FILE")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument(
        "--allow-hash-mismatch",
        action="store_true",
        help="use --weights files whose SHA-256 differs from the one the checkpoint records",
    )
    p.add_argument(
        "--classes", type=nonempty_text, help="open-vocabulary models (Vireo, CAT-Seg): the fixed class list"
    )
    p.add_argument("--vocab", help="open-vocabulary models: built-in vocabulary or JSON file")
    p.set_defaults(func=run)

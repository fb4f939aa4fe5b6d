"""`dgss export`: a model (fixed vocabulary, fixed window) to ONNX, checked against PyTorch."""

from __future__ import annotations

import torch

from ..engine.export import check_onnx, export_onnx


def run(args) -> int:
    from ..checks import check_output_file
    from ..engine.predict import set_classes, text_encoder_for
    from ..hub.resolve import load_for_inference
    from .predict import parse_weights

    weights = parse_weights(args.weights)
    check_output_file(args.output, "output")  # before the model is built and traced
    model = load_for_inference(args.model, weights, args.random_weights, allow_hash_mismatch=args.allow_hash_mismatch)
    if args.classes or args.vocab:
        set_classes(model, args.classes or args.vocab, text_encoder_for(model, weights))
    path = export_onnx(model, args.output, window=args.window)
    x = torch.randn(1, 3, args.window or model.cfg.crop_size, args.window or model.cfg.crop_size)
    report = check_onnx(model, path, x)
    print(
        f"wrote {path}: onnxruntime vs PyTorch max |diff| {report['max_abs_diff']:.2e}, "
        f"labels equal on {100 * report['labels_equal']:.2f}% of pixels"
    )
    return 0


def register(sub) -> None:
    from ..checks import int_in, nonempty_text

    p = sub.add_parser("export", help="export a model (fixed vocabulary, fixed window) to ONNX and check it")
    p.add_argument("model", help="dgss checkpoint (.safetensors) or preset name")
    p.add_argument("output", help="output .onnx file")
    p.add_argument("--window", type=int_in(16, 4096), help="window side (default: the training crop)")
    p.add_argument("--weights", nargs="*", metavar="NAME=FILE")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument(
        "--allow-hash-mismatch",
        action="store_true",
        help="use --weights files whose SHA-256 differs from the one the checkpoint records",
    )
    p.add_argument("--classes", type=nonempty_text, help="open-vocabulary models: the fixed class list")
    p.add_argument("--vocab", help="open-vocabulary models: built-in vocabulary or JSON file")
    p.set_defaults(func=run)

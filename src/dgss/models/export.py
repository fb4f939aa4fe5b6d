"""ONNX export of a segmentor for a fixed vocabulary and window size.

The exported graph maps a normalised window (B, 3, H, W) to per-class scores (B, K, H, W) (the
``predict_windows`` of the segmentor, text tables baked in as constants); sliding windows and the
argmax stay outside. Checked against PyTorch with onnxruntime by :func:`check_onnx`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .segmentor import Segmentor


class _WindowScores(nn.Module):
    def __init__(self, model: Segmentor):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_windows(x)


def export_onnx(model: Segmentor, path: str | Path, *, window: int | None = None, batch: int = 1,
                opset: int = 17) -> Path:
    """Write ``path`` (ONNX) for windows of ``window`` x ``window`` (default: the training crop)."""
    window = window or model.cfg.crop_size
    model = model.eval()
    x = torch.zeros(batch, 3, window, window)
    path = Path(path)
    from ..files import atomic_write   # temporary file + rename: a kill never leaves a half-written model

    def write(tmp: str) -> None:
        with torch.no_grad():
            torch.onnx.export(_WindowScores(model), (x,), tmp, input_names=["image"], output_names=["scores"],
                              opset_version=opset, dynamo=False,
                              dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}})
    atomic_write(path, write)
    return path


def check_onnx(model: Segmentor, path: str | Path, x: torch.Tensor) -> dict:
    """Max abs difference of scores and label agreement between onnxruntime and PyTorch on ``x``."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = sess.run(None, {"image": x.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        ref = model.eval().predict_windows(x).numpy()
    return {"max_abs_diff": float(np.abs(ours - ref).max()),
            "labels_equal": float((ours.argmax(1) == ref.argmax(1)).mean())}


def run(args) -> int:
    from ..cli_checks import check_output_file
    from ..engine.predict import set_classes, text_encoder_for
    from ..engine.predict_cli import load_for_inference, parse_weights
    weights = parse_weights(args.weights)
    check_output_file(args.output, "output")           # before the model is built and traced
    model = load_for_inference(args.model, weights, args.random_weights,
                               allow_hash_mismatch=args.allow_hash_mismatch)
    if args.classes or args.vocab:
        set_classes(model, args.classes or args.vocab, text_encoder_for(model, weights))
    path = export_onnx(model, args.output, window=args.window)
    x = torch.randn(1, 3, args.window or model.cfg.crop_size, args.window or model.cfg.crop_size)
    report = check_onnx(model, path, x)
    print(f"wrote {path}: onnxruntime vs PyTorch max |diff| {report['max_abs_diff']:.2e}, "
          f"labels equal on {100 * report['labels_equal']:.2f}% of pixels")
    return 0


def register(sub) -> None:
    from ..cli_checks import int_in, nonempty_text
    p = sub.add_parser("export", help="export a model (fixed vocabulary, fixed window) to ONNX and check it")
    p.add_argument("model", help="dgss checkpoint (.safetensors) or preset name")
    p.add_argument("output", help="output .onnx file")
    p.add_argument("--window", type=int_in(16, 4096), help="window side (default: the training crop)")
    p.add_argument("--weights", nargs="*", metavar="NAME=FILE")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--allow-hash-mismatch", action="store_true",
                   help="use --weights files whose SHA-256 differs from the one the checkpoint records")
    p.add_argument("--classes", type=nonempty_text, help="open-vocabulary models: the fixed class list")
    p.add_argument("--vocab", help="open-vocabulary models: built-in vocabulary or JSON file")
    p.set_defaults(func=run)

"""ONNX export of a segmentor for a fixed vocabulary and window size.

The exported graph maps a normalised window (B, 3, H, W) to per-class scores (B, K, H, W) (the
``predict_windows`` of the segmentor, text tables baked in as constants; for CAT-Seg the text embeddings
of its trained tower and the resize to the CLIP input); sliding windows and the argmax stay outside. Checked against PyTorch with onnxruntime by :func:`check_onnx`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.segmentor import Segmentor


class _WindowScores(nn.Module):
    def __init__(self, model: Segmentor):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_windows(x)


def export_onnx(
    model: Segmentor, path: str | Path, *, window: int | None = None, batch: int = 1, opset: int = 17
) -> Path:
    """Write ``path`` (ONNX) for windows of ``window`` x ``window`` (default: the model's inference window,
    ``model.window_size``: the training crop, or CAT-Seg's view / window size)."""
    window = window or model.window_size
    model = model.eval()
    x = torch.zeros(batch, 3, window, window)
    path = Path(path)
    from ..files import atomic_write  # temporary file + rename: a kill never leaves a half-written model

    def write(tmp: str) -> None:
        with torch.no_grad():
            model.predict_windows(x[:1])  # fills lazily computed constants (CAT-Seg's text embeddings) first
            torch.onnx.export(
                _WindowScores(model).eval(),  # the exporter restores the wrapper's mode: it must stay eval
                (x,),
                tmp,
                input_names=["image"],
                output_names=["scores"],
                opset_version=opset,
                dynamo=False,
                dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}},
            )

    atomic_write(path, write)
    return path


def check_onnx(model: Segmentor, path: str | Path, x: torch.Tensor) -> dict:
    """Max abs difference of scores and label agreement between onnxruntime and PyTorch on ``x``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = sess.run(None, {"image": x.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        ref = model.eval().predict_windows(x).numpy()
    return {
        "max_abs_diff": float(np.abs(ours - ref).max()),
        "labels_equal": float((ours.argmax(1) == ref.argmax(1)).mean()),
    }

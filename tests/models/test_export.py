"""ONNX export of tiny segmentors, checked with onnxruntime against PyTorch."""

import warnings

import pytest
import torch

from dgss.cli import main
from dgss.engine.export import check_onnx, export_onnx
from dgss.models.checkpoint import save_checkpoint
from dgss.testing import tiny_segmentor

pytest.importorskip("onnxruntime")

TOL = 1e-4  # fp32 scores in [0, 1]; observed differences are ~1e-6


@pytest.mark.parametrize("method", ["rein", "depthforge", "vireo"])
def test_onnx_matches_pytorch(tmp_path, method):
    torch.manual_seed(0)
    model = tiny_segmentor(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_onnx(model, tmp_path / f"{method}.onnx", batch=2)
    report = check_onnx(model, path, torch.randn(3, 3, 64, 64))  # another batch size than exported
    assert report["max_abs_diff"] < TOL and report["labels_equal"] == 1.0


def test_export_cli(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save_checkpoint(tiny_segmentor("rein"), tmp_path / "m.safetensors")
    assert main(["export", str(ckpt), str(tmp_path / "m.onnx"), "--random-weights"]) == 0
    assert "labels equal on 100.00%" in capsys.readouterr().out

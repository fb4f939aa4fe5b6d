"""`dgss eval` runs a CAT-Seg checkpoint on a folder dataset with the dataset's own vocabulary."""

from __future__ import annotations

import pytest

from dgss.cli import main
from dgss.models.catseg import build_catseg
from dgss.models.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_eval_catseg_checkpoint_on_generated_folder(tmp_path, capsys):
    model = build_catseg("catseg-tiny", class_names=("road", "car"), inference="dgss")
    model.randomize_clip(0)
    ckpt = save_checkpoint(model, tmp_path / "tiny.safetensors")
    assert (
        main(["data", "generate-scenes", str(tmp_path / "scenes"), "--train", "1", "--val", "2", "--size", "64", "48"])
        == 0
    )
    capsys.readouterr()
    out = tmp_path / "out"
    args = ["eval", str(ckpt), "--data", f"folder={tmp_path / 'scenes'}", "--split", "val", "--random-weights"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mIoU" in text and "sky" in text  # the folder's classes, not the 2-class training vocabulary

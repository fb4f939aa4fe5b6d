"""`dgss predict` on a folder shows a progress bar on a terminal (n/total), and none with --no-progress."""

from __future__ import annotations

import io
import sys

import torch
from PIL import Image

from dgss.cli import main
from dgss.data.scenes import make_scene
from dgss.models.checkpoint import save_checkpoint
from dgss.testing import tiny_segmentor


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_folder_progress_bar(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(make_scene(20 + i, 64, 96).image).save(folder / f"{i}.png")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tiny_segmentor("rein"), tmp_path / "m.safetensors")
    for extra, shown in (([], True), (["--no-progress"], False)):
        term = Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        assert (
            main(
                [
                    "predict",
                    str(folder),
                    "--model",
                    str(ckpt),
                    "--random-weights",
                    "--out",
                    str(tmp_path / f"out{len(extra)}"),
                    *extra,
                ]
            )
            == 0
        )
        monkeypatch.undo()
        text = term.getvalue()
        assert ("3/3" in text and "predict" in text) == shown, text

"""`dgss data prepare` and `dgss predict` killed with SIGKILL mid-work, then run again, give the same tree
(SHA-256 of every file) as one uninterrupted run, and leave no partial or temporary file behind.

The kill comes at a seeded random moment after the first output file appears, and the test checks that
the killed run had not finished (so the kill did interrupt work).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgss.data.scenes import make_scene
from dgss.models.checkpoint import save_checkpoint
from dgss.testing import tiny_segmentor

pytestmark = pytest.mark.e2e  # processes killed mid-run and rerun

ROOT = Path(__file__).resolve().parents[2]


def env() -> dict:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    e.pop("DGSS_DEBUG", None)
    return e


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def dgss(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "dgss", *args], env=env(), capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert res.returncode == 0, f"dgss {' '.join(args)} failed ({res.returncode}):\n{res.stderr}"
    return res


def kill_mid_work(args: list[str], done, first_output, total: int, seed: int) -> None:
    """Start ``dgss *args``, wait for ``first_output()`` to be true, sleep a seeded random moment and
    SIGKILL it; asserts the run had not finished (``done()`` < ``total`` outputs)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dgss", *args],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.time() + 300
    while not first_output():
        assert proc.poll() is None, f"exited before the first output: {proc.stderr.read()}"
        assert time.time() < deadline
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.0, 0.4))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert done() < total, "the run finished before the kill: nothing was tested"


# ---------------------------------------------------------------------------------------------- data prepare
def cityscapes_sources(root: Path, n: int) -> Path:
    """``n`` Cityscapes-layout pairs whose labels are *_gtFine_labelIds.png (what `prepare` converts)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        stem = f"city_{i:06d}_000019"
        img = root / "leftImg8bit" / "train" / "city" / f"{stem}_leftImg8bit.png"
        lab = root / "gtFine" / "train" / "city" / f"{stem}_gtFine_labelIds.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        lab.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
        Image.fromarray(rng.integers(0, 34, (256, 512), dtype=np.uint8)).save(lab)
    return root


def test_prepare_killed_and_rerun_equals_one_run(tmp_path):
    n = 80
    src = cityscapes_sources(tmp_path / "src" / "cityscapes", n)
    ref, killed = tmp_path / "ref" / "cityscapes", tmp_path / "killed" / "cityscapes"
    shutil.copytree(src, ref)
    shutil.copytree(src, killed)
    dgss("data", "prepare", "cityscapes", str(ref), "--no-progress")
    outputs = lambda: list(killed.rglob("*_labelTrainIds.png"))
    assert len(list(ref.rglob("*_labelTrainIds.png"))) == n
    for seed in (1, 2):  # killed twice at different moments
        kill_mid_work(
            ["data", "prepare", "cityscapes", str(killed), "--no-progress"],
            lambda: len(outputs()),
            lambda seed=seed: len(outputs()) > (0 if seed == 1 else n // 3),
            n,
            seed,
        )
    dgss("data", "prepare", "cityscapes", str(killed), "--no-progress")
    assert digest(killed) == digest(ref)
    assert not list(killed.rglob(".*")), "temporary files left behind"


# ---------------------------------------------------------------------------------------------- predict
def test_predict_killed_and_rerun_equals_one_run(tmp_path):
    n = 30
    images = tmp_path / "images"
    images.mkdir()
    for i in range(n):
        Image.fromarray(make_scene(100 + i, 64, 96).image).save(images / f"img_{i:03d}.png")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tiny_segmentor("rein"), tmp_path / "tiny.safetensors")
    common = ["--model", str(ckpt), "--random-weights", "--precision", "fp32", "--no-progress"]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    dgss("predict", str(images), *common, "--out", str(ref))
    labels = lambda: list(killed.glob("*_label.png")) if killed.is_dir() else []
    assert len(list(ref.glob("*_label.png"))) == n
    kill_mid_work(
        ["predict", str(images), *common, "--out", str(killed)],
        lambda: len(labels()),
        lambda: len(labels()) > 0,
        n,
        seed=3,
    )
    dgss("predict", str(images), *common, "--out", str(killed))
    assert digest(killed) == digest(ref)
    leftovers = [p.name for p in killed.iterdir() if p.name.startswith(".") and p.name != ".dgss-owned"]
    assert not leftovers, f"partial files left behind: {leftovers}"

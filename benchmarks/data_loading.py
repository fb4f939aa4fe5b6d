"""Data-loading throughput of the training pipeline (images/s) for N DataLoader workers.

A synthetic dataset (no real data: blocky label maps, textured class colours) is written in the
Cityscapes layout at Cityscapes size (2048x1024 PNG), then `SegDataset` + `TrainPipeline` (decode,
random-choice resize, 512 crop with cat_max_ratio, flip, photometric distortion, normalise, pad)
is timed through a `DataLoader` for each worker count. The first batch (worker start-up) is not timed.

    python benchmarks/data_loading.py [--images 32] [--size 2048x1024] [--batch 4] [--workers 0,1,2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dgss.data.datasets import SegDataset
from dgss.data.transforms import TrainPipeline


def make_dataset(root: Path, n: int, width: int, height: int, seed: int = 0) -> Path:
    """Write n synthetic image/label pairs under root/cityscapes (leftImg8bit/gtFine, split train)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (19, 3))
    yy, xx = np.mgrid[0:height, 0:width]
    texture = (20 * np.sin(xx / 7.0) * np.cos(yy / 11.0)).astype(np.int16)
    for i in range(n):
        grid = rng.integers(0, 19, (8, 16))
        grid[rng.random(grid.shape) < 0.05] = 255
        lab = np.kron(grid, np.ones((height // 8 + 1, width // 16 + 1), np.int64))[:height, :width].astype(np.uint8)
        img = (
            palette[np.minimum(lab, 18)].astype(np.int16) + texture[..., None] + rng.integers(0, 8, (height, width, 1))
        )
        stem = f"synth_{i:06d}_000019"
        d_img, d_lab = root / "cityscapes/leftImg8bit/train/synth", root / "cityscapes/gtFine/train/synth"
        d_img.mkdir(parents=True, exist_ok=True)
        d_lab.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d_img / f"{stem}_leftImg8bit.png", compress_level=1)
        Image.fromarray(lab).save(d_lab / f"{stem}_gtFine_labelTrainIds.png")
    return root / "cityscapes"


def measure(ds: SegDataset, workers: int, batch: int, passes: int) -> float:
    """images/s over `passes` epochs, excluding the first batch."""
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        generator=g,
        persistent_workers=workers > 0,
        drop_last=True,
    )
    seen, start = 0, None
    for _ in range(passes):
        for b in loader:
            if start is None:
                start = time.perf_counter()
                continue
            seen += b["image"].shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    from _util import print_host

    print_host()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", default="2048x1024", help="WxH of the synthetic images")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--passes", type=int, default=2, help="epochs over the synthetic set per setting")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_dataset(Path(tmp), args.images, width, height)
        print(
            f"synthetic dataset: {args.images} images {width}x{height} PNG ({time.perf_counter() - t0:.1f} s to write); "
            f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs"
        )
        ds = SegDataset.from_root("cityscapes", tmp, "train", transform=TrainPipeline())
        print("\n| workers | images/s | ms/image |\n|---|---|---|")
        for w in (int(v) for v in args.workers.split(",")):
            ips = measure(ds, w, args.batch, args.passes)
            print(f"| {w} | {ips:.1f} | {1000 / ips:.0f} |", flush=True)


if __name__ == "__main__":
    main()

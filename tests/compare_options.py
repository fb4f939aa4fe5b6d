"""The tiny comparison-run options shared by the `dgss demo --methods` tests (a few seconds per method)."""

from __future__ import annotations

from dgss.demo.compare import CompareOptions

TINY_OPTS = CompareOptions(
    iters=2,
    train_scenes=3,
    val_scenes=2,
    batch_size=2,
    crop=64,
    embed_dim=32,
    scene_size=(64, 128),
    num_points=256,
    threads=1,
)

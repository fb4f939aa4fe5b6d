"""SoMA's training cost: one step at demo scale next to LoRA and REIN, and the real-size memory estimate.

* ``step``: the tiny models of ``dgss demo --methods`` (width 96, 4 blocks, 128² crops, batch 4, random
  frozen weights, SoMA initialised from them), fp32, each method in its own process: median seconds per
  step (forward, loss, backward, AdamW) and peak RSS above the loaded model and optimiser.
* ``--estimate``: SoMA on DINOv2-L/16 at 512², batch 8, dgss defaults (bf16 autocast, frozen weights in
  bf16, recomputation), through ``train_memory_estimate.estimate`` (FakeTensorMode + MemTracker; no
  data, so the SVD initialisation is skipped: memory does not depend on the factor values).

    python benchmarks/soma_train_step.py [--steps 5] [--estimate]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def step_child(method: str, steps: int, batch: int, size: int, threads: int = 2) -> dict:
    from _util import peak_rss_mb, rss_mb
    from train_memory_estimate import patch_data_dependent_steps

    from dgss.losses import build_loss
    from dgss.testing import tiny_segmentor

    torch.set_num_threads(threads)
    patch_data_dependent_steps()
    torch.manual_seed(0)
    model = tiny_segmentor(method, img_size=size, embed_dim=96, depth=4)  # random frozen weights, marked
    model.initialize_adapter(seed=0)
    model.train()
    loss_fn = build_loss(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(batch, 3, size, size)
    targets = [{"labels": torch.arange(10), "masks": torch.rand(10, size, size) > 0.5} for _ in range(batch)]
    base = rss_mb()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        losses = loss_fn.criterion(model(x), targets)
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"time_s": statistics.median(times[1:] or times), "peak_mb": peak_rss_mb() - base, "trainable": trainable}


def estimate_child(batch: int, size: int) -> dict:
    """train_memory_estimate.estimate with a SoMA build (the script's own table knows REIN/DepthForge/Vireo)."""
    import train_memory_estimate as tme

    from dgss.models.build import build_model
    from dgss.models.presets import preset_config

    def build(method, variant, size, small, fake=False):
        cfg = preset_config("soma-dinov2-s" if small else "soma-dinov2-l")
        cfg = dataclasses.replace(cfg, crop_size=size, encoder=cfg.encoder.replace(img_size=size))
        if variant == "reference":  # fp32, frozen-block activations kept
            cfg = dataclasses.replace(cfg, grad_checkpoint_frozen=False, **dict.fromkeys(tme.NEW_SWITCHES, False))
        with torch.device("meta") if fake else torch.device("cpu"):
            model = build_model(cfg)
        model.adapter.initialized = True  # no SVD on fake tensors; the memory does not depend on the values
        return model

    tme.build = build
    out = {}
    for variant in ("dgss", "reference"):
        r = tme.estimate("soma", variant, batch, size)
        out[variant] = {"peak_gib": r["peak_gib"], "phase": r["phase"], "by_kind": r["by_kind"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--methods", default="lora,rein,soma")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each step process (default 2)")
    ap.add_argument("--estimate", action="store_true", help="also SoMA on DINOv2-L at 512², batch 8 (minutes)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, _, method = a.child.partition(":")
        res = estimate_child(8, 512) if kind == "estimate" else step_child(method, a.steps, a.batch, a.size, a.threads)
        print(json.dumps(res))
        return
    from _util import machine, print_host, run_child

    print_host()
    print(
        f"# one training step at demo scale (width 96, 4 blocks, {a.size}², batch {a.batch}, fp32, "
        f"{a.threads} thread(s)); {machine()}"
    )
    print("| method | trainable | s/step | peak MB |\n|---|---:|---:|---:|")
    for m in a.methods.split(","):
        r = run_child(
            __file__, f"step:{m}", "--steps", a.steps, "--batch", a.batch, "--size", a.size, "--threads", a.threads
        )
        print(f"| {m} | {r['trainable']:,} | {r['time_s']:.3f} | {r['peak_mb']:.0f} |")
    if a.estimate:
        r = run_child(__file__, "estimate:soma")
        print("\n# SoMA on DINOv2-L/16, 512², batch 8: estimated training-step peak (FakeTensorMode + MemTracker)")
        print("| variant | peak GiB | at | by kind (GiB) |\n|---|---:|---|---|")
        for v, e in r.items():
            kinds = ", ".join(f"{k} {x:.2f}" for k, x in sorted(e["by_kind"].items(), key=lambda kv: -kv[1]))
            print(f"| {v} | {e['peak_gib']:.2f} | {e['phase']} | {kinds} |")


if __name__ == "__main__":
    main()

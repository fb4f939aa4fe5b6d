"""Training-step time and peak memory on this CPU: reference-like settings vs dgss defaults, per method.

A size that fits a 2-core CPU: ViT-S/16 visual encoder (+ DAv2-S), 256² crops, batch 2, real random
weights, each row in its own process (peak RSS above the loaded model and optimizer). Reference-like:
fp32, frozen-block activations kept, all depth tensors computed first, the 4C-channel fusion
materialised. dgss defaults: recomputation of the frozen blocks, interleaved depth branch, split
fusion (bf16 autocast is a GPU default and is left out here: CPU autocast would measure something else).

    python benchmarks/train_step.py [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def child(method: str, variant: str, steps: int, batch: int, size: int) -> dict:
    from _util import peak_rss_mb, rss_mb
    from train_memory_estimate import build, one_step, patch_data_dependent_steps

    torch.set_num_threads(2)
    patch_data_dependent_steps()
    torch.manual_seed(0)
    model = build(method, variant, size, small=True)
    model, opt, x, labels, targets, loss_fn, _ = one_step(
        model, batch, size, bf16=False, reference=variant == "reference"
    )
    base = rss_mb()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        out = model(x)
        losses = loss_fn.criterion(out, targets)
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return {"time_s": statistics.median(times), "peak_mb": peak_rss_mb() - base}


def main() -> None:
    from _util import print_host

    print_host()
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--methods", default="rein,depthforge,vireo")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        m, v = a.child.split(":")
        print(json.dumps(child(m, v, a.steps, a.batch, a.size)))
        return
    from _util import machine, run_child

    print(f"# training step, ViT-S/16 (+ DAv2-S), {a.size}², batch {a.batch}, fp32, median of {a.steps}; {machine()}")
    print("| method | reference-like s/step | dgss s/step | reference-like peak MB | dgss peak MB | memory saved |")
    print("|---|---:|---:|---:|---:|---:|")
    for m in a.methods.split(","):
        res = {}
        for v in ("reference", "dgss"):
            res[v] = run_child(__file__, f"{m}:{v}", "--steps", a.steps, "--batch", a.batch, "--size", a.size)
        r, d = res["reference"], res["dgss"]
        print(
            f"| {m} | {r['time_s']:.2f} | {d['time_s']:.2f} | {r['peak_mb']:.0f} | {d['peak_mb']:.0f} | "
            f"{100 * (1 - d['peak_mb'] / r['peak_mb']):.0f}% |"
        )


if __name__ == "__main__":
    main()

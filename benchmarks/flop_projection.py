"""FLOPs per training step and per inference window, and the GPU times they imply (PROJECTIONS).

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on fake tensors (FakeTensorMode: shapes
only, no data, no GPU), for the real-size models (DINOv2-L/16 + DAv2-L) with dgss defaults:

* training step: forward + loss + backward at 512², batch 8, as executed (the recomputed frozen blocks,
  level fusion and pixel decoder count twice; the no-grad depth branch has no backward);
* inference window: ``predict_windows`` on one 512x512 window (batch 1).

The counter sees matrix products, convolutions and attention (``mm / addmm / bmm / conv / sdpa``);
element-wise ops, norms, softmax, grid_sample and resizes are not counted (memory-bound on GPUs).
Implied time = FLOPs / (utilisation x peak dense bf16): A100 312 TFLOP/s, H100 SXM 989 TFLOP/s, at
``--util`` (default 0.4) — projections, not measurements.

    python benchmarks/flop_projection.py [--methods rein,depthforge,vireo] [--util 0.4]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

PEAK_TFLOPS = {"A100": 312.0, "H100 SXM": 989.0}


def count(method: str, what: str, batch: int, size: int) -> dict:
    import train_memory_estimate as tme
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    tme.patch_data_dependent_steps()
    meta = tme.build(method, "dgss", size, small=False, fake=True)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = meta.to_empty(device="cpu")
        tme.set_random_vocabulary(model)
        counter = FlopCounterMode(display=False)
        if what == "train":
            model, opt, x, labels, targets, loss_fn, ctx = tme.one_step(model, batch, size, bf16=True)
            with counter:
                tme.forward_backward(model, x, labels, targets, loss_fn, ctx)
        else:
            model.eval()
            x = torch.randn(1, 3, size, size)
            with counter, torch.inference_mode():  # FLOPs do not depend on the dtype
                model.predict_windows(x)
    per_module = {k: v for k, v in counter.get_flop_counts().items() if k.count(".") == 1}
    return {"flops": counter.get_total_flops(), "by_module": {k: sum(v.values()) for k, v in per_module.items()}}


def main() -> None:
    from _util import print_host

    print_host()
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="rein,depthforge,vireo")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--util", type=float, default=0.4, help="assumed fraction of the bf16 peak")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(2)
    if a.child:
        method, what = a.child.split(":")
        print(json.dumps(count(method, what, a.batch, a.size)))
        return
    from _util import run_child

    gpus = list(PEAK_TFLOPS)
    print(
        f"# PROJECTIONS (counted FLOPs / ({a.util:.0%} of the dense bf16 peak)), ViT-L/16 + DAv2-L, "
        f"{a.size}²; training step at batch {a.batch}, inference per {a.size} window"
    )
    print(
        "| method | TFLOP / training step | "
        + " | ".join(f"{g} s / step" for g in gpus)
        + " | TFLOP / window | "
        + " | ".join(f"{g} windows / s" for g in gpus)
        + " |"
    )
    print("|---|---:|" + "---:|" * len(gpus) + "---:|" + "---:|" * len(gpus))
    for m in a.methods.split(","):
        tr = run_child(__file__, f"{m}:train", "--batch", a.batch, "--size", a.size)["flops"]
        inf = run_child(__file__, f"{m}:infer", "--batch", 1, "--size", a.size)["flops"]
        step = [tr / (a.util * PEAK_TFLOPS[g] * 1e12) for g in gpus]
        win = [a.util * PEAK_TFLOPS[g] * 1e12 / inf for g in gpus]
        print(
            f"| {m} | {tr / 1e12:.2f} | "
            + " | ".join(f"{s:.3f}" for s in step)
            + f" | {inf / 1e12:.3f} | "
            + " | ".join(f"{w:.0f}" for w in win)
            + " |"
        )


if __name__ == "__main__":
    main()

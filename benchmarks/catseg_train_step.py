"""CAT-Seg training step: estimated peak memory (FakeTensorMode + torch's MemTracker, no GPU needed) and
the measured seconds of one real CPU step.

One step = forward (CLIP image tower at the CLIP input, text tower with gradient on T prompts, aggregator,
decoder), BCE at the 384² label size, backward, AdamW step, fp32 (the reference recipe).

    python benchmarks/catseg_train_step.py --model catseg-clip-l --batch 4 --classes 171 [--time]
"""

from __future__ import annotations

import argparse
import time

import torch

from dgss.losses.catseg_loss import catseg_bce_loss

GIB = 2**30


def step(model, opt, batch: int, classes: int, crop: int) -> None:
    x = torch.randn(batch, 3, crop, crop)
    labels = torch.randint(0, classes, (batch, crop, crop))
    loss = catseg_bce_loss(model(x), labels, check_labels=False)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], model.cfg.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def estimate(name: str, batch: int, classes: int) -> dict:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    from dgss.models.catseg import build_catseg

    # MemTracker hooks every parameter's gradient; frozen ones cannot take hooks: trainable ones only (below)
    orig = MemTracker._track_module_params_and_buffers
    MemTracker._track_module_params_and_buffers = lambda self, module, install_grad_hooks=True: orig(
        self, module, install_grad_hooks=False
    )
    with torch.device("meta"):
        meta = build_catseg(name)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = meta.to_empty(device="cpu")
        model.set_vocabulary([f"class {i}" for i in range(classes)])
        model.train()
        opt = torch.optim.AdamW(model.optimizer_groups(lr=2e-4, weight_decay=1e-4))
        mt = MemTracker()
        mt.track_external(model, opt)
        for p in model.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(
                    lambda q: (mt._update_and_maybe_create_winfos(q.grad, _MemRefType.GRAD), None)[1]
                )
        with mt:
            step(model, opt, batch, classes, model.cfg.crop_size)
        peak = mt.get_tracker_snapshot("peak")
    total = sum(v.get("Total", 0) for v in peak.values())
    return {"model": name, "batch": batch, "classes": classes, "peak_gib": total / GIB}


def timed(name: str, batch: int, classes: int, threads: int) -> float:
    from dgss.models.catseg import build_catseg

    torch.set_num_threads(threads)
    model = build_catseg(name, class_names=tuple(f"class {i}" for i in range(classes))).train()
    opt = torch.optim.AdamW(model.optimizer_groups(lr=2e-4, weight_decay=1e-4))
    t = time.perf_counter()
    step(model, opt, batch, classes, model.cfg.crop_size)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="catseg-clip-l")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--classes", type=int, default=171)
    ap.add_argument("--time", action="store_true", help="also time one real CPU step")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    r = estimate(args.model, args.batch, args.classes)
    print(f"{r['model']}: batch {r['batch']}, {r['classes']} classes, fp32: estimated peak {r['peak_gib']:.2f} GiB")
    if args.time:
        s = timed(args.model, args.batch, args.classes, args.threads)
        print(f"one CPU training step ({args.threads} threads): {s:.1f} s")


if __name__ == "__main__":
    main()

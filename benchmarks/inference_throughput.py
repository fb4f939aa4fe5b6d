"""Inference on a 1024x2048 image with sliding windows (512 / 341, 18 windows): naive pipeline vs dgss.

* ``naive``: one window at a time, fp32, ``torch.no_grad`` (what the reference's test loop does);
* ``dgss fp32``: ``slide_inference`` (inference mode; one window per forward on CPU, batched on GPU),
  and with windows batched as on GPU;
* ``dgss bf16``: the same under CPU bf16 autocast (GPU users get bf16 the same way);
* the depth branch's share of the time (DepthForge): the depth encoder timed alone on the same windows.

Same random weights for all rows; the table reports images/s, the speed-up over naive, the max abs
difference of the averaged scores and the share of identical labels.

    python benchmarks/inference_throughput.py [--model depthforge-dinov2-s-dav2s] [--repeats 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))


def naive_slide(model, x, window=512, stride=341):
    B, _, H, W = x.shape
    acc = torch.zeros(B, model.num_classes, H, W)
    cnt = torch.zeros(1, 1, H, W)
    rows = max(H - window + stride - 1, 0) // stride + 1
    cols = max(W - window + stride - 1, 0) // stride + 1
    with torch.no_grad():
        for r in range(rows):
            for c in range(cols):
                y1, x1 = r * stride, c * stride
                y2, x2 = min(y1 + window, H), min(x1 + window, W)
                y1, x1 = max(y2 - window, 0), max(x2 - window, 0)
                out = model(x[:, :, y1:y2, x1:x2])
                masks = F.interpolate(out["pred_masks"], size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
                seg = torch.einsum("bqc,bqhw->bchw", out["pred_logits"].softmax(-1)[..., :-1], masks.sigmoid())
                acc[:, :, y1:y2, x1:x2] += seg
                cnt[..., y1:y2, x1:x2] += 1
    return acc / cnt


def main() -> None:
    from _util import machine, materialize

    from dgss.models.presets import build_preset
    from dgss.models.segmentor import window_boxes
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="depthforge-dinov2-s-dav2s")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4, help="windows per forward in the batched row")
    a = ap.parse_args()
    torch.set_num_threads(2)
    with torch.device("meta"):
        model = build_preset(a.model)
    model = materialize(model).eval()
    torch.manual_seed(0)
    x = model.normalize(torch.rand(1, 3, 1024, 2048) * 255)

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(a.repeats):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        return best, out

    t_naive, ref = timed(lambda: naive_slide(model, x))
    rows = [("naive (per window, fp32, no_grad)", t_naive, ref)]
    with torch.inference_mode():
        rows.append(("dgss fp32 default (inference mode; 1 window per forward on CPU)",
                     *timed(lambda: model.slide_inference(x))))
        rows.append((f"dgss fp32, {a.batch} windows per forward (the GPU default)",
                     *timed(lambda: model.slide_inference(x, batch=a.batch))))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rows.append(("dgss bf16 autocast", *timed(lambda: model.slide_inference(x).float())))
    labels = ref.argmax(1)
    print(f"# {a.model}, 1024x2048, 18 windows of 512 (stride 341), random weights; {machine()}")
    print("| pipeline | s / image | images/s | speed-up | max abs diff of scores | identical labels |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, t, out in rows:
        diff = (out.float() - ref).abs().max().item()
        same = (out.float().argmax(1) == labels).float().mean().item()
        print(f"| {name} | {t:.2f} | {1 / t:.3f} | {t_naive / t:.2f}x | {diff:.2e} | {100 * same:.3f}% |")
    if model.depth_encoder is not None:
        boxes = window_boxes(1024, 2048, 512, 341)
        dep = model.depth_encoder
        with torch.inference_mode():
            t0 = time.perf_counter()
            for y1, y2, x1, x2 in boxes:
                t, st = dep.embed(x[:, :, y1:y2, x1:x2])
                for i in range(dep.depth):
                    t = dep.forward_block(i, t, st)
            t_depth = time.perf_counter() - t0
        print(f"\ndepth branch (frozen {dep.cfg.name} on the 18 windows): {t_depth:.2f} s = "
              f"{100 * t_depth / rows[1][1]:.0f}% of the dgss fp32 inference time")


if __name__ == "__main__":
    main()

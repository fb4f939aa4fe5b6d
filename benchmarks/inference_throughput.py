"""CPU inference on a 1024x2048 image with sliding windows: the naive pipeline vs dgss's backends.

Every row runs in its own process (fresh heap, no state left by an earlier row):

* ``naive``: what the reference's test loop does: one 512 window at a time, fp32, ``torch.no_grad``,
  the reference's formulations (level-stacked deformable-attention sampling, the 4C concatenation in
  the level fusion), PyTorch's default BLAS and allocator. Pinned: later dgss speed-ups of its own
  modules do not move this baseline;
* ``dgss fp32``: ``slide_inference`` as ``dgss predict --precision fp32`` runs it (dgss's module
  formulations, heap kept by the allocator, fp32 products on oneDNN where exact: ``dgss.engine.host``);
* ``dgss bf16 autocast, fp32 weights`` (the issue-8 default);
* ``dgss bf16`` (``--precision bf16``): autocast over the encoders + adapter, the head in fp32, frozen
  weights stored in bf16;
* ``+ torch.compile`` of the window forward (compile time reported apart; inductor caches it on disk);
* ``int8`` (``--precision int8``): dynamic int8 frozen Linear layers, the rest fp32;
* ``onnxruntime fp32`` / ``onnxruntime int8`` (``--backend onnxruntime``; export time reported apart).

Speed: ``--model`` (default ``depthforge-dinov2-s-dav2s``, random weights: timing does not depend on
values); its ``max |diff|`` column compares each row's scores with plain PyTorch fp32 on that model.
Agreement: random weights give meaningless margins, so the share of identical labels (each row vs
plain fp32) is measured on a *trained* model: the checkpoint ``dgss demo`` writes
(``--trained /tmp/demo/run/iter_000600.safetensors``; its frozen encoders are the demo's seeded random
ones) on a generated 1024x2048 scene. Without ``--trained`` the labels compare on the speed model.

    python benchmarks/inference_throughput.py [--trained CKPT] [--rows naive,fp32,...] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))

ROWS = {
    "naive": "naive (one window at a time, fp32, no_grad)",
    "fp32": "**dgss fp32** (`dgss predict` default on CPUs: dgss's formulations, oneDNN fp32 products, allocator kept warm)",
    "bf16-autocast": "dgss bf16 autocast, fp32 weights (issue-8 default)",
    "bf16": "dgss `--precision bf16` (autocast over encoders + adapter, head fp32, bf16 frozen weights; the GPU default)",
    "bf16-compile": "dgss bf16 + `--compile`",
    "int8": "dgss `--precision int8` (int8 frozen Linear, rest fp32)",
    "ort-fp32": "`--backend onnxruntime` fp32",
    "ort-int8": "`--backend onnxruntime --precision int8`",
}
QUICK_ROWS = "naive,fp32,bf16,int8,ort-fp32"


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


def reference_formulation(model):
    """The naive row's model: the reference's formulations of the modules dgss computes differently."""
    from dgss.heads.ms_deform_attn import MultiScaleDeformableAttention
    from dgss.heads.refine import GatedLevelFusion

    for m in model.modules():
        if isinstance(m, MultiScaleDeformableAttention):
            m.reference_core = True
        if isinstance(m, GatedLevelFusion):
            m.split_fusion = False
    return model


def prepared(model, row: str, cache: Path):
    """(model ready for ``row``, context factory, one-off setup seconds)."""
    from dgss.engine.backends import configure_inference

    m = copy.deepcopy(model).eval()
    t = time.perf_counter()
    if row == "naive":
        return reference_formulation(m), nullcontext, 0.0
    if row == "bf16-autocast":
        ctx = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        backend = "onnxruntime" if row.startswith("ort") else "torch"
        precision = {
            "fp32": "fp32",
            "bf16": "bf16",
            "bf16-compile": "bf16",
            "int8": "int8",
            "ort-fp32": "fp32",
            "ort-int8": "int8",
        }[row]
        ctx = configure_inference(
            m,
            backend=backend,
            precision=precision,
            compile=row == "bf16-compile",
            device=torch.device("cpu"),
            onnx_cache=cache,
        )
    return m, ctx, time.perf_counter() - t


def run_row(model, row: str, x: torch.Tensor, cache: Path) -> tuple[torch.Tensor, float, float]:
    """(scores, seconds for the image, setup seconds incl. export / compile on a first window)."""
    m, ctx, setup = prepared(model, row, cache)
    if row == "naive":
        t = time.perf_counter()
        out = naive_slide(m, x, m.cfg.crop_size, m.cfg.slide_stride)
        return out, time.perf_counter() - t, 0.0
    with torch.inference_mode(), ctx():
        if row == "bf16-compile":  # the first call compiles: timed as setup
            t = time.perf_counter()
            m.predict_windows(x[:, :, : m.cfg.crop_size, : m.cfg.crop_size], pad_to=(m.cfg.crop_size,) * 2)
            setup += time.perf_counter() - t
        t = time.perf_counter()
        out = m.slide_inference(x).float()
        return out, time.perf_counter() - t, setup


def speed_model(name: str):
    from _util import materialize

    from dgss.models.presets import build_preset

    with torch.device("meta"):
        model = build_preset(name)
    return materialize(model).eval()


def trained_model(path: str):
    from dgss.models.checkpoint import load_checkpoint

    return load_checkpoint(path, random_frozen=True).eval()


def inputs(a):
    """(speed model, its input, agreement model, its input, agreement description)."""
    from dgss.data.scenes import make_scene

    model = speed_model(a.model)
    torch.manual_seed(0)
    x = model.normalize(torch.rand(1, 3, a.height, a.width) * 255)
    if not a.trained:
        return model, x, model, x, f"{a.model} (random weights)"
    agree = trained_model(a.trained)
    scene = make_scene(7, height=a.height, width=a.width)
    ax = agree.normalize(torch.from_numpy(scene.image).permute(2, 0, 1).float()[None])
    return (
        model,
        x,
        agree,
        ax,
        (f"trained `dgss demo` checkpoint ({agree.cfg.name}) on a generated {a.height}x{a.width} scene"),
    )


def child(a) -> None:
    """One row in this process: time it on the speed model, save both models' scores."""
    import json

    from dgss.engine.host import tune_allocator

    torch.set_num_threads(2)
    if a.row != "naive":  # dgss's command-line processes tune the allocator; a plain script does not
        tune_allocator()
    model, x, agree, ax, _ = inputs(a)
    out, t, setup = run_row(model, a.row, x, Path(a.cache))
    torch.save(out, Path(a.scores) / f"{a.row}-speed.pt")
    torch.save(
        run_row(agree, a.row, ax, Path(a.cache))[0] if agree is not model else out, Path(a.scores) / f"{a.row}-agree.pt"
    )
    print(json.dumps({"seconds": t, "setup": setup}))


def main() -> None:
    from _util import print_host

    print_host()
    from _util import machine, run_child

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="depthforge-dinov2-s-dav2s")
    ap.add_argument("--trained", help="dgss demo checkpoint for the agreement columns")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--quick", action="store_true", help=f"rows {QUICK_ROWS} only")
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--cache", help="ONNX export cache (default: a temporary folder, so export time is measured)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--row", help=argparse.SUPPRESS)
    ap.add_argument("--scores", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    rows = (QUICK_ROWS if a.quick else a.rows).split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    torch.set_num_threads(2)
    cache = a.cache or tempfile.mkdtemp(prefix="dgss-onnx-")
    scores = Path(tempfile.mkdtemp(prefix="dgss-scores-"))
    flags = ["--model", a.model, "--height", a.height, "--width", a.width, "--cache", cache, "--scores", scores]
    flags += ["--trained", a.trained] if a.trained else []
    timing = {r: run_child(__file__, "--row", r, *flags) for r in rows}

    # the references: plain PyTorch fp32 (dgss's modules, default BLAS and allocator), in this process
    model, x, agree, ax, agree_name = inputs(a)
    with torch.inference_mode():
        ref_speed = model.slide_inference(x)
        ref_agree = agree.slide_inference(ax) if agree is not model else ref_speed
    t_naive = timing["naive"]["seconds"] if "naive" in timing else None
    print(
        f"# speed: {a.model}, {a.height}x{a.width}, sliding windows {model.cfg.crop_size}/{model.cfg.slide_stride}; "
        f"labels vs plain fp32: {agree_name}; {machine()}"
    )
    print(
        "| pipeline | s / image | speed-up vs naive | one-off setup (s) | max abs diff of scores (speed model) "
        "| identical labels (trained model) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        t, setup = timing[r]["seconds"], timing[r]["setup"]
        diff = (torch.load(scores / f"{r}-speed.pt") - ref_speed).abs().max().item()
        same = (torch.load(scores / f"{r}-agree.pt").argmax(1) == ref_agree.argmax(1)).float().mean().item()
        speed = f"{t_naive / t:.2f}x" if t_naive else "-"
        print(f"| {ROWS[r]} | {t:.2f} | {speed} | {setup:.1f} | {diff:.1e} | {100 * same:.3f}% |")


if __name__ == "__main__":
    main()

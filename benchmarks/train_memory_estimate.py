"""Estimated training-step peak memory without a GPU: one step (forward, loss, backward, AdamW step)
of the real-size models under PyTorch's FakeTensorMode, tracked by torch's MemTracker.

Rows: REIN, DepthForge and Vireo on DINOv2-L/16 (+ DAv2-L), 512², batch 8, for
* ``reference-like``: fp32, frozen blocks keep their activations, the depth encoder runs inside the
  autograd graph with all 24 depth tensors computed first (so its activations are kept too), the
  4096-channel fusion materialised;
* ``dgss defaults``: bf16 autocast, frozen Linear/Conv weights stored in bf16, recomputation of the
  frozen blocks, of the level fusion and of the pixel decoder, interleaved no-grad depth
  branch, split fusion.

Fake tensors carry shapes, dtypes and storages but no data, so data-dependent steps are replaced by
shape-equivalent ones for the estimate: the Hungarian assignment takes the first G queries (same
tensors as any assignment), targets are G = 10 class masks per image, and the prior loss is averaged
over all pixels. The estimate is cross-checked against the real peak RSS of a CPU step at a size that
fits this machine (``--check``).

    python benchmarks/train_memory_estimate.py [--methods ...] [--baselines] [--ablations] [--fits] [--all] [--check]

Prints the dgss-default peak with its breakdown by kind and by module; ``--baselines`` adds the
reference-like and issue-8 columns, ``--ablations`` each issue-15 switch turned off alone, ``--fits`` the
largest batch for 12 / 16 / 24 GiB (each estimate is a child process of 1-3 minutes here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

GIB = 2**30
# the issue-15 switches (SegmentorConfig); the issue-8 ones are grad_checkpoint_frozen, depth_interleave,
# refine_split_fusion
NEW_SWITCHES = ("frozen_bf16", "recompute_level_fusion", "recompute_pixel_decoder", "recompute_cmpe")


def patch_data_dependent_steps() -> None:
    """Shape-equivalent replacements for the steps that read tensor values."""
    import dgss.losses.mask2former_loss as ml
    import dgss.losses.matcher as mt
    import dgss.losses.segmentation_loss as sl

    def first_queries(self, pred_logits, pred_masks, targets):
        out = []
        for t in targets:
            g = t["labels"].shape[0]
            out.append((torch.arange(g), torch.arange(g)))
        return out

    mt.HungarianMatcher.forward = first_queries

    def dense_prior(coarse, labels, ignore_index=255):
        B, K, h, w = coarse.shape
        lab = torch.nn.functional.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        target = torch.nn.functional.one_hot(lab.clamp(0, K - 1), K).permute(0, 3, 1, 2).to(coarse.dtype)
        return torch.nn.functional.binary_cross_entropy_with_logits(coarse.float(), target.float())

    sl.prior_loss = dense_prior
    del ml


def build(method: str, variant: str, size: int, small: bool, fake: bool = False):
    from dgss.models.build import build_model
    from dgss.models.presets import preset_config

    # a method key (the DINOv2-L rows) or any preset name (e.g. rein-dinov3-l, soma-dinov2-l)
    name = {"rein": "rein-dinov2-l", "depthforge": "depthforge-dinov2-l", "vireo": "vireo-dinov2-l"}.get(method, method)
    if small:
        name = {"rein": "rein-dinov2-s", "depthforge": "depthforge-dinov2-s-dav2s", "vireo": "vireo-dinov2-s"}[method]
    cfg = preset_config(name)
    if small and method == "vireo":  # the small check: DAv2-S with the ViT-S visual encoder
        from dgss.backbones.zoo import ENCODERS
        from dgss.models.vireo import vireo_config

        cfg = vireo_config(ENCODERS["dinov2-s"], ENCODERS["dav2-s"], name="vireo-dinov2-s-dav2s")
    ref = variant == "reference"
    cfg = dataclasses.replace(
        cfg,
        crop_size=size,
        grad_checkpoint_frozen=not ref,
        depth_interleave=not ref,
        refine_split_fusion=not ref,
        **dict.fromkeys(NEW_SWITCHES, False),
    )
    if variant.startswith("dgss"):  # "dgss": all defaults; "dgss-<switch>": defaults with that switch off
        off = variant[5:]
        cfg = dataclasses.replace(cfg, **{k: k != off for k in NEW_SWITCHES})
    cfg = dataclasses.replace(cfg, encoder=cfg.encoder.replace(img_size=size))
    if cfg.depth_encoder is not None:
        cfg = dataclasses.replace(cfg, depth_encoder=cfg.depth_encoder.replace(img_size=size))
    if fake:  # built on the meta device; the caller gives it fake storage (timm's init reads values)
        with torch.device("meta"):
            model = build_model(cfg)
        if getattr(model.adapter, "initialized", True) is False:  # SoMA: no SVD of fake tensors; memory
            model.adapter.initialized = True  # does not depend on the factor values
        return model
    model = build_model(cfg)
    set_random_vocabulary(model)
    return model


def set_random_vocabulary(model) -> None:
    cfg = model.cfg
    if cfg.text is not None:
        import torch.nn.functional as F

        K, D = 19, cfg.text.text_dim
        model.set_vocabulary(
            tuple(f"c{i}" for i in range(K)),
            F.normalize(torch.randn(K + 1, 32, D), dim=-1),
            F.normalize(torch.randn(K + 1, 80, D), dim=-1),
        )


def reference_depth_with_autograd(model) -> None:
    """Reference-like depth branch: the depth encoder takes part in autograd (out of the optimizer,
    but with the full graph, as the issue describes the reference), so every depth activation is kept
    until the backward pass."""
    import dgss.models.segmentor as seg

    if model.depth_encoder is None:
        return
    for p in model.depth_encoder.parameters():
        p.requires_grad_(True)
    base = seg.DepthStream

    class GradDepthStream(base):
        def __init__(self, encoder, x, grid, layer_map, interleave=True):
            self.enc, self.grid, self.layer_map = encoder, grid, layer_map
            self.tokens, self.state = encoder.embed(x)
            self.done, self.cache = -1, {}
            for j in range(encoder.depth):
                self._advance(j)
                self.cache[j] = self.tokens

        def _advance(self, j):
            while self.done < j:
                self.done += 1
                self.tokens = self.enc.forward_block(self.done, self.tokens, self.state)

    seg.DepthStream = GradDepthStream


def one_step(model, batch: int, size: int, bf16: bool, reference: bool = False):
    """Forward + loss + backward + AdamW step; returns nothing (memory is what we look at)."""
    from dgss.losses import build_loss

    loss_fn = build_loss(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if reference:
        reference_depth_with_autograd(model)
    model.train()
    x = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 19, (batch, size, size))
    G = 10
    targets = [{"labels": torch.arange(G), "masks": torch.rand(G, size, size) > 0.5} for _ in range(batch)]
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    return model, opt, x, labels, targets, loss_fn, ctx


def forward_backward(model, x, labels, targets, loss_fn, ctx) -> None:
    """Forward under ``ctx``, the run's loss (criterion + Vireo's prior term) and its backward pass."""
    with ctx:
        out = model(x)
    losses = loss_fn.criterion(out, targets)
    if loss_fn.prior_weight and "coarse_masks" in out:
        import dgss.losses.segmentation_loss as sl

        losses["prior"] = loss_fn.prior_weight * sl.prior_loss(out["coarse_masks"], labels)
    sum(losses.values()).backward()


def estimate(method: str, variant: str, batch: int, size: int, small: bool = False) -> dict:
    from mem_breakdown import BreakdownMemTracker
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import _MemRefType

    patch_data_dependent_steps()
    # MemTracker installs gradient hooks on every parameter; frozen ones cannot take hooks, so the hooks
    # go on the trainable parameters only (below).
    orig = BreakdownMemTracker._track_module_params_and_buffers
    BreakdownMemTracker._track_module_params_and_buffers = lambda self, module, install_grad_hooks=True: orig(
        self, module, install_grad_hooks=False
    )
    meta_model = build(method, variant, size, small, fake=True)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = meta_model.to_empty(device="cpu")
        set_random_vocabulary(model)
        if model.cfg.frozen_bf16:
            model.store_frozen_bf16()
        model, opt, x, labels, targets, loss_fn, ctx = one_step(
            model, batch, size, variant != "reference", reference=variant == "reference"
        )
        mt = BreakdownMemTracker()
        mt.track_external(model, opt, x)
        for p in model.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(
                    lambda q: (mt._update_and_maybe_create_winfos(q.grad, _MemRefType.GRAD), None)[1]
                )
        with mt:
            forward_backward(model, x, labels, targets, loss_fn, ctx)
            opt.step()
            opt.zero_grad()
        peak = mt.get_tracker_snapshot("peak")
    total = sum(v.get("Total", 0) for v in peak.values())
    params = {
        name: sum(p.numel() * p.element_size() for p in mod.parameters()) / GIB
        for name, mod in model.param_groups().items()
    }
    return {
        "method": method,
        "variant": variant,
        "peak_gib": total / GIB,
        "phase": mt.peak_phase,
        "by_kind": {k: v / GIB for k, v in mt.by_kind().items()},
        "by_module": {k: v / GIB for k, v in mt.by_group().items()},
        "params_by_module": params,
    }


def real_cpu_step(method: str, variant: str, batch: int, size: int) -> dict:
    """The same step for real on the CPU: peak RSS above the state before the step (params loaded)."""
    from _util import peak_rss_mb, rss_mb

    patch_data_dependent_steps()
    torch.manual_seed(0)
    model = build(method, variant, size, small=True)
    model, opt, x, labels, targets, loss_fn, ctx = one_step(
        model, batch, size, variant == "dgss", reference=variant == "reference"
    )
    base = rss_mb()
    with ctx:
        out = model(x)
    losses = loss_fn.criterion(out, targets)
    sum(losses.values()).backward()
    opt.step()
    params = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return {"method": method, "variant": variant, "peak_above_start_mb": peak_rss_mb() - base, "params_mb": params}


def fit_batches(run, method: str, size: int, at8: float, targets_gib=(12.0, 16.0, 24.0)) -> dict:
    """Largest batch whose estimated peak fits each target: peak is affine in the batch (fitted on
    batch 8 and 16), the chosen batch is then estimated for real (and lowered while it does not fit)."""
    at16 = run("fake", method, "dgss", 16, size)["peak_gib"]
    per, fixed = (at16 - at8) / 8, at8 - 8 * (at16 - at8) / 8
    out = {}
    for t in targets_gib:
        b = max(1, int((t - fixed) // per))
        while b > 1:
            got = {8: at8, 16: at16}.get(b) or run("fake", method, "dgss", b, size)["peak_gib"]
            if got <= t:
                break
            b -= 1
        out[t] = (b, got if b > 1 else None)
    return out


def main() -> None:
    from _util import print_host

    print_host()
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument(
        "--methods", default="rein,depthforge,vireo", help="method keys or preset names, e.g. soma-dinov3-l"
    )
    ap.add_argument("--baselines", action="store_true", help="also the reference-like and issue-8 columns")
    ap.add_argument("--ablations", action="store_true", help="also each issue-15 switch turned off alone")
    ap.add_argument("--fits", action="store_true", help="also the largest batch for 12 / 16 / 24 GiB")
    ap.add_argument("--all", action="store_true", help="--baselines --ablations --fits")
    ap.add_argument("--check", action="store_true", help="cross-check against a real CPU step (small models)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(2)
    if a.child:
        kind, method, variant = a.child.split(":")
        fn = real_cpu_step if kind == "real" else (lambda m, v, b, s: estimate(m, v, b, s, small=kind == "small"))
        print(json.dumps(fn(method, variant, a.batch, a.size)))
        return
    from _util import machine, run_child

    def run(kind, m, v, batch, size):
        return run_child(__file__, f"{kind}:{m}:{v}", "--batch", batch, "--size", size)

    methods = a.methods.split(",")
    print(
        f"# estimated training-step peak (FakeTensorMode + MemTracker), ViT-L/16 + DAv2-L, {a.size}², "
        f"batch {a.batch}; {machine()}"
    )
    dgss = {m: run("fake", m, "dgss", a.batch, a.size) for m in methods}
    heavy = [m for m in methods if m != "rein"]
    if a.baselines or a.all:
        print("| method | reference-like GiB | issue-8 defaults GiB | dgss defaults GiB | saved vs reference |")
        print("|---|---:|---:|---:|---:|")
        for m in methods:
            r, i8 = run("fake", m, "reference", a.batch, a.size), run("fake", m, "issue8", a.batch, a.size)
            d = dgss[m]["peak_gib"]
            print(f"| {m} | {r['peak_gib']:.1f} | {i8['peak_gib']:.1f} | **{d:.1f}** | {r['peak_gib'] / d:.2f}x |")
    else:
        print("| method | dgss defaults GiB |\n|---|---:|")
        for m in methods:
            print(f"| {m} | {dgss[m]['peak_gib']:.1f} |")
    if a.ablations or a.all:
        print("\n# each issue-15 switch turned off alone (GiB; in brackets: what the switch saves)")
        print("| switch off | " + " | ".join(heavy) + " |\n|---|" + "---:|" * len(heavy))
        for sw in NEW_SWITCHES:
            cells = []
            for m in heavy:
                if sw == "recompute_cmpe" and m != "vireo":
                    cells.append("n/a")
                    continue
                v = run("fake", m, f"dgss-{sw}", a.batch, a.size)["peak_gib"]
                cells.append(f"{v:.1f} ({v - dgss[m]['peak_gib']:.1f})")
            print(f"| `{sw}` | " + " | ".join(cells) + " |")
    if a.fits or a.all:
        print("\n# largest batch that fits (dgss defaults; estimated peak GiB in brackets)")
        print("| method | 12 GiB | 16 GiB | 24 GiB |\n|---|---:|---:|---:|")
        for m in heavy:
            fits = fit_batches(run, m, a.size, dgss[m]["peak_gib"])
            print(f"| {m} | " + " | ".join(f"{b} ({g:.1f})" if g else f"{b}" for b, g in fits.values()) + " |")
    for m in methods:
        d = dgss[m]
        print(
            f"\n# breakdown of the dgss-defaults peak, {m} ({d['peak_gib']:.1f} GiB, reached in the {d['phase']} pass)"
        )
        print("| kind | GiB |\n|---|---:|")
        for k, v in sorted(d["by_kind"].items(), key=lambda kv: -kv[1]):
            print(f"| {k} | {v:.2f} |")
        print("| activations + temporaries by module | GiB |\n|---|---:|")
        for k, v in d["by_module"].items():
            if v >= 0.01:
                print(f"| {k} | {v:.2f} |")
        print("| parameters by module | GiB |\n|---|---:|")
        for k, v in d["params_by_module"].items():
            if v >= 0.01:
                print(f"| {k} | {v:.2f} |")
    if a.check:
        print(
            "\n# cross-check at a size that fits this CPU: ViT-S/16 (+ DAv2-S), 256², batch 2, fp32 "
            "reference-like step (estimated total peak minus parameters vs real peak RSS above the loaded model)"
        )
        print("| method | estimate (MB) | real CPU (MB) | estimate / real |")
        print("|---|---:|---:|---:|")
        for m in methods:
            est = run("small", m, "reference", 2, 256)
            real = run("real", m, "reference", 2, 256)
            e = est["peak_gib"] * 1024 - real["params_mb"]
            print(f"| {m} | {e:.0f} | {real['peak_above_start_mb']:.0f} | {e / real['peak_above_start_mb']:.2f} |")


if __name__ == "__main__":
    main()

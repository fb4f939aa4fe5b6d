"""Estimated training-step peak memory without a GPU: one step (forward, loss, backward, AdamW step)
of the real-size models under PyTorch's FakeTensorMode, tracked by torch's MemTracker.

Rows: REIN, DepthForge and Vireo on DINOv2-L/16 (+ DAv2-L), 512², batch 8, for
* ``reference-like``: fp32, frozen blocks keep their activations, the depth encoder runs inside the
  autograd graph with all 24 depth tensors computed first (so its activations are kept too), the
  4096-channel fusion materialised;
* ``dgss defaults``: bf16 autocast, recomputation of the frozen blocks, interleaved no-grad depth
  branch, split fusion.

Fake tensors carry shapes, dtypes and storages but no data, so data-dependent steps are replaced by
shape-equivalent ones for the estimate: the Hungarian assignment takes the first G queries (same
tensors as any assignment), targets are G = 10 class masks per image, and the prior loss is averaged
over all pixels. The estimate is cross-checked against the real peak RSS of a CPU step at a size that
fits this machine (``--check``).

    python benchmarks/train_memory_estimate.py [--batch 8] [--size 512] [--check]
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
    name = {"rein": "rein-dinov2-l", "depthforge": "depthforge-dinov2-l", "vireo": "vireo-dinov2-l"}[method]
    if small:
        name = {"rein": "rein-dinov2-s", "depthforge": "depthforge-dinov2-s-dav2s",
                "vireo": "vireo-dinov2-s"}[method]
    cfg = preset_config(name)
    if small and method == "vireo":   # the small check: DAv2-S with the ViT-S visual encoder
        from dgss.backbones.zoo import ENCODERS
        from dgss.models.vireo import vireo_config
        cfg = vireo_config(ENCODERS["dinov2-s"], ENCODERS["dav2-s"], name="vireo-dinov2-s-dav2s")
    ref = variant == "reference"
    cfg = dataclasses.replace(cfg, crop_size=size, grad_checkpoint_frozen=not ref, depth_interleave=not ref,
                              refine_split_fusion=not ref)
    cfg = dataclasses.replace(cfg, encoder=cfg.encoder.replace(img_size=size))
    if cfg.depth_encoder is not None:
        cfg = dataclasses.replace(cfg, depth_encoder=cfg.depth_encoder.replace(img_size=size))
    if fake:   # built on the meta device; the caller gives it fake storage (timm's init reads values)
        with torch.device("meta"):
            return build_model(cfg)
    model = build_model(cfg)
    set_random_vocabulary(model)
    return model


def set_random_vocabulary(model) -> None:
    cfg = model.cfg
    if cfg.text is not None:
        import torch.nn.functional as F
        K, D = 19, cfg.text.text_dim
        model.set_vocabulary(tuple(f"c{i}" for i in range(K)), F.normalize(torch.randn(K + 1, 32, D), dim=-1),
                             F.normalize(torch.randn(K + 1, 80, D), dim=-1))


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


def estimate(method: str, variant: str, batch: int, size: int, small: bool = False) -> dict:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    patch_data_dependent_steps()
    # MemTracker installs gradient hooks on every parameter; frozen ones cannot take hooks. Gradients are
    # still counted (as tensors created under the tracker), only not labelled "Grad".
    orig = MemTracker._track_module_params_and_buffers
    MemTracker._track_module_params_and_buffers = lambda self, module, install_grad_hooks=True: orig(
        self, module, install_grad_hooks=False)
    meta_model = build(method, variant, size, small, fake=True)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = meta_model.to_empty(device="cpu")
        set_random_vocabulary(model)
        model, opt, x, labels, targets, loss_fn, ctx = one_step(model, batch, size, variant == "dgss",
                                                                reference=variant == "reference")
        mt = MemTracker()
        mt.track_external(model, opt, x)
        with mt:
            with ctx:
                out = model(x)
            losses = loss_fn.criterion(out, targets)
            if loss_fn.prior_weight and "coarse_masks" in out:
                import dgss.losses.segmentation_loss as sl
                losses["prior"] = loss_fn.prior_weight * sl.prior_loss(out["coarse_masks"], labels)
            sum(losses.values()).backward()
            opt.step()
            opt.zero_grad()
        peak = mt.get_tracker_snapshot("peak")
    total = sum(v.get("Total", 0) for v in peak.values())
    return {"method": method, "variant": variant, "peak_gib": total / GIB}


def real_cpu_step(method: str, variant: str, batch: int, size: int) -> dict:
    """The same step for real on the CPU: peak RSS above the state before the step (params loaded)."""
    from _util import peak_rss_mb, rss_mb
    patch_data_dependent_steps()
    torch.manual_seed(0)
    model = build(method, variant, size, small=True)
    model, opt, x, labels, targets, loss_fn, ctx = one_step(model, batch, size, variant == "dgss",
                                                            reference=variant == "reference")
    base = rss_mb()
    with ctx:
        out = model(x)
    losses = loss_fn.criterion(out, targets)
    sum(losses.values()).backward()
    opt.step()
    params = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return {"method": method, "variant": variant, "peak_above_start_mb": peak_rss_mb() - base, "params_mb": params}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--methods", default="rein,depthforge,vireo")
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
    print(f"# estimated training-step peak (FakeTensorMode + MemTracker), ViT-L/16 + DAv2-L, {a.size}², "
          f"batch {a.batch}; {machine()}")
    print("| method | reference-like (fp32, no recompute) GiB | dgss defaults GiB | ratio |")
    print("|---|---:|---:|---:|")
    for m in methods:
        r, d = run("fake", m, "reference", a.batch, a.size), run("fake", m, "dgss", a.batch, a.size)
        print(f"| {m} | {r['peak_gib']:.1f} | {d['peak_gib']:.1f} | {r['peak_gib'] / d['peak_gib']:.2f}x |")
    if a.check:
        print("\n# cross-check at a size that fits this CPU: ViT-S/16 (+ DAv2-S), 256², batch 2, fp32 "
              "reference-like step (estimated total peak minus parameters vs real peak RSS above the loaded model)")
        print("| method | estimate (MB) | real CPU (MB) | estimate / real |")
        print("|---|---:|---:|---:|")
        for m in methods:
            est = run("small", m, "reference", 2, 256)
            real = run("real", m, "reference", 2, 256)
            e = est["peak_gib"] * 1024 - real["params_mb"]
            print(f"| {m} | {e:.0f} | {real['peak_above_start_mb']:.0f} | {e / real['peak_above_start_mb']:.2f} |")


if __name__ == "__main__":
    main()

"""Every issue-15 memory switch leaves the gradients unchanged (tiny DepthForge / Vireo, order-one weights).

* ``recompute_level_fusion`` / ``recompute_pixel_decoder`` / ``recompute_cmpe`` (Vireo's class chunks of
  the coarse-mask einsum): the same maths recomputed in the backward
  pass. In float64 the gradients may differ only by summation order (tolerance 1e-12 relative); a call
  counter shows the recomputation really happens (the modules run twice per training step).
* ``frozen_bf16``: frozen Linear/Conv weights stored in bf16 vs fp32 weights under the same bf16
  autocast: autocast rounds the fp32 weights to the same bf16 values before each product, so the
  outputs and gradients are bit-identical (asserted with ``torch.equal``).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dgss.models.segmentor import Segmentor
from dgss.testing import tiny_segmentor

sys.path.insert(0, str(Path(__file__).parent))
from order_one_init import order_one_

SWITCHES_OFF = dict(
    recompute_level_fusion=False, recompute_pixel_decoder=False, recompute_cmpe=False, frozen_bf16=False
)


def build_pair(method: str, dtype: torch.dtype, **switches) -> tuple[Segmentor, Segmentor]:
    """(switches off, switches as given) with the same order-one weights."""
    torch.manual_seed(0)
    base = tiny_segmentor(method)
    cfg = dataclasses.replace(base.cfg, **SWITCHES_OFF)
    cfg.head = dataclasses.replace(cfg.head, num_encoder_layers=2)
    models = []
    for cfg_i in (cfg, dataclasses.replace(cfg, **switches)):
        m = Segmentor(cfg_i)
        if m.cfg.text is not None:
            m.set_vocabulary(base.vocab, base.encoder_table, base.head_table)
        models.append(m)
    order_one_(models[0])
    models[1].load_state_dict(models[0].state_dict())
    for m in models:
        m.to(dtype).train()
        for mod in m.frozen_modules().values():
            mod.eval()
    return models[0], models[1]


def step_gradients(model: Segmentor, x: torch.Tensor, autocast: bool = False) -> tuple[dict, torch.Tensor]:
    """One forward + a loss touching every output (last, auxiliary, coarse masks) + backward."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    outs = [out] + out["aux_outputs"]
    loss = sum(
        o["pred_logits"].float().square().mean() + o["pred_masks"].float().sigmoid().square().mean() for o in outs
    )
    if "coarse_masks" in out:
        loss = loss + out["coarse_masks"].float().sigmoid().mean()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, out["pred_masks"].detach()


def count_calls(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(
    "method, switch",
    [
        ("depthforge", "recompute_level_fusion"),
        ("vireo", "recompute_level_fusion"),
        ("depthforge", "recompute_pixel_decoder"),
        ("vireo", "recompute_pixel_decoder"),
        ("vireo", "recompute_cmpe"),
    ],
)
def test_head_recomputation_changes_no_gradient(method, switch):
    off, on = build_pair(method, torch.float64, **{switch: True})
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    watched = {
        "recompute_level_fusion": lambda m: m.head.refine.attention_gate,
        "recompute_pixel_decoder": lambda m: m.head.pixel_decoder.encoder.layers[0],
        "recompute_cmpe": lambda m: m.head.prior.coarse_embed,
    }[switch]
    calls_off, calls_on = count_calls(watched(off)), count_calls(watched(on))
    g_off, y_off = step_gradients(off, x)
    g_on, y_on = step_gradients(on, x)
    # 4 pyramid levels share one gate; CMPE: 19 classes in chunks of 8 -> 3 chunks
    per_step = {"recompute_level_fusion": 4, "recompute_pixel_decoder": 1, "recompute_cmpe": 3}[switch]
    assert calls_off[0] == per_step and calls_on[0] == 2 * per_step  # recomputed once in backward
    assert torch.equal(y_on, y_off)
    assert g_on.keys() == g_off.keys()
    trainable = {n for n, p in off.named_parameters() if p.requires_grad}
    assert set(g_off) == trainable
    for name in g_off:
        torch.testing.assert_close(g_on[name], g_off[name], rtol=1e-12, atol=1e-12, msg=name)
    touched = {
        "recompute_level_fusion": "head.refine.",
        "recompute_pixel_decoder": "head.pixel_decoder.",
        "recompute_cmpe": "head.prior.",
    }[switch]
    assert any(n.startswith(touched) and g_off[n].abs().max() > 1e-3 for n in g_off)


@pytest.mark.parametrize("method", ["depthforge", "vireo"])
def test_frozen_bf16_storage_is_bit_identical_under_bf16_autocast(method):
    ref, bf = build_pair(method, torch.float32)
    before = sum(p.numel() * p.element_size() for p in bf.parameters())
    saved = bf.store_frozen_bf16()
    after = sum(p.numel() * p.element_size() for p in bf.parameters())
    frozen_linear = sum(
        p.numel()
        for mod in bf.frozen_modules().values()
        for m in mod.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
        for p in m.parameters(recurse=False)
    )
    assert saved == before - after == 2 * frozen_linear > 0
    assert all(p.dtype == torch.float32 for p in bf.parameters() if p.requires_grad)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    g_ref, y_ref = step_gradients(ref, x, autocast=True)
    g_bf, y_bf = step_gradients(bf, x, autocast=True)
    assert torch.equal(y_bf, y_ref)
    assert g_bf.keys() == g_ref.keys() and len(g_ref) > 10
    for name in g_ref:
        assert torch.equal(g_bf[name], g_ref[name]), name
    # the comparison is informative: without autocast the fp32 model differs from its bf16 run
    g_fp32, _ = step_gradients(ref, x, autocast=False)
    assert any(not torch.allclose(g_fp32[n], g_ref[n], rtol=1e-3) for n in g_ref)

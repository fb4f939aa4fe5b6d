"""LoRA, AdaptFormer and VPT (``baselines.md`` §2-4): exact counts, order-one formulas, frozen weights.

Formula tests follow ``test_formulas.py``: float64, order-one weights (the frozen LayerScale gains too,
which the random tiny encoders keep at 1e-5), a re-derivation written here from the spec with plain
matmul / einsum on the frozen sub-modules, and ``assert_sensitive`` checks that the plausible wrong
variants move the result by far more than the tolerance.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from order_one import SENSITIVE, TOL, assert_sensitive, randn, rel
from overfit import load_generated_scene, majority_share, overfit

from dgss.adapters.lora import substituted_weights
from dgss.backbones.weights import load_encoder_weights
from dgss.config import OptimConfig, config_from_dict, segmentor_config_from
from dgss.engine.optim import assign_params
from dgss.models.checkpoint import load_checkpoint, save_checkpoint
from dgss.models.param_report import count
from dgss.models.presets import PRESETS, build_preset, preset_config
from dgss.models.segmentor import Segmentor, SegmentorConfig
from dgss.testing import tiny_segmentor, tiny_segmentor_config
from learning import learning_seed, record_margin, step_margin

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch thread

STOCK_HEAD = 20_565_204  # Mask2Former with learned queries, K = 19, ViT-L width (baselines.md §8)


# ------------------------------------------------------------------------------------------ helpers


def assert_all_close(got, ref):
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, **TOL)


def tiny(method: str, encoder: str = "dinov2-s", **kw) -> Segmentor:
    """Tiny float64 model in eval mode with order-one frozen weights (matrices N(0, 1/fan_in), LayerScale
    gains U(0.5, 1.5)), the same values for the same encoder whatever the method, so that models of
    different methods share their frozen weights."""
    torch.manual_seed(0)
    m = tiny_segmentor(method, encoder=encoder, **kw).eval().double()
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, p in m.encoder.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g, dtype=p.dtype))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(p[0].numel()))
    return m


def image(seed=80):
    return randn(2, 3, 64, 64, seed=seed)  # normalised images


def pyramid(enc, x, taps, run_block=None):
    """rein.md §4 taps of plain frozen blocks: patch tokens after the tapped blocks, x4 / x2 / x1 / x0.5."""
    t, state = enc.embed(x)
    P, (h, w) = enc.num_prefix_tokens, state.grid
    maps = []
    for i in range(enc.depth):
        t = (run_block or enc.forward_block)(i, t, state)
        if i in taps:
            maps.append(t[:, P:].transpose(1, 2).reshape(x.shape[0], -1, h, w))
    return [
        F.interpolate(m, scale_factor=s, mode="bilinear", align_corners=False)
        for m, s in zip(maps, (4.0, 2.0, 1.0, 0.5), strict=False)
    ]


# ------------------------------------------------------------------------------------------ counts
EXPECTED = {  # backbone-internal trainable parameters (baselines.md §2-4, §8; other encoders by the same rule)
    "lora-dinov2-l": 786_432,
    "lora-eva02-l": 1_179_648,
    "lora-clip-l": 786_432,
    "lora-sam-h": 1_310_720,
    "adaptformer-dinov2-l": 3_171_840,
    "adaptformer-eva02-l": 3_171_840,
    "adaptformer-clip-l": 3_171_840,
    "adaptformer-sam-h": 5_285_888,
    "vpt-dinov2-l": 3_686_400,
    "vpt-eva02-l": 3_686_400,
    "vpt-clip-l": 3_686_400,
    "lora-dinov3-l": 786_432,  # fused qkv as DINOv2-L (the DINOv3 integration notes)
    "adaptformer-dinov3-l": 3_171_840,
    "vpt-dinov3-l": 3_686_400,
}


def expected_count(method: str, C: int, L: int, eva: bool) -> int:
    if method == "lora":
        return L * 3 * 8 * (C + C) if eva else L * 8 * (C + 3 * C)
    if method == "adaptformer":
        return L * (C * 64 + 64 + 64 * C + C)
    return L * 150 * C


BASELINE_PRESETS = [n for n in PRESETS if n.split("-")[0] in ("lora", "adaptformer", "vpt")]


def test_every_encoder_has_its_peft_presets():
    assert set(BASELINE_PRESETS) >= set(EXPECTED)
    assert {n.split("-", 1)[1] for n in BASELINE_PRESETS if n.startswith("lora-")} == {
        "dinov2-s",
        "dinov2-b",
        "dinov2-l",
        "dinov2-g",
        "eva02-l",
        "clip-l",
        "sam-h",
        "dinov3-s",
        "dinov3-sp",
        "dinov3-b",
        "dinov3-l",
        "dinov3-hp",
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_counts_of_the_peft_presets_on_meta(name):
    with torch.device("meta"):
        m = build_preset(name)
    enc = m.cfg.encoder
    adapter = count(m.adapter)
    assert (
        adapter.trainable
        == adapter.total
        == EXPECTED[name]
        == expected_count(m.cfg.method, enc.embed_dim, enc.depth, enc.family == "eva02")
    )
    assert count(m.encoder).trainable == 0
    assert m.cfg.head.query_source == "learned"  # stock head with learned queries, as freeze
    assert count(m.head).trainable == (STOCK_HEAD if enc.embed_dim == 1024 else 20_827_348)  # SAM-H: C 1280
    assert count(m).trainable == adapter.trainable + count(m.head).trainable


def test_vpt_has_no_sam_preset_and_refuses_sam():
    assert "vpt-sam-h" not in PRESETS and "lora-sam-h" in PRESETS
    with pytest.raises(ValueError, match="SAM"):
        tiny_segmentor_config("vpt", encoder="sam-h")


@pytest.mark.parametrize("name", ["lora-eva02-l", "adaptformer-dinov2-l", "vpt-clip-l"])
def test_config_round_trip_and_config_loader(name):
    cfg = preset_config(name)
    assert SegmentorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    method = name.split("-")[0]
    run = config_from_dict({"name": "t", "model": {"method": method, "preset": name}})
    assert segmentor_config_from(run.model) == cfg
    tiny_run = config_from_dict({"name": "t", "model": {"method": method, "tiny": True}})
    assert type(segmentor_config_from(tiny_run.model).adapter) is type(cfg.adapter)
    with pytest.raises(ValueError, match="does not match preset"):
        config_from_dict({"name": "t", "model": {"method": "rein", "preset": name}})
    with pytest.raises(ValueError, match="needs a"):
        dataclasses.replace(cfg, method="rein")


def test_optimizer_groups_prompts_without_decay_projections_with_decay():
    rules = OptimConfig().param_rules
    for method, no_decay, decay in (
        ("vpt", {"adapter.prompt_embeddings"}, set()),
        ("lora", set(), {"adapter.blocks.0.attn.qkv.lora_A"}),
        ("adaptformer", set(), {"adapter.blocks.0.up_proj.weight", "adapter.blocks.0.down_proj.bias"}),
    ):
        got = {a.name: a.decay_mult for a in assign_params(tiny_segmentor(method), rules)}
        assert all(got[n] == 0.0 for n in no_decay) and all(got[n] == 1.0 for n in decay), method
        assert not any(n.startswith("encoder.") for n in got)


# ------------------------------------------------------------------------------------------ LoRA
def lora_factors(m, layer, target):
    pair = m.adapter.blocks[layer].get_submodule(target)
    return pair.lora_A, pair.lora_B


def perturb_lora_(m, seed=0):
    """Order-one factors: A ~ N(0, 1/in), B ~ N(0, 1/r) (s·BA larger than the small random frozen W)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in m.adapter.named_parameters():
            fan = p.shape[1]
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(fan))


@pytest.mark.parametrize("encoder", ["dinov2-s", "eva02-l"])
def test_lora_is_bit_identical_to_the_frozen_encoder_at_init(encoder):
    m, frozen = tiny("lora", encoder), tiny("freeze", encoder)
    assert all(
        torch.equal(a, b)
        for a, b in zip(m.encoder.state_dict().values(), frozen.encoder.state_dict().values(), strict=False)
    )
    assert all(float(p.detach().abs().sum()) == 0 for n, p in m.adapter.named_parameters() if n.endswith("lora_B"))
    x = image()
    with torch.no_grad():
        for a, b in zip(m.extract_features(x), frozen.extract_features(x), strict=True):
            assert torch.equal(a, b)


def lora_reference(m, x, *, scaling=None, transpose=False, targets=None):
    """baselines.md §2: every block runs with W + s·B A on its targets (an encoder copy with merged weights)."""
    enc = copy.deepcopy(m.encoder)
    s = m.cfg.adapter.alpha / m.cfg.adapter.rank if scaling is None else scaling
    with torch.no_grad():
        for layer in range(enc.depth):
            for target in targets or m.cfg.adapter.targets:
                A, B = lora_factors(m, layer, target)
                delta = torch.einsum("or,ri->oi", B, A)
                lin = enc.vit.blocks[layer].get_submodule(target)
                lin.weight.add_(s * (delta.t() if transpose else delta))
    return pyramid(enc, x, m.cfg.taps)


@pytest.mark.parametrize("encoder", ["dinov2-s", "eva02-l"])
def test_lora_perturbed_equals_w_plus_s_ba_at_order_one(encoder):
    m = tiny("lora", encoder)
    assert m.cfg.adapter.rank == 4 and m.cfg.adapter.alpha / m.cfg.adapter.rank == 2.0  # s != 1 is seen
    perturb_lora_(m)
    x = image()
    with torch.no_grad():
        ref = lora_reference(m, x)
        assert_all_close(m.extract_features(x), ref)
        wrong = dict(scale_ignored=lora_reference(m, x, scaling=1.0)[3], frozen=pyramid(m.encoder, x, m.cfg.taps)[3])
        if encoder == "eva02-l":
            wrong.update(
                transposed_update=lora_reference(m, x, transpose=True)[3],
                q_and_v_only=lora_reference(m, x, targets=("attn.q_proj", "attn.v_proj"))[3],
            )
        assert_sensitive(ref[3], **wrong)


def test_weight_substitution_reaches_functional_code_and_restores_everything():
    class Functional(nn.Module):  # attention code that reads the weight itself, as REIN's EVA02 does
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(4, 3)

        def forward(self, x):
            return F.linear(x, self.q_proj.weight, self.q_proj.bias)

    mod = Functional()
    keys, param = list(mod.state_dict()), mod.q_proj.weight
    W2 = torch.randn(3, 4)
    x = torch.randn(2, 4)
    with substituted_weights([(mod.q_proj, W2)]):
        torch.testing.assert_close(mod(x), F.linear(x, W2, mod.q_proj.bias), rtol=0, atol=0)
        assert list(mod.state_dict()) == keys and mod.state_dict()["q_proj.weight"] is not W2
    assert mod.q_proj.weight is param and "weight" not in mod.q_proj.__dict__
    with pytest.raises(RuntimeError, match="boom"):
        with substituted_weights([(mod.q_proj, W2)]):
            raise RuntimeError("boom")
    assert mod.q_proj.weight is param and list(mod.state_dict()) == keys


def test_lora_bypass_switch_reproduces_the_ineffective_eva02_variant():
    m = tiny("lora", "eva02-l", bypass_on_functional_attention=True)
    perturb_lora_(m)
    x = image()
    with torch.no_grad():
        for a, b in zip(m.extract_features(x), pyramid(m.encoder, x, m.cfg.taps), strict=False):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="not EVA02"):
        tiny_segmentor("lora", bypass_on_functional_attention=True)


@pytest.mark.parametrize("encoder", ["dinov2-s", "eva02-l"])
def test_lora_frozen_weights_untouched_checkpoint_holds_trainables_and_public_weights_load(encoder, tmp_path):
    torch.manual_seed(0)
    m = tiny_segmentor("lora", encoder=encoder, img_size=64)
    plain_keys = list(tiny_segmentor("freeze", encoder=encoder).encoder.state_dict())
    before = {k: v.clone() for k, v in m.encoder.state_dict().items()}
    perturb_lora_(m)
    m.train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    out = m(torch.rand(2, 3, 64, 64) * 255)
    (out["pred_masks"].square().mean() + out["pred_logits"].square().mean()).backward()
    opt.step()
    assert list(m.encoder.state_dict()) == plain_keys  # no parametrization renaming
    assert all(torch.equal(v, before[k]) for k, v in m.encoder.state_dict().items())
    assert all(p.grad is None for p in m.encoder.parameters())
    assert all("weight" not in mod.__dict__ for mod in m.encoder.modules())
    A0, B0 = lora_factors(m, 0, m.cfg.adapter.targets[0])
    assert A0.grad is not None and B0.grad.abs().sum() > 0  # gradients reach block 0
    sd = m.trainable_state_dict()
    adapter_keys = {k for k in sd if k.startswith("adapter.")}
    assert adapter_keys == {
        f"adapter.blocks.{l}.{t}.{f}" for l in range(4) for t in m.cfg.adapter.targets for f in ("lora_A", "lora_B")
    }
    assert all(k.startswith(("adapter.", "head.")) for k in sd)
    # public encoder weights still load strictly into a LoRA model
    torch.save({k[len("vit.") :]: v for k, v in before.items()}, tmp_path / "enc.pth")  # timm layout
    load_encoder_weights(m.encoder, tmp_path / "enc.pth")
    # a saved checkpoint rebuilds the same model
    path = save_checkpoint(m.eval(), tmp_path / "lora.safetensors")
    m2 = load_checkpoint(path, random_frozen=True).eval()
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(m2(x)["pred_masks"], m(x)["pred_masks"])


# ------------------------------------------------------------------------------------------ AdaptFormer
@pytest.mark.parametrize("encoder", ["dinov2-s", "eva02-l", "sam-h"])
def test_adaptformer_zero_init_is_exactly_the_frozen_encoder(encoder):
    m, frozen = tiny("adaptformer", encoder), tiny("freeze", encoder)
    x = image()
    with torch.no_grad():
        for a, b in zip(m.extract_features(x), frozen.extract_features(x), strict=True):
            assert torch.equal(a, b)


def adaptformer_block_ref(blk, x, rope, mlp, s, *, variant="spec"):
    """baselines.md §3: x_mid = x + LS1(Attn(LN1 x));
    x_out = x_mid + LS2(MLP(LN2 x_mid)) + s·(W_up relu(W_down x_mid + b_down) + b_up)."""
    eva = rope is not None
    ls1 = (lambda v: v) if eva else blk.ls1
    ls2 = (lambda v: v) if eva else blk.ls2
    attn = blk.attn(blk.norm1(x), rope=rope) if eva else blk.attn(blk.norm1(x))
    x_mid = x + ls1(attn)
    inp = {"spec": x_mid, "normalised": blk.norm2(x_mid), "block_input": x}.get(variant, x_mid)
    h = torch.relu(torch.einsum("...c,dc->...d", inp, mlp.down_proj.weight) + mlp.down_proj.bias)
    up = torch.einsum("...d,cd->...c", h, mlp.up_proj.weight)
    a = s * up + (mlp.up_proj.bias if variant == "bias_unscaled" else s * mlp.up_proj.bias)
    if variant == "inside_ls2":
        return x_mid + ls2(blk.mlp(blk.norm2(x_mid)) + a)
    return x_mid + ls2(blk.mlp(blk.norm2(x_mid))) + a


def adaptformer_reference(m, x, variant="spec"):
    enc = m.encoder

    def run(i, t, state):
        return adaptformer_block_ref(
            enc.vit.blocks[i], t, state.rope, m.adapter.blocks[i], m.cfg.adapter.scalar, variant=variant
        )

    return pyramid(enc, x, m.cfg.taps, run_block=run)


@pytest.mark.parametrize("encoder", ["dinov2-s", "eva02-l"])
def test_adaptformer_perturbed_matches_the_parallel_adapter_formula_at_order_one(encoder):
    m = tiny("adaptformer", encoder)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in m.adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / (math.sqrt(p.shape[-1]) if p.dim() > 1 else 2))
    x = image()
    with torch.no_grad():
        ref = adaptformer_reference(m, x)
        assert_all_close(m.extract_features(x), ref)
        wrong = dict(
            reads_normalised_x_mid=adaptformer_reference(m, x, "normalised")[3],
            reads_block_input=adaptformer_reference(m, x, "block_input")[3],
            bias_not_scaled=adaptformer_reference(m, x, "bias_unscaled")[3],
        )
        if encoder == "dinov2-s":
            wrong["inside_layerscale"] = adaptformer_reference(m, x, "inside_ls2")[3]
        assert_sensitive(ref[3], **wrong)
    mlp = m.adapter.blocks[0].train()
    assert mlp.dropout.p == 0.1 and m.cfg.adapter.scalar == 0.1 and m.cfg.adapter.bottleneck == 8
    v = randn(4, 64, seed=3)
    assert rel(mlp(v), mlp.eval()(v)) > SENSITIVE  # dropout acts in training only


# ------------------------------------------------------------------------------------------ VPT
def vpt_reference(m, x, *, carry=False, taps_with_prompts=False):
    """baselines.md §4: block l sees [prefix, P_l, patches]; the M prompt outputs are dropped after the block."""
    enc, prompts = m.encoder, m.adapter.prompt_embeddings
    P, M = enc.num_prefix_tokens, prompts.shape[1]
    t, state = enc.embed(x)
    B, (h, w) = x.shape[0], state.grid
    carried = None
    maps = []
    for i in range(enc.depth):
        p = carried if carry and carried is not None else prompts[i].expand(B, -1, -1)
        out = enc.forward_block(i, torch.cat([t[:, :P], p, t[:, P:]], 1), state)
        t, carried = torch.cat([out[:, :P], out[:, P + M :]], 1), out[:, P : P + M]
        if i in m.cfg.taps:
            patches = out[:, P : P + h * w] if taps_with_prompts else t[:, P:]
            maps.append(patches.transpose(1, 2).reshape(B, -1, h, w))
    return [
        F.interpolate(mp, scale_factor=s, mode="bilinear", align_corners=False)
        for mp, s in zip(maps, (4.0, 2.0, 1.0, 0.5), strict=False)
    ]


def test_vpt_prompts_replaced_every_block_and_taps_see_patch_tokens_only():
    m = tiny("vpt")
    with torch.no_grad():
        m.adapter.prompt_embeddings.copy_(randn(*m.adapter.prompt_embeddings.shape, seed=4))
    x = image()
    enc = m.encoder
    P, M, N = enc.num_prefix_tokens, m.cfg.adapter.num_prompts, 16
    seen = []
    real_block = enc.forward_block
    with torch.no_grad():
        ref = vpt_reference(m, x)
        assert_sensitive(
            ref[3],
            prompts_carried_over=vpt_reference(m, x, carry=True)[3],
            taps_with_prompt_tokens=vpt_reference(m, x, taps_with_prompts=True)[3],
        )
        enc.forward_block = lambda i, t, state: (seen.append(t.clone()), real_block(i, t, state))[1]
        got = m.extract_features(x)
    assert_all_close(got, ref)
    assert [s.shape[1] for s in seen] == [P + M + N] * enc.depth
    for i, s in enumerate(seen):  # every block receives its own prompts, never the previous block's outputs
        assert torch.equal(s[:, P : P + M], m.adapter.prompt_embeddings[i].expand(2, -1, -1))
    assert all(f.shape[1] == enc.embed_dim for f in got)


def test_vpt_eva02_rotates_patch_tokens_only():
    """Prompts after cls with identity rotation == prompts appended at the end with identity rotation
    (attention is permutation-equivariant): the patches keep their own rotary rows."""
    m = tiny("vpt", "eva02-l")
    with torch.no_grad():
        m.adapter.prompt_embeddings.copy_(randn(*m.adapter.prompt_embeddings.shape, seed=6))
    enc, prompts = m.encoder, m.adapter.prompt_embeddings
    P, M = enc.num_prefix_tokens, prompts.shape[1]
    x = image()

    def reference(prompt_rows):
        t, state = enc.embed(x)
        B, (h, w), d = x.shape[0], state.grid, state.rope.shape[-1] // 2
        maps = []
        for i in range(enc.depth):
            if prompt_rows == "identity_at_end":  # [cls, patches, prompts]; identity rows appended
                ident = torch.cat([torch.zeros(M, d, dtype=x.dtype), torch.ones(M, d, dtype=x.dtype)], -1)
                st = type(state)(state.grid, torch.cat([state.rope, ident], 0))
                out = enc.forward_block(i, torch.cat([t, prompts[i].expand(B, -1, -1)], 1), st)
                t = out[:, : P + h * w]
            else:  # wrong: prompts rotated with the first patch positions
                st = type(state)(state.grid, torch.cat([state.rope[:M], state.rope], 0))
                out = enc.forward_block(i, torch.cat([t[:, :P], prompts[i].expand(B, -1, -1), t[:, P:]], 1), st)
                t = torch.cat([out[:, :P], out[:, P + M :]], 1)
            if i in m.cfg.taps:
                maps.append(t[:, P:].transpose(1, 2).reshape(B, -1, h, w))
        return [
            F.interpolate(mp, scale_factor=s, mode="bilinear", align_corners=False)
            for mp, s in zip(maps, (4.0, 2.0, 1.0, 0.5), strict=False)
        ]

    with torch.no_grad():
        ref = reference("identity_at_end")
        assert_all_close(m.extract_features(x), ref)
        assert_sensitive(ref[3], prompts_rotated=reference("rotated")[3])


# ------------------------------------------------------------------------------------------ overfit
@pytest.mark.learning
@pytest.mark.parametrize("method", ["lora", "vpt"])
def test_tiny_peft_model_overfits_a_generated_scene_with_frozen_weights_unchanged(method):
    """Worst margins (share of the step budget left at 90% accuracy; the margin sweep in docs/testing.md: 5 seeds x 5 settings, AVX2 EPYC):
    LoRA 0.75 (default, seed 1; 25/25 runs cleared), VPT 0.83 (default, seed 0; 25/25 runs cleared)."""
    image_, label = load_generated_scene(0, 128, 128)
    assert majority_share(label) < 0.75
    torch.manual_seed(learning_seed())
    model = tiny_segmentor(method, img_size=128)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    adapter = {k: v.clone() for k, v in model.adapter.state_dict().items()}
    losses, acc, steps = overfit(model, image_, label, max_steps=300, lr=3e-3, seed=learning_seed())
    record_margin(
        f"overfit-{method}", step_margin(acc, steps, 300, 0.9), unit="share of steps left", acc=acc, steps=steps
    )
    assert acc >= 0.90, f"pixel accuracy {acc:.3f} after {steps} steps"
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert all(torch.equal(v, frozen[k]) for k, v in model.encoder.state_dict().items())
    first = "blocks.0.attn.qkv.lora_B" if method == "lora" else "prompt_embeddings"  # block 0 learned
    assert not torch.equal(model.adapter.state_dict()[first][0], adapter[first][0])

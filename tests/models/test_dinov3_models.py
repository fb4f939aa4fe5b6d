"""The methods on DINOv3: preset counts (the specification's numbers), the 5 prefix tokens left alone by the
token adapters, VPT prompts unrotated, and a tiny DINOv3 REIN model that trains a step and predicts."""

from __future__ import annotations

import pytest
import torch

from dgss.backbones.weights import mark_random
from dgss.models.presets import PRESETS, build_preset
from dgss.models.segmentor import Segmentor
from dgss.models.tiny import tiny_segmentor_config

pytestmark = pytest.mark.usefixtures("one_thread")


def trainable(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "name,adapter",
    [  # REIN: 684,033 (S/S+), 1,741,569 (B), 2,990,081 (L, = DINOv2-L), 4,510,721 (H+, = SAM-H); LoRA qkv at L
        ("rein-dinov3-s", 684_033),
        ("rein-dinov3-sp", 684_033),
        ("rein-dinov3-b", 1_741_569),
        ("rein-dinov3-l", 2_990_081),
        ("rein-dinov3-hp", 4_510_721),
        ("lora-dinov3-l", 786_432),
    ],
)
def test_adapter_counts(name, adapter):
    with torch.device("meta"):
        model = build_preset(name)
    assert trainable(model.adapter) == adapter
    assert (
        sum(p.numel() for p in model.encoder.parameters())
        == {
            "s": 21_596_160,
            "sp": 28_692_480,
            "b": 85_659_648,
            "l": 303_128_576,
            "hp": 840_591_360,
        }[name.split("-")[-1]]
    )
    assert trainable(model.encoder) == 0


def test_every_method_on_dinov3_l_with_the_specified_taps():
    for method in ("rein", "freeze", "full", "lora", "adaptformer", "vpt", "fada", "depthforge", "vireo"):
        assert f"{method}-dinov3-l" in PRESETS
    assert not any(p.endswith("-nobias") or "-nobias-" in p for p in PRESETS)
    with torch.device("meta"):
        df = build_preset("depthforge-dinov3-l")
        small = build_preset("depthforge-dinov3-s")
        hp = build_preset("rein-dinov3-hp")
    cfg = df.cfg
    assert cfg.taps == (7, 11, 15, 23) and hp.cfg.taps == (7, 15, 23, 31) and small.cfg.taps == (3, 5, 7, 11)
    # DAv2-L block l feeds DINOv3-L block l: same width, 24 blocks, 32x32 tokens at 512, no projection
    assert cfg.resolved_depth_layer_map() == tuple(range(24))
    assert cfg.depth_encoder.grid == cfg.encoder.grid == 32 and not hasattr(df.adapter, "depth_proj")
    assert small.cfg.resolved_depth_layer_map() == tuple(range(0, 24, 2))
    assert small.adapter.depth_proj.weight.shape == (384, 1024)


def tiny_model(method="rein", seed=0, **kw):
    torch.manual_seed(seed)
    model = Segmentor(tiny_segmentor_config(method, encoder="dinov3-s", **kw))
    for i, m in enumerate(model.frozen_modules().values()):
        mark_random(m, seed=i)
    if hasattr(model.adapter, "scale"):
        with torch.no_grad():
            model.adapter.scale.fill_(1.0)  # order one: the adapter visibly moves the patch tokens
    return model.eval()


@pytest.mark.parametrize("method", ["rein", "fada", "depthforge"])
def test_token_adapters_leave_the_five_prefix_tokens_alone(method):
    model = tiny_model(method)
    enc = model.encoder
    assert enc.num_prefix_tokens == 5
    ins, outs = {}, {}
    hooks = []
    for i, blk in enumerate(enc.vit.blocks):
        hooks.append(blk.register_forward_pre_hook(lambda m, a, i=i: ins.__setitem__(i, a[0].clone())))
        hooks.append(blk.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o.clone())))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.extract_features(x)
    for h in hooks:
        h.remove()
    for i in range(enc.depth - 1):  # between block i and block i + 1 the adapter ran
        assert torch.equal(ins[i + 1][:, :5], outs[i][:, :5])
        assert not torch.allclose(ins[i + 1][:, 5:], outs[i][:, 5:], atol=1e-4)
    # the s16 map (third tap, block 2, scale 1) holds the adapted patch tokens only
    t = ins[3]
    expected = t[:, 5:].transpose(1, 2).reshape(2, enc.embed_dim, 4, 4)
    torch.testing.assert_close(feats[2], expected, rtol=0, atol=0)


def test_vpt_prompts_are_not_rotated():
    model = tiny_model("vpt")
    enc, vpt = model.encoder, model.adapter
    with torch.no_grad():
        vpt.prompt_embeddings.uniform_(-1, 1)
        t, state = enc.embed(torch.randn(2, 3, 48, 80))
        M = vpt.cfg.num_prompts
        for layer in range(enc.depth):
            ours = vpt.run_block(enc, layer, t, state)
            # reference: prompts after the 5 prefix tokens, the attention's prefix count raised to 5 + M,
            # the h*w RoPE table unchanged (it then lines up with the patch tokens)
            blk = enc.vit.blocks[layer]
            x = torch.cat([t[:, :5], vpt.prompt_embeddings[layer].expand(2, -1, -1), t[:, 5:]], dim=1)
            blk.attn.num_prefix_tokens = 5 + M
            try:
                ref = blk(x, rope=state.rope)
            finally:
                blk.attn.num_prefix_tokens = 5
            torch.testing.assert_close(ours, torch.cat([ref[:, :5], ref[:, 5 + M :]], dim=1), rtol=0, atol=1e-6)
            assert ours.shape == t.shape
            t = ours


def test_tiny_dinov3_rein_trains_one_step_and_predicts():
    from dgss.losses.segmentation_loss import build_loss

    model = tiny_model("rein")
    loss_fn = build_loss(model, num_points=256)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert params and not any(n.startswith("encoder.") for n in params)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(params.values(), lr=1e-3)
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64) * 255
    labels = torch.randint(0, 19, (2, 64, 64))
    model.train()
    loss = sum(loss_fn(model(model.normalize(images)), labels).values())
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters() if n.startswith("encoder."))
    moved = [n for n in params if not torch.equal(before[n], params[n])]
    assert "adapter.learnable_tokens_a" in moved and "adapter.scale" in moved
    model.eval()
    scores = model.slide_inference(model.normalize(torch.rand(1, 3, 64, 112) * 255))  # 2 windows of 64x64
    assert scores.shape == (1, 19, 64, 112) and torch.isfinite(scores).all()


def test_lora_on_the_fused_qkv_reaches_the_qkvb_attention():
    import copy

    model = tiny_model("lora")
    enc, lora = model.encoder, model.adapter
    with torch.no_grad():
        for p in lora.parameters():
            p.uniform_(-0.5, 0.5)
        for blk in enc.vit.blocks:  # layer scales of order one (timm initialises them at 1e-5)
            blk.gamma_1.fill_(1.0)
        t, state = enc.embed(torch.randn(2, 3, 48, 80))
        ours = lora.run_block(enc, 1, t, state)
        # reference: a copy of block 1 whose qkv weight is W + s·B·A, run as timm runs it
        blk = copy.deepcopy(enc.vit.blocks[1])
        pair = lora.pair(1, "attn.qkv")
        blk.attn.qkv.weight += lora.cfg.scaling * pair.lora_B @ pair.lora_A
        ref = blk(t, rope=state.rope)
        plain = enc.forward_block(1, t, state)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert not torch.allclose(ours, plain, atol=1e-3)

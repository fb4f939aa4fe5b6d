"""DINOv3 as a frozen encoder: counts, the block loop, RoPE, the three checkpoint layouts and their guards.

References: the parameter counts and RoPE formula of the DINOv3 specification (timm 1.0.31 on the meta
device, published sizes), timm's own ``forward_features`` and ``checkpoint_filter_fn``, and transformers'
``DINOv3ViTModel`` on the same random weights.
"""

from __future__ import annotations

import math

import pytest
import torch

from dgss.backbones import build_encoder, encoder_config
from dgss.backbones.weights import load_encoder_state_dict, load_encoder_weights
from dgss.cli import main
from dgss.errors import FrozenWeightsError

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = {  # name -> (_qkvb count, plain count, published size in M)
    "dinov3-s": (21_596_160, 21_586_944, 21),
    "dinov3-sp": (28_692_480, 28_683_264, 29),
    "dinov3-b": (85_659_648, 85_641_216, 86),
    "dinov3-l": (303_128_576, 303_079_424, 300),
    "dinov3-hp": (840_591_360, 840_509_440, 840),
}


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def tiny(name="dinov3-s", seed=0, **kw):
    """A tiny DINOv3 with order-one weights (layer scales included), so every block moves the output."""
    cfg = encoder_config(name).replace(**{**dict(embed_dim=32, depth=2, num_heads=2, img_size=64), **kw})
    torch.manual_seed(seed)
    enc = build_encoder(cfg)
    with torch.no_grad():
        for k, p in enc.vit.named_parameters():
            scale = 0.2 if p.ndim == 2 and "patch_embed" not in k else 1.0
            p.uniform_(-scale, scale)
    return enc


# ---------------------------------------------------------------------------------------------- zoo
@pytest.mark.parametrize("name", list(SIZES))
def test_counts_of_both_variants(name):
    qkvb, plain, published_m = SIZES[name]
    with torch.device("meta"):
        enc = build_encoder(name)
        nobias = build_encoder(f"{name}-nobias")
    assert n_params(enc) == qkvb and n_params(nobias) == plain
    assert abs(qkvb / 1e6 - published_m) < 4  # README sizes: 21M, 29M, 86M, 300M, 840M
    cfg = enc.cfg
    assert (cfg.family, cfg.patch_size, cfg.source_patch_size, cfg.num_register_tokens) == ("dinov3", 16, 16, 4)
    assert enc.num_prefix_tokens == 5 and enc.vit.pos_embed is None
    assert cfg.licence == "DINOv3 License" and cfg.default_weights.endswith("_qkvb.lvd1689m")


def test_cli_params_prints_the_dinov3_l_count(capsys):
    assert main(["params", "dinov3-l"]) == 0
    out = capsys.readouterr().out
    assert "303,128,576" in out and "mask token" not in out


# ---------------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", ["dinov3-s", "dinov3-sp"])  # GELU and SwiGLU blocks
@pytest.mark.parametrize("size", [(96, 160), (64, 64)])
def test_block_loop_equals_timm_forward_features(name, size):
    enc = tiny(name)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ours = enc.forward_features(x)
        ref = enc.vit.forward_features(x)
        outs = enc(x, out_indices=[0, 1])
    assert ours.shape == (2, 5 + size[0] * size[1] // 256, 32)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert not torch.allclose(outs[0], outs[1], atol=1e-2)  # the blocks do move the tokens


def rope_reference(h: int, w: int, periods: torch.Tensor) -> torch.Tensor:
    """The specification's table: centred per-axis coordinates in (-1, 1), angles 2π·[y/p, x/p] tiled x2,
    [sin | cos] (h*w, 4 * len(periods))."""
    rows = []
    for i in range(h):
        for j in range(w):
            y, x = 2 * (i + 0.5) / h - 1, 2 * (j + 0.5) / w - 1
            ang = [2 * math.pi * y / p for p in periods.tolist()] + [2 * math.pi * x / p for p in periods.tolist()]
            ang = ang + ang
            rows.append([math.sin(a) for a in ang] + [math.cos(a) for a in ang])
    return torch.tensor(rows, dtype=torch.float32)


def test_rope_periods_and_table_follow_the_formula():
    enc = tiny(num_heads=1)  # head dim 32 -> 8 periods
    fp32 = torch.tensor([100 ** (2 * k / 16) for k in range(8)], dtype=torch.float32)
    assert enc.cfg.rope_periods == "bf16"
    torch.testing.assert_close(enc.vit.rope.periods, fp32.to(torch.bfloat16).float(), rtol=0, atol=0)
    assert not torch.equal(enc.vit.rope.periods, fp32)  # rounding really happened
    timm_default = type(enc.vit.rope)(dim=32, temperature=100.0).periods
    fp = build_encoder(enc.cfg.replace(rope_periods="fp32"))
    torch.testing.assert_close(fp.vit.rope.periods, timm_default, rtol=0, atol=0)  # fp32 = timm's own
    for grid in [(3, 5), (4, 4)]:
        _, state = enc.embed(torch.zeros(1, 3, 16 * grid[0], 16 * grid[1]))
        torch.testing.assert_close(state.rope, rope_reference(*grid, enc.vit.rope.periods), rtol=0, atol=2e-6)
    # one table per grid: every 512 window (32x32) of a large image gets the same one
    a = enc.embed(torch.zeros(1, 3, 512, 512))[1].rope
    b = enc.embed(torch.ones(2, 3, 512, 512))[1].rope
    assert a is b and a.shape == (32 * 32, 64)


def test_buffers_survive_moves_and_meta_materialisation():
    with torch.device("meta"):
        enc = build_encoder(encoder_config("dinov3-s").replace(embed_dim=32, depth=2, num_heads=2))
    enc.to_empty(device="cpu")
    ref = torch.tensor([100 ** (2 * k / 8) for k in range(4)]).to(torch.bfloat16).float()
    torch.testing.assert_close(enc.vit.rope.periods, ref, rtol=0, atol=0)
    assert all(not b.attn.k_bias.any() for b in enc.vit.blocks)
    enc.double()
    torch.testing.assert_close(enc.vit.rope.periods.float(), ref, rtol=0, atol=0)


def test_rope_periods_setting_is_validated():
    with pytest.raises(ValueError, match="rope_periods"):
        encoder_config("dinov3-s").replace(rope_periods="fp16")


# ---------------------------------------------------------------------------------------------- layouts
def to_meta_layout(sd: dict, enc) -> dict:
    """timm names -> Meta's original names (the specification's key table, inverted)."""
    out = {"mask_token": torch.zeros(1, enc.embed_dim), "rope_embed.periods": enc.vit.rope.periods.clone()}
    for k, v in sd.items():
        if k.endswith("attn.q_bias"):
            stem = k[: -len("q_bias")]
            out[stem + "qkv.bias"] = torch.cat([v, torch.zeros_like(v), sd[stem + "v_bias"]])
            out[stem + "qkv.bias_mask"] = torch.cat([torch.ones_like(v), torch.zeros_like(v), torch.ones_like(v)])
            continue
        if k.endswith("attn.v_bias"):
            continue
        k = k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        k = k.replace("mlp.fc1_g", "mlp.w1").replace("mlp.fc1_x", "mlp.w2")
        out[k] = v
    if any(".mlp.w1." in k for k in out):  # SwiGLU: fc2 -> w3
        out = {k.replace("mlp.fc2", "mlp.w3"): v for k, v in out.items()}
    return out


def to_hf_layout(sd: dict, prefix: str = "layer.") -> dict:
    """timm names -> transformers ``DINOv3ViTModel`` names (Hub ``layer.i``; ``model.layer.i`` in memory)."""
    top = {
        "cls_token": "embeddings.cls_token",
        "reg_token": "embeddings.register_tokens",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.bias",
        "norm.weight": "norm.weight",
        "norm.bias": "norm.bias",
    }
    gated = any("fc1_g" in k for k in sd)
    mlp = {"fc1_g": "gate_proj", "fc1_x": "up_proj", "fc2": "down_proj", "fc1": "up_proj"}
    out = {"embeddings.mask_token": torch.zeros(1, 1, sd["cls_token"].shape[-1])}
    for k, v in sd.items():
        if k in top:
            out[top[k]] = v
            continue
        _, i, rest = k.split(".", 2)
        b = f"{prefix}{i}."
        if rest == "attn.qkv.weight":
            q, kk, vv = v.chunk(3, dim=0)
            out[b + "attention.q_proj.weight"], out[b + "attention.k_proj.weight"] = q, kk
            out[b + "attention.v_proj.weight"] = vv
        elif rest in ("attn.q_bias", "attn.v_bias"):
            out[b + f"attention.{rest[5]}_proj.bias"] = v
        elif rest.startswith("attn.proj."):
            out[b + "attention.o_proj." + rest.split(".")[-1]] = v
        elif rest in ("gamma_1", "gamma_2"):
            out[b + f"layer_scale{rest[-1]}.lambda1"] = v
        elif rest.startswith("mlp."):
            _, name, kind = rest.split(".")
            assert gated == name.startswith("fc1_") or name == "fc2"
            out[b + f"mlp.{mlp[name]}.{kind}"] = v
        else:
            out[b + rest] = v
    return out


def same_weights(a, b):
    sa, sb = a.vit.state_dict(), b.vit.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("name", ["dinov3-s", "dinov3-sp"])
def test_meta_layout_loads_strictly_and_agrees_with_timm_filter(tmp_path, name):
    from timm.models.eva import checkpoint_filter_fn

    src = tiny(name, seed=1)
    meta = to_meta_layout(src.vit.state_dict(), src)
    assert "storage_tokens" in meta and "blocks.0.ls1.gamma" in meta and "blocks.0.attn.qkv.bias" in meta
    path = tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"
    torch.save(meta, path)
    dst = load_encoder_weights(tiny(name, seed=2), path)
    same_weights(src, dst)
    assert "layout meta->timm" in dst.frozen_source["notes"]
    assert "file rope periods = bf16-rounded" in dst.frozen_source["notes"]
    # timm's own filter on the same file gives the same model
    ref = tiny(name, seed=3)
    ref.vit.load_state_dict(checkpoint_filter_fn(dict(meta), ref.vit), strict=True)
    same_weights(ref, dst)
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        torch.testing.assert_close(dst.forward_features(x), src.forward_features(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["dinov3-s", "dinov3-sp"])
@pytest.mark.parametrize("prefix", ["layer.", "model.layer."])
def test_hf_layout_loads_strictly(tmp_path, name, prefix):
    from safetensors.torch import save_file

    src = tiny(name, seed=1)
    hf = to_hf_layout(src.vit.state_dict(), prefix)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in hf.items()}, str(path))
    dst = load_encoder_weights(tiny(name, seed=2), path)
    same_weights(src, dst)
    assert "layout transformers->timm" in dst.frozen_source["notes"]


@pytest.mark.parametrize("gated", [False, True])
def test_parity_with_transformers_dinov3(gated):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    hcfg = DINOv3ViTConfig(
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_register_tokens=4,
        image_size=64,
        use_gated_mlp=gated,
        hidden_act="silu" if gated else "gelu",
        layerscale_value=1.0,
    )
    torch.manual_seed(0)
    hf = DINOv3ViTModel(hcfg).eval()
    with torch.no_grad():
        for k, p in hf.named_parameters():
            p.uniform_(-0.2, 0.2) if p.ndim == 2 and "patch" not in k else p.uniform_(-1, 1)
    sd = {k: v for k, v in hf.state_dict().items() if "k_proj.bias" not in k}
    assert any(k.startswith("model.layer.0.") for k in sd)
    enc = tiny("dinov3-sp" if gated else "dinov3-s", rope_periods="fp32")
    load_encoder_state_dict(enc, sd)
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        ref = hf(pixel_values=x).last_hidden_state
        ours = enc.forward_features(x)
    assert ref.abs().max() > 0.5
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_plain_timm_file_fills_zero_biases_and_nobias_model_takes_zero_ones():
    src = tiny("dinov3-s-nobias", seed=1)
    dst = tiny("dinov3-s", seed=2)
    report = load_encoder_state_dict(dst, src.vit.state_dict())
    assert "no q/v biases in the file: zero" in report["notes"]
    assert not any(dst.vit.blocks[i].attn.q_bias.any() or dst.vit.blocks[i].attn.v_bias.any() for i in range(2))
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(dst.forward_features(x), src.forward_features(x), rtol=0, atol=1e-6)
    back = tiny("dinov3-s-nobias", seed=3)
    load_encoder_state_dict(back, dst.vit.state_dict())  # all-zero q/v biases: dropped
    same_weights(src, back)


# ---------------------------------------------------------------------------------------------- guards
def test_guards_name_the_offending_key():
    src = tiny(seed=1)
    meta = to_meta_layout(src.vit.state_dict(), src)
    bad = dict(meta)
    bad["blocks.1.attn.qkv.bias"] = meta["blocks.1.attn.qkv.bias"].clone()
    bad["blocks.1.attn.qkv.bias"][40] = 0.5  # inside the k third (32..63)
    with pytest.raises(FrozenWeightsError, match=r"blocks\.1\.attn\.qkv\.bias has a non-zero k third"):
        load_encoder_state_dict(tiny(), bad)
    bad = dict(meta)
    bad["blocks.0.attn.qkv.bias_mask"] = torch.ones(96)
    with pytest.raises(FrozenWeightsError, match=r"blocks\.0\.attn\.qkv\.bias_mask is not"):
        load_encoder_state_dict(tiny(), bad)
    bad = dict(meta, **{"rope_embed.periods": torch.tensor([100 ** (2 * k / 8) for k in range(4)]) * 3})
    with pytest.raises(FrozenWeightsError, match="rope_embed.periods"):
        load_encoder_state_dict(tiny(), bad)
    with pytest.raises(FrozenWeightsError, match="unexpected RoPE tensor 'rope_embed.freqs'"):
        load_encoder_state_dict(tiny(), dict(meta, **{"rope_embed.freqs": torch.zeros(4)}))
    with pytest.raises(FrozenWeightsError, match=r"unexpected 1 keys: blocks\.0\.extra"):
        load_encoder_state_dict(tiny(), dict(meta, **{"blocks.0.extra": torch.zeros(1)}))
    with pytest.raises(FrozenWeightsError, match="never resampled"):
        load_encoder_state_dict(tiny(), dict(meta, **{"patch_embed.proj.weight": torch.zeros(32, 3, 14, 14)}))
    with pytest.raises(FrozenWeightsError, match=r"blocks\.\d\.attn\.q_bias is not zero.*use 'dinov3-s'"):
        load_encoder_state_dict(tiny("dinov3-s-nobias"), meta)
    hf = to_hf_layout(src.vit.state_dict())
    with pytest.raises(FrozenWeightsError, match=r"layer\.0\.attention\.k_proj\.bias is not zero"):
        load_encoder_state_dict(tiny(), dict(hf, **{"layer.0.attention.k_proj.bias": torch.ones(32)}))
    del hf["layer.1.attention.k_proj.weight"]
    with pytest.raises(FrozenWeightsError, match="layer 1 lacks"):
        load_encoder_state_dict(tiny(), hf)


def test_dinov2_and_dinov3_files_are_refused_for_each_other(tmp_path):
    v3 = tiny(seed=1)
    v2 = build_encoder(encoder_config("dinov2-s").replace(embed_dim=32, depth=2, num_heads=2, img_size=64))
    f3, f2 = tmp_path / "dinov3.pth", tmp_path / "dinov2.pth"
    torch.save(to_meta_layout(v3.vit.state_dict(), v3), f3)
    torch.save(v2.vit.state_dict(), f2)
    for enc, wrong, fix in ((v2, f3, "use a dinov3-"), (v3, f2, "pass a DINOv3 file")):
        before = {k: v.clone() for k, v in enc.state_dict().items()}
        with pytest.raises(FrozenWeightsError) as e:
            load_encoder_weights(enc, wrong)
        msg = str(e.value)
        assert "\n" not in msg and str(wrong) in msg and fix in msg
        assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # nothing written
        assert enc.frozen_source is None
    hf3 = to_hf_layout(v3.vit.state_dict())  # transformers layouts are told apart as well
    with pytest.raises(FrozenWeightsError, match="holds DINOv3 weights"):
        load_encoder_state_dict(v2, hf3)


def test_licence_and_hash_recorded_and_notice_printed_once(tmp_path, capsys):
    from dgss.backbones import weights

    weights._LICENCE_NOTICE_SHOWN.clear()
    src = tiny(seed=1)
    path = tmp_path / "w.pth"
    torch.save(src.vit.state_dict(), path)
    for _ in range(2):
        enc = load_encoder_weights(tiny(), path)
    assert enc.frozen_source["licence"] == "DINOv3 License" and len(enc.frozen_source["sha256"]) == 64
    err = capsys.readouterr().err
    assert err.count("DINOv3 License") == 1 and len(err.strip().splitlines()) == 1


def test_rope_table_cached_under_inference_mode_serves_training():
    enc = build_encoder(encoder_config("dinov3-s").replace(embed_dim=32, depth=2, num_heads=2), frozen=False)
    with torch.inference_mode():
        enc(torch.randn(1, 3, 64, 64))  # e.g. a validation pass builds the 4x4 table first
    enc(torch.randn(1, 3, 64, 64))[-1].sum().backward()
    assert enc.vit.blocks[0].attn.qkv.weight.grad is not None

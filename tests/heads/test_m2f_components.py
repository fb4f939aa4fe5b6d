"""Mask2Former head building blocks: positional encoding, MSDeformAttn, init, parameter counts."""

import math

import pytest
import torch
from torch import nn

from dgss.heads import (
    Mask2FormerHead,
    Mask2FormerHeadConfig,
    Mask2FormerTransformerDecoder,
    MSDeformAttnPixelDecoder,
    MultiScaleDeformableAttention,
    sine_position_encoding,
)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --------------------------------------------------------------------------------------- param counts
def test_pixel_decoder_param_count():
    with torch.device("meta"):
        pd = MSDeformAttnPixelDecoder(in_channels=[1024] * 4)
    assert n_params(pd) == 6_101_440


def test_transformer_decoder_param_count():
    with torch.device("meta"):
        td = Mask2FormerTransformerDecoder(num_layers=9, dims=256, num_heads=8, ffn_dims=2048)
    assert n_params(td) == 14_209_280


def test_head_param_count_rein_k19():
    with torch.device("meta"):
        head = Mask2FormerHead(Mask2FormerHeadConfig(num_classes=19, query_source="link"))
    counts = {name: n_params(m) for name, m in head.named_children()}
    assert counts == {
        "pixel_decoder": 6_101_440,
        "transformer_decoder": 14_209_280,
        "level_embed": 768,
        "querys2feat": 65_792,
        "cls_embed": 5_140,
        "mask_embed": 197_376,
    }
    assert n_params(head) == 20_579_796


def test_head_param_count_learned_queries():
    with torch.device("meta"):
        head = Mask2FormerHead(Mask2FormerHeadConfig(num_classes=19, query_source="learned"))
    assert not hasattr(head, "querys2feat")
    assert n_params(head.query_embed) + n_params(head.query_feat) == 51_200
    assert n_params(head) == 20_579_796 - 65_792 + 51_200


# --------------------------------------------------------------------------------------- positional enc.
def test_sine_position_encoding_matches_formula():
    h, w, f = 3, 5, 8
    pos = sine_position_encoding(h, w, num_feats=f)
    assert pos.shape == (2 * f, h, w)
    for i in range(h):
        for j in range(w):
            y = (i + 1) / (h + 1e-6) * 2 * math.pi
            x = (j + 1) / (w + 1e-6) * 2 * math.pi
            for k in range(f):
                d = 10000 ** (2 * (k // 2) / f)
                fn = math.sin if k % 2 == 0 else math.cos
                assert pos[k, i, j].item() == pytest.approx(fn(y / d), abs=1e-6)
                assert pos[f + k, i, j].item() == pytest.approx(fn(x / d), abs=1e-6)


# --------------------------------------------------------------------------------------- MSDeformAttn
def bilinear_zero_pad(v: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample v (h, w, d) at normalised (x, y): align_corners=False, zero outside."""
    h, w, d = v.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d, dtype=v.dtype)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + wy * wx * v[yy, xx]
    return out


def naive_msda(m: MultiScaleDeformableAttention, query, value, ref, shapes, pos):
    """Per-point python loop of mask2former.md §3.2, using the module's Linear weights explicitly."""
    b_sz, nq, c = query.shape
    nh, nl, npt = m.num_heads, m.num_levels, m.num_points
    dh = c // nh
    z = query + pos
    off = (z @ m.sampling_offsets.weight.T + m.sampling_offsets.bias).view(b_sz, nq, nh, nl, npt, 2)
    att = (z @ m.attention_weights.weight.T + m.attention_weights.bias).view(b_sz, nq, nh, nl * npt)
    att = att.softmax(-1).view(b_sz, nq, nh, nl, npt)
    v = value @ m.value_proj.weight.T + m.value_proj.bias
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(b_sz, nq, c, dtype=query.dtype)
    for b in range(b_sz):
        for i in range(nq):
            for hd in range(nh):
                acc = torch.zeros(dh, dtype=query.dtype)
                for e, (h, w) in enumerate(shapes):
                    vmap = v[b, starts[e] : starts[e + 1], hd * dh : (hd + 1) * dh].reshape(h, w, dh)
                    for k in range(npt):
                        x = ref[b, i, e, 0] + off[b, i, hd, e, k, 0] / w
                        y = ref[b, i, e, 1] + off[b, i, hd, e, k, 1] / h
                        acc = acc + att[b, i, hd, e, k] * bilinear_zero_pad(vmap, x.item(), y.item())
                out[b, i, hd * dh : (hd + 1) * dh] = acc
    return out @ m.output_proj.weight.T + m.output_proj.bias


def test_msda_equals_naive_loop():
    torch.manual_seed(0)
    m = MultiScaleDeformableAttention(embed_dims=8, num_heads=2, num_levels=2, num_points=3).double()
    with torch.no_grad():  # random weights so that offsets are non-trivial and leave the maps sometimes
        for p in m.parameters():
            p.normal_(0, 0.5)
        m.sampling_offsets.bias.normal_(0, 2.0)
    shapes = [(3, 4), (2, 5)]
    b, nq = 2, 4
    value = torch.randn(b, sum(h * w for h, w in shapes), 8, dtype=torch.float64)
    query = torch.randn(b, nq, 8, dtype=torch.float64)
    pos = torch.randn(b, nq, 8, dtype=torch.float64)
    ref = torch.rand(b, nq, 2, 2, dtype=torch.float64)
    got = m(query, value, ref, shapes, query_pos=pos)
    want = naive_msda(m, query, value, ref, shapes, pos)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_msda_init_grid():
    m = MultiScaleDeformableAttention(embed_dims=256, num_heads=8, num_levels=3, num_points=4)
    assert torch.all(m.sampling_offsets.weight == 0)
    assert torch.all(m.attention_weights.weight == 0) and torch.all(m.attention_weights.bias == 0)
    assert torch.all(m.value_proj.bias == 0) and torch.all(m.output_proj.bias == 0)
    grid = m.sampling_offsets.bias.view(8, 3, 4, 2)
    for h in range(8):
        th = 2 * math.pi * h / 8
        d = torch.tensor([math.cos(th), math.sin(th)])
        d = d / d.abs().max()
        for e in range(3):
            for k in range(4):
                torch.testing.assert_close(grid[h, e, k], d * (k + 1))
    bound = math.sqrt(6 / (256 + 256))  # xavier_uniform
    assert m.value_proj.weight.abs().max() <= bound


def test_pixel_decoder_init():
    torch.manual_seed(0)
    pd = MSDeformAttnPixelDecoder(
        in_channels=[64, 64, 64, 64], feat_channels=64, out_channels=64, num_encoder_layers=2, num_heads=8, ffn_dims=128
    )
    for m in pd.modules():
        if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    for c in pd.input_convs:
        assert torch.all(c.conv.bias == 0)
        assert c.conv.weight.abs().max() <= math.sqrt(6 / (64 + 64))  # xavier_uniform, 1x1
    assert torch.all(pd.mask_feature.bias == 0)
    # caffe2 xavier: kaiming_uniform(a=1) -> U(±sqrt(3 / fan_in))
    w = pd.output_convs[0].conv.weight
    assert w.abs().max() <= math.sqrt(3 / (64 * 9)) and w.abs().max() > 0.9 * math.sqrt(3 / (64 * 9))
    assert 0.8 < pd.level_encoding.weight.std().item() < 1.2
    fc1 = pd.encoder.layers[0].ffn.fc1.weight  # xavier_normal: std sqrt(2 / (fan_in + fan_out))
    assert fc1.std().item() == pytest.approx(math.sqrt(2 / (64 + 128)), rel=0.1)
    assert torch.all(pd.encoder.layers[1].self_attn.attention_weights.weight == 0)


def test_transformer_decoder_init():
    torch.manual_seed(0)
    td = Mask2FormerTransformerDecoder(num_layers=2, dims=64, num_heads=4, ffn_dims=256)
    layer = td.layers[0]
    assert torch.all(layer.cross_attn.in_proj_bias == 0) and torch.all(layer.self_attn.out_proj.bias == 0)
    assert layer.cross_attn.in_proj_weight.std().item() == pytest.approx(math.sqrt(2 / (64 + 192)), rel=0.1)
    assert layer.ffn.fc1.weight.std().item() == pytest.approx(math.sqrt(2 / (64 + 256)), rel=0.1)
    assert layer.ffn.fc1.bias.abs().max() <= 1 / math.sqrt(64)  # PyTorch default bias


@pytest.mark.parametrize("reference_core", [False, True])
def test_msda_cores_equal_naive_loop(reference_core):
    """Both sampling cores (dgss's points-as-rows one and the reference's level-stacked one) equal the
    per-point loop, with several batches, levels of different sizes and points leaving the maps."""
    torch.manual_seed(1)
    m = MultiScaleDeformableAttention(embed_dims=12, num_heads=3, num_levels=3, num_points=2).double()
    m.reference_core = reference_core
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
        m.sampling_offsets.bias.normal_(0, 2.0)
    shapes = [(2, 3), (4, 4), (3, 6)]
    b, nq = 2, 5
    value = torch.randn(b, sum(h * w for h, w in shapes), 12, dtype=torch.float64)
    query = torch.randn(b, nq, 12, dtype=torch.float64)
    pos = torch.randn(b, nq, 12, dtype=torch.float64)
    ref = torch.rand(b, nq, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(
        m(query, value, ref, shapes, query_pos=pos),
        naive_msda(m, query, value, ref, shapes, pos),
        rtol=1e-10,
        atol=1e-10,
    )

"""REIN adapter: counts, per-block math against an independent formula, query link order, init, gradients."""

import math

import pytest
import torch

from dgss.adapters.rein import ReinAdapter, ReinConfig
from dgss.cli import main
from dgss.models.presets import build_preset
from dgss.testing import tiny_segmentor


def n(m, trainable=False):
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable)


def test_rein_dinov2_l_counts():
    with torch.device("meta"):
        m = build_preset("rein-dinov2-l")
        full = build_preset("rein-fulltoken-dinov2-l")
        sam = build_preset("rein-sam-h")
    assert n(m.adapter) == 2_990_081
    assert n(full.adapter) == 5_016_065
    assert n(sam.adapter) == 4_510_721  # DepthForge backbone table "4.51M"
    assert n(m.head) == 20_579_796  # rein.md §7
    assert n(m, trainable=True) == 23_569_877
    assert n(m.encoder) == 304_199_680 and n(m.encoder, trainable=True) == 0


def test_cli_params_rein(capsys):
    assert main(["params", "rein-dinov2-l"]) == 0
    out = capsys.readouterr().out
    assert "2,990,081" in out and "20,579,796" in out and "23,569,877" in out


def test_init_bounds_and_scale():
    ad = ReinAdapter(ReinConfig(num_layers=24, embed_dim=1024))
    v = math.sqrt(6 / 896)
    for t in (ad.learnable_tokens_a, ad.learnable_tokens_b):
        assert t.abs().max() <= v and t.abs().max() > 0.99 * v
    assert ad.scale.item() == pytest.approx(1e-3)
    full = ReinAdapter(ReinConfig(num_layers=2, embed_dim=1024, rank=None))
    assert full.learnable_tokens.abs().max() <= math.sqrt(6 / (768 + 1024))


def reference_update(F, A, Bm, W_v, b_v, W_d, b_d, s, C):
    """rein.md §3 written with explicit sums over tokens (independent of the module)."""
    T = A @ Bm  # (100, C)
    logits = torch.einsum("bnc,tc->bnt", F, T) / math.sqrt(C)
    S = torch.exp(logits - logits.max(-1, keepdim=True).values)
    S = S / S.sum(-1, keepdim=True)
    agg = torch.zeros_like(F)
    for t in range(1, T.shape[0]):
        v_t = T[t] @ W_v.t() + b_v
        agg += S[..., t : t + 1] * v_t
    return F + s * ((agg + F) @ W_d.t() + b_d)


def test_update_matches_formula():
    torch.manual_seed(0)
    C = 32
    ad = ReinAdapter(ReinConfig(num_layers=3, embed_dim=C, num_tokens=7, rank=4, query_dim=8))
    with torch.no_grad():
        ad.scale.fill_(0.37)
    F = torch.randn(2, 5, C)
    out = ad.update(F, 1, ad.all_tokens())
    ref = reference_update(
        F,
        ad.learnable_tokens_a[1],
        ad.learnable_tokens_b[1],
        ad.mlp_token2feat.weight,
        ad.mlp_token2feat.bias,
        ad.mlp_delta_f.weight,
        ad.mlp_delta_f.bias,
        0.37,
        C,
    )
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_switches_change_what_they_say():
    torch.manual_seed(0)
    C = 16
    F = torch.randn(1, 4, C)
    base = ReinAdapter(ReinConfig(num_layers=1, embed_dim=C, num_tokens=5, rank=2, query_dim=8))
    tokens = base.all_tokens()
    nod = ReinAdapter(
        ReinConfig(num_layers=1, embed_dim=C, num_tokens=5, rank=2, query_dim=8, discard_first_token=False)
    )
    nod.load_state_dict(base.state_dict())
    w = (F @ tokens[0].t() / 4).softmax(-1)
    torch.testing.assert_close(nod.aggregate(w, tokens[0]), w @ nod.mlp_token2feat(tokens[0]))
    nosm = ReinAdapter(ReinConfig(num_layers=1, embed_dim=C, num_tokens=5, rank=2, use_softmax=False, query_dim=8))
    torch.testing.assert_close(nosm.token_weights(nosm.attention_logits(F, tokens[0])), F @ tokens[0].t())
    one = ReinAdapter(ReinConfig(num_layers=1, embed_dim=C, num_tokens=5, rank=2, scale="fixed_one", query_dim=8))
    assert "scale" not in dict(one.named_parameters()) and one.scale.item() == 1.0
    torch.testing.assert_close(one.update(F, 0, one.all_tokens()), F)  # zero-init mlp_delta_f: identity at start


def test_query_link_is_interleaved_max_mean_last():
    torch.manual_seed(0)
    ad = ReinAdapter(ReinConfig(num_layers=3, embed_dim=16, num_tokens=5, rank=2, query_dim=4))
    t = ad.transform(ad.all_tokens())  # (3, 5, 4)
    cols = []
    for c in range(4):
        cols += [t[:, :, c].max(0).values, t[:, :, c].mean(0), t[-1, :, c]]
    q = torch.stack(cols, dim=-1)  # (5, 12) = [m0, a0, z0, m1, ...]
    torch.testing.assert_close(ad.query_embed(), ad.merge(q))


def test_prefix_tokens_untouched_and_every_block_updated():
    """The adapter sees the patch tokens of every block, and the prefix (cls) token each block receives is
    exactly the previous block's output (the adapter never touches it; order-one version in test_formulas)."""
    model = tiny_segmentor("rein")
    with torch.no_grad():
        model.adapter.scale.fill_(1.0)
    seen = []
    orig = model.adapter.update

    def spy(feats, layer, tokens, **kw):
        seen.append((layer, feats.shape))
        return orig(feats, layer, tokens, **kw)

    model.adapter.update = spy
    enc = model.encoder
    inputs, outputs = {}, {}
    orig_block = enc.forward_block

    def block_spy(i, t, state):
        inputs[i] = t.clone()
        r = orig_block(i, t, state)
        outputs[i] = r.clone()
        return r

    enc.forward_block = block_spy
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.extract_features(x)
    assert [s[0] for s in seen] == list(range(enc.depth))
    assert all(s[1] == (1, 16, 64) for s in seen)  # patch tokens only (cls excluded)
    P = enc.num_prefix_tokens
    for i in range(1, enc.depth):
        assert torch.equal(inputs[i][:, :P], outputs[i - 1][:, :P])  # prefix passed through
        assert not torch.equal(inputs[i][:, P:], outputs[i - 1][:, P:])  # patch tokens were updated


def test_gradient_reaches_first_block_tokens_and_frozen_stays_frozen():
    model = tiny_segmentor("rein")
    model.train()
    assert not model.encoder.training
    out = model(torch.randn(2, 3, 64, 64))
    (out["pred_logits"].sum() + out["pred_masks"].sum()).backward()
    g = model.adapter.learnable_tokens_a.grad
    assert g is not None and g[0].abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())

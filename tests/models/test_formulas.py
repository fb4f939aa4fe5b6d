"""The methods' maths at order-one scale against re-derivations written here from the spec text.

Why order one: at the initial scale (tokens ~6e-3, ``scale`` = 1e-3) an adapter barely changes its
input, so a wrong term moves the output by less than any sensible tolerance. Every test here first
sets the weights to order-one values (tokens and features N(0, 1), projections N(0, 1/fan_in),
biases and scalars N(0, 0.25), ``scale`` 0.9, mixing weights far from 0.5), runs in float64, and
compares the module with a re-derivation made of plain einsum / matmul / softmax written from
``rein.md`` §3-5, ``depthforge.md`` §3-4/§9, ``vireo.md`` §3-5 and ``mask2former.md`` §7 — never the
module's own helpers. ``assert_sensitive`` checks on the way that the plausible wrong formulas the
test must catch (missing 1/sqrt(C), swapped alpha, ...) move the reference by far more than the
tolerance, so a pass means something.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dgss.adapters.depthforge import FUSIONS, DepthForgeAdapter, DepthForgeConfig
from dgss.adapters.rein import ReinAdapter, ReinConfig
from dgss.adapters.vireo import GeoTextAdapter, GeoTextConfig
from dgss.heads.classifiers import MLPTextClassifier, TextClassifier
from dgss.heads.cmpe import PriorGenerator
from dgss.heads.mask2former import Mask2FormerHead
from dgss.heads.refine import GatedLevelFusion
from dgss.testing import tiny_segmentor, tiny_segmentor_config

sys.path.insert(0, str(Path(__file__).parent))
from order_one import TOL, assert_sensitive, linear, order_one_, query_link_ref, randn, softmax, unit

# ------------------------------------------------------------------------------------------ helpers
C = 32


def tokens_of(ad, layer):
    return ad.learnable_tokens_a[layer] @ ad.learnable_tokens_b[layer]


# ------------------------------------------------------------------------------------------ REIN
def rein_ref(F_, T, ad, logits=None, C=C):
    """rein.md §3: S = softmax(F Tᵀ/√C); agg = S[..., 1:] · mlp_token2feat(T[1:]); F + s·mlp_delta_f(agg + F)."""
    if logits is None:
        logits = torch.einsum("bnc,tc->bnt", F_, T) / math.sqrt(C)
    S = softmax(logits, -1)
    agg = torch.einsum("bnt,tc->bnc", S[..., 1:], linear(T[1:], ad.mlp_token2feat))
    return F_ + ad.scale * linear(agg + F_, ad.mlp_delta_f)


def test_rein_update_at_order_one():
    ad = order_one_(ReinAdapter(ReinConfig(num_layers=3, embed_dim=C, num_tokens=7, rank=4, query_dim=8)))
    Fm = randn(2, 5, C)
    with torch.no_grad():
        for layer in range(3):
            T = tokens_of(ad, layer)
            ref = rein_ref(Fm, T, ad)
            torch.testing.assert_close(ad.update(Fm, layer, ad.all_tokens()), ref, **TOL)
        S = softmax(torch.einsum("bnc,tc->bnt", Fm, T) / math.sqrt(C), -1)
        assert_sensitive(
            ref,
            no_sqrt_c=rein_ref(Fm, T, ad, logits=torch.einsum("bnc,tc->bnt", Fm, T)),
            no_discard=Fm
            + ad.scale * linear(torch.einsum("bnt,tc->bnc", S, linear(T, ad.mlp_token2feat)) + Fm, ad.mlp_delta_f),
            no_inner_residual=Fm
            + ad.scale
            * linear(torch.einsum("bnt,tc->bnc", S[..., 1:], linear(T[1:], ad.mlp_token2feat)), ad.mlp_delta_f),
            wrong_layer=rein_ref(Fm, tokens_of(ad, 1), ad),
        )


def test_rein_full_rank_tokens_at_order_one():
    ad = order_one_(ReinAdapter(ReinConfig(num_layers=2, embed_dim=C, num_tokens=6, rank=None, query_dim=8)))
    Fm = randn(1, 4, C)
    with torch.no_grad():
        torch.testing.assert_close(ad.update(Fm, 1, ad.all_tokens()), rein_ref(Fm, ad.learnable_tokens[1], ad), **TOL)


def test_rein_query_link_interleaved_at_order_one():
    ad = order_one_(ReinAdapter(ReinConfig(num_layers=4, embed_dim=C, num_tokens=5, rank=3, query_dim=6)))
    with torch.no_grad():
        raw = ad.learnable_tokens_a @ ad.learnable_tokens_b
        ref = query_link_ref(raw, ad)
        torch.testing.assert_close(ad.query_embed(), ref, **TOL)
        t = linear(raw, ad.transform)
        blocks = torch.cat([t.max(0).values, t.mean(0), t[-1]], dim=-1)  # [m | a | z] block order
        assert_sensitive(ref, block_order=linear(blocks, ad.merge), first_layer_as_last=query_link_ref(raw.flip(0), ad))


# ------------------------------------------------------------------------------------------ DepthForge
def depthforge_ref(mode, F_, Z, T, ad, layer, attention_opt=True):
    """depthforge.md §3 and §9, one branch per ``depth_fusion`` mode."""
    sc = 1 / math.sqrt(C)
    lv = lambda X, TT: torch.einsum("bnc,tc->bnt", X, TT) * sc
    if mode == "feature_concat":
        F_ = torch.einsum("bni,oi->bno", torch.cat([F_, Z], -1), ad.concat_proj.weight) + ad.concat_proj.bias
    if mode == "logit_sum":
        S = softmax(lv(F_, T) + lv(Z, T), -1)
    elif mode == "prob_mean":
        S = 0.5 * softmax(lv(F_, T), -1) + 0.5 * softmax(lv(Z, T), -1)
    elif mode == "learned_mix":
        a = torch.sigmoid(ad.fusion_weights[layer])
        S = softmax(a * lv(F_, T) + (1 - a) * lv(Z, T), -1)
    else:
        S = softmax(lv(F_, T), -1)
    if not attention_opt:  # raw tokens as values, all tokens, no inner residual
        return F_ + ad.scale * linear(torch.einsum("bnt,tc->bnc", S, T), ad.mlp_delta_f)
    agg = torch.einsum("bnt,tc->bnc", S[..., 1:], linear(T[1:], ad.mlp_token2feat))
    if mode == "depth_token":
        TD = ad.depth_tokens_a[layer] @ ad.depth_tokens_b[layer]
        SD = softmax(lv(Z, TD), -1)
        agg = agg + torch.einsum("bnt,tc->bnc", SD[..., 1:], linear(TD[1:], ad.mlp_token2feat))
    return F_ + ad.scale * linear(agg + F_, ad.mlp_delta_f)


def _depthforge(mode, attention_opt=True, seed=0):
    ad = DepthForgeAdapter(
        DepthForgeConfig(
            num_layers=2, embed_dim=C, num_tokens=6, rank=4, query_dim=8, depth_fusion=mode, attention_opt=attention_opt
        )
    )
    order_one_(ad, seed)
    if mode == "learned_mix":
        with torch.no_grad():
            ad.fusion_weights.copy_(torch.tensor([1.3, -0.8], dtype=torch.float64))
    return ad


@pytest.mark.parametrize("mode", FUSIONS)
def test_depthforge_every_fusion_mode_at_order_one(mode):
    ad = _depthforge(mode)
    Fm, Z = randn(2, 5, C, seed=1), randn(2, 5, C, seed=2)
    with torch.no_grad():
        for layer in (0, 1):
            T = tokens_of(ad, layer)
            ref = depthforge_ref(mode, Fm, Z, T, ad, layer)
            torch.testing.assert_close(ad.update(Fm, layer, ad.all_tokens(), depth=Z), ref, **TOL)
        if mode not in ("none", "feature_concat", "depth_token"):  # depth enters the token attention
            assert_sensitive(ref, no_depth=depthforge_ref("none", Fm, Z, T, ad, 1))
        if mode == "logit_sum":
            lv = torch.einsum("bnc,tc->bnt", Fm, T) / math.sqrt(C)
            ld = torch.einsum("bnc,tc->bnt", Z, T)
            assert_sensitive(
                ref,
                depth_without_sqrt_c=rein_ref(Fm, T, ad, logits=lv + ld),
                prob_mean_instead=depthforge_ref("prob_mean", Fm, Z, T, ad, 1),
            )
        if mode == "learned_mix":
            assert_sensitive(ref, alpha_swapped=depthforge_ref("learned_mix", Z, Fm, T, ad, 1) - Z + Fm)
        if mode == "feature_concat":
            assert_sensitive(ref, concat_ignored=depthforge_ref("none", Fm, Z, T, ad, 1))
        if mode == "depth_token":
            assert_sensitive(ref, depth_tokens_ignored=depthforge_ref("none", Fm, Z, T, ad, 1))


@pytest.mark.parametrize("mode", ["logit_sum", "none"])
def test_depthforge_attention_opt_off_at_order_one(mode):
    ad = _depthforge(mode, attention_opt=False)
    Fm, Z = randn(1, 6, C, seed=3), randn(1, 6, C, seed=4)
    with torch.no_grad():
        T = tokens_of(ad, 1)
        ref = depthforge_ref(mode, Fm, Z, T, ad, 1, attention_opt=False)
        torch.testing.assert_close(ad.update(Fm, 1, ad.all_tokens(), depth=Z), ref, **TOL)
        assert_sensitive(ref, with_attention_opt=depthforge_ref(mode, Fm, Z, T, ad, 1, attention_opt=True))


def test_depthforge_depth_projection_for_a_narrower_depth_encoder():
    ad = DepthForgeAdapter(DepthForgeConfig(num_layers=1, embed_dim=C, num_tokens=5, rank=2, query_dim=8, depth_dim=12))
    order_one_(ad)
    Fm, Zn = randn(1, 4, C, seed=5), randn(1, 4, 12, seed=6)
    with torch.no_grad():
        Z = linear(Zn, ad.depth_proj)
        torch.testing.assert_close(
            ad.update(Fm, 0, ad.all_tokens(), depth=Zn),
            depthforge_ref("logit_sum", Fm, Z, tokens_of(ad, 0), ad, 0),
            **TOL,
        )


# ------------------------------------------------------------------------------------------ GeoText
def geotext_context_ref(E_bb, ad):
    """vireo.md §3: t̄ = normalise(mean_p normalise(E_bb)); t = text_embed(t̄)."""
    return linear(unit(unit(E_bb).sum(1) / E_bb.shape[1]), ad.text_embed)


def geotext_ref(F_, Z, P, t, ad, layer, *, fuse_softmax_scale=1.0, alpha_on_depth=False):
    """vireo.md §3: P' = P + softmax_classes(P tᵀ) t; S = softmax((α F P'ᵀ + (1-α) Z P'ᵀ)/√C); REIN update with P'."""
    Pp = P + softmax(fuse_softmax_scale * P @ t.T, -1) @ t
    a = torch.sigmoid(ad.fusion_weights[layer])
    lf, ld = F_ @ Pp.T, Z @ Pp.T
    logits = ((1 - a) * lf + a * ld if alpha_on_depth else a * lf + (1 - a) * ld) / math.sqrt(C)
    return rein_ref(F_, Pp, ad, logits=logits)


def _geotext(seed=0, **kw):
    ad = GeoTextAdapter(GeoTextConfig(num_layers=3, embed_dim=C, num_tokens=6, rank=4, query_dim=8, text_dim=12, **kw))
    order_one_(ad, seed)
    if hasattr(ad, "fusion_weights"):
        with torch.no_grad():
            for w, v in zip(ad.fusion_weights, (1.4, -1.1, 0.7), strict=False):
                w.fill_(v)
    return ad


def test_geotext_text_context_fusion_and_alpha_mix_at_order_one():
    ad = _geotext()
    E_bb = head_table(3, 3, 12, seed=7)  # template rows of unequal norm
    Fm, Z = randn(2, 5, C, seed=8), randn(2, 5, C, seed=9)
    with torch.no_grad():
        t = geotext_context_ref(E_bb, ad)
        torch.testing.assert_close(ad.text_context(E_bb), t, **TOL)
        for layer in range(3):
            P = tokens_of(ad, layer)
            ref = geotext_ref(Fm, Z, P, t, ad, layer)
            torch.testing.assert_close(ad.update(Fm, layer, ad.all_tokens(), depth=Z, text=t), ref, **TOL)
        assert_sensitive(
            ref,
            alpha_on_depth=geotext_ref(Fm, Z, P, t, ad, 2, alpha_on_depth=True),
            sqrt_c_in_text_softmax=geotext_ref(Fm, Z, P, t, ad, 2, fuse_softmax_scale=1 / math.sqrt(C)),
            no_text_fusion=rein_ref(
                Fm,
                P,
                ad,
                logits=(
                    torch.sigmoid(ad.fusion_weights[2]) * Fm @ P.T + (1 - torch.sigmoid(ad.fusion_weights[2])) * Z @ P.T
                )
                / math.sqrt(C),
            ),
            context_without_template_norm=geotext_ref(Fm, Z, P, linear(unit(E_bb.mean(1)), ad.text_embed), ad, 2),
        )


def test_geotext_depth_fusion_none_and_logit_sum_at_order_one():
    Fm, Z, E_bb = randn(1, 5, C, seed=10), randn(1, 5, C, seed=11), randn(3, 2, 12, seed=12)
    with torch.no_grad():
        for mode in ("none", "logit_sum"):
            ad = _geotext(depth_fusion=mode)
            t = geotext_context_ref(E_bb, ad)
            P = tokens_of(ad, 1)
            Pp = P + softmax(P @ t.T, -1) @ t
            logits = Fm @ Pp.T + (Z @ Pp.T if mode == "logit_sum" else 0)
            torch.testing.assert_close(
                ad.update(Fm, 1, ad.all_tokens(), depth=Z, text=t),
                rein_ref(Fm, Pp, ad, logits=logits / math.sqrt(C)),
                **TOL,
            )


def test_vireo_segmentor_query_link_uses_raw_tokens_at_order_one():
    """The head receives Q_geo = link(A@B), not link(P') (vireo.md §3), and P' really differs from A@B."""
    torch.manual_seed(0)
    m = tiny_segmentor("vireo").eval()
    order_one_(m.adapter)
    m.double()
    seen = {}
    real_forward = m.head.forward

    def spy(feats, query_embed, head_table):
        seen["q"] = query_embed
        return real_forward(feats, query_embed, head_table)

    m.head.forward = spy
    with torch.no_grad():
        m(randn(1, 3, 64, 64))
        ad = m.adapter
        raw = ad.learnable_tokens_a @ ad.learnable_tokens_b
        ref = query_link_ref(raw, ad)
        torch.testing.assert_close(seen["q"], ref, **TOL)
        t = linear(unit(unit(m.encoder_table.double()).mean(1)), ad.text_embed)
        fused = torch.stack([P + softmax(P @ t.T, -1) @ t for P in raw])
        assert_sensitive(ref, link_from_fused_tokens=query_link_ref(fused, ad))


# ------------------------------------------------------------------------------------------ AAG / level fusion
def aag_ref(u, gate):
    """depthforge.md §4: c = σ(conv1x1(ReLU(conv1x1(u)))), u·c, then · σ(conv3x3(u·c))."""
    c1, c2 = gate.channel_attention[0], gate.channel_attention[2]
    h = torch.relu(torch.einsum("bchw,oc->bohw", u, c1.weight[:, :, 0, 0]) + c1.bias[:, None, None])
    c = torch.sigmoid(torch.einsum("bchw,oc->bohw", h, c2.weight[:, :, 0, 0]) + c2.bias[:, None, None])
    v = u * c
    sp = gate.spatial_attention
    p = torch.sigmoid(F.conv2d(v, sp.weight, sp.bias, padding=1))
    return v * p


def level_fusion_ref(feats, fusion):
    size = feats[0].shape[-2:]
    gs = [
        aag_ref(
            f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False),
            fusion.attention_gate,
        )
        for f in feats
    ]
    W = fusion.linear_fuse.weight[:, :, 0, 0]
    return feats[0] + torch.einsum("bchw,oc->bohw", torch.cat(gs, 1), W) + fusion.linear_fuse.bias[:, None, None]


@pytest.mark.parametrize("split", [True, False])
def test_aag_level_fusion_at_order_one(split):
    fusion = order_one_(GatedLevelFusion(16, reduction=4, split_fusion=split))
    feats = [randn(2, 16, s, s + 2, seed=20 + s) for s in (8, 4, 2, 1)]
    with torch.no_grad():
        out = fusion(feats)
        ref = level_fusion_ref(feats, fusion)
        torch.testing.assert_close(out[0], ref, **TOL)
        assert all(a is b for a, b in zip(out[1:], feats[1:], strict=False))
        gate = fusion.attention_gate
        c1, c2 = gate.channel_attention[0], gate.channel_attention[2]

        def spatial_first(u):
            s = u * torch.sigmoid(F.conv2d(u, gate.spatial_attention.weight, gate.spatial_attention.bias, padding=1))
            h = torch.relu(torch.einsum("bchw,oc->bohw", s, c1.weight[:, :, 0, 0]) + c1.bias[:, None, None])
            return s * torch.sigmoid(torch.einsum("bchw,oc->bohw", h, c2.weight[:, :, 0, 0]) + c2.bias[:, None, None])

        size = feats[0].shape[-2:]
        ups = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats]
        W = fusion.linear_fuse.weight[:, :, 0, 0]
        swapped = (
            feats[0]
            + torch.einsum("bchw,oc->bohw", torch.cat([spatial_first(u) for u in ups], 1), W)
            + fusion.linear_fuse.bias[:, None, None]
        )
        assert_sensitive(
            ref, gate_order_swapped=swapped, levels_in_reverse=level_fusion_ref([feats[0]] + feats[:0:-1], fusion)
        )


# ------------------------------------------------------------------------------------------ CMPE
def cmpe_ref(X, E_hd, g, *, spatial="softmax_sigmoid", assign_dim=1):
    """vireo.md §4.1 written out: per-template maps, learned 3x3 fusion over templates, spatial weights, prior."""
    K = E_hd.shape[0] - 1
    e = unit(E_hd[:K])  # background dropped, per template
    G = torch.einsum("bchw,dc->bdhw", X, g.feat_proj.weight[:, :, 0, 0]) + g.feat_proj.bias[:, None, None]
    R = torch.einsum("bdhw,kpd->bkphw", G, e)  # (B, K, P, H, W)
    B, _, P, H, W = R.shape
    M = F.conv2d(R.reshape(B * K, P, H, W), g.coarse_embed.weight, g.coarse_embed.bias, padding=1).reshape(B, K, H, W)
    s = torch.sigmoid(M) if spatial == "softmax_sigmoid" else M
    w = softmax(s.reshape(B, K, H * W), -1)
    f = torch.einsum("bkn,bcn->bkc", w, X.reshape(B, X.shape[1], H * W))
    ek = linear(f, g.query_proj)  # (B, K, 256)
    a = softmax(torch.einsum("bkd,jd->bkj", ek, g.query_proto), assign_dim)
    prior = torch.einsum("bkj,bkd->bjd", a, ek)
    return M, prior


def head_table(K, P, D, seed):
    """A head text table whose template rows have unequal norms (so per-template normalisation matters)."""
    return randn(K + 1, P, D, seed=seed) * (
        0.3 + 2 * torch.rand(K + 1, P, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    )


@pytest.mark.parametrize("spatial", ["softmax_sigmoid", "softmax_logits"])
def test_cmpe_coarse_masks_and_prior_at_order_one(spatial):
    g = order_one_(
        PriorGenerator(
            in_channels=16,
            text_dim=8,
            num_templates=5,
            query_dim=12,
            num_queries=7,
            spatial_weights=spatial,
            class_chunk=2,
        )
    )
    X = randn(2, 16, 6, 5, seed=30) + randn(1, 16, 6, 1, seed=31, scale=2.0)  # spatially varying
    E = head_table(5, 5, 8, seed=32)
    with torch.no_grad():
        M, prior = g(X, E)
        rM, rprior = cmpe_ref(X, E, g, spatial=spatial)
        torch.testing.assert_close(M, rM, **TOL)
        torch.testing.assert_close(prior, rprior, **TOL)
        assert M.shape == (2, 5, 6, 5) and prior.shape == (2, 7, 12)
        other = "softmax_logits" if spatial == "softmax_sigmoid" else "softmax_sigmoid"
        assert_sensitive(
            rprior,
            other_spatial_weights=cmpe_ref(X, E, g, spatial=other)[1],
            assignment_over_queries=cmpe_ref(X, E, g, spatial=spatial, assign_dim=2)[1],
        )
        assert_sensitive(
            rM,
            first_row_dropped=cmpe_ref(X, torch.cat([E[-1:], E[:-1]]), g)[0],
            no_template_norm=_cmpe_unnormalised(X, E, g),
        )


def _cmpe_unnormalised(X, E, g):
    K = E.shape[0] - 1
    G = torch.einsum("bchw,dc->bdhw", X, g.feat_proj.weight[:, :, 0, 0]) + g.feat_proj.bias[:, None, None]
    R = torch.einsum("bdhw,kpd->bkphw", G, E[:K])
    B, _, P, H, W = R.shape
    return F.conv2d(R.reshape(B * K, P, H, W), g.coarse_embed.weight, g.coarse_embed.bias, padding=1).reshape(
        B, K, H, W
    )


# ------------------------------------------------------------------------------------------ DOV-VEH
def dov_veh_ref(q, E_hd, cls, *, mlp2=False, logit_scale=None):
    """vireo.md §4.2: logits = proj(q) · t_hdᵀ with t_hd = normalise(mean_p normalise(E_hd))."""
    t_hd = unit(unit(E_hd).sum(1) / E_hd.shape[1])
    z = torch.einsum("bqi,oi->bqo", q, cls.weight) + cls.bias
    if mlp2:
        z = linear(torch.relu(z), cls.proj2)
    logits = torch.einsum("bqd,kd->bqk", z, t_hd)
    return logits * math.exp(logit_scale) if logit_scale is not None else logits


@pytest.mark.parametrize("cls_proj,scale", [("linear", None), ("mlp2", None), ("linear", 0.7), ("mlp2", -0.4)])
def test_dov_veh_logits_at_order_one(cls_proj, scale):
    klass = MLPTextClassifier if cls_proj == "mlp2" else TextClassifier
    cls = order_one_(klass(16, 8, logit_scale=scale is not None))
    if scale is not None:
        with torch.no_grad():
            cls.logit_scale.fill_(scale)
    E = head_table(4, 6, 8, seed=40)
    cls.set_text(E)
    q = randn(2, 3, 16, seed=41)
    with torch.no_grad():
        ref = dov_veh_ref(q, E, cls, mlp2=cls_proj == "mlp2", logit_scale=scale)
        torch.testing.assert_close(cls(q), ref, **TOL)
        t_no_template_norm = unit(E.mean(1))
        z = cls.project(q)
        wrong = torch.einsum("bqd,kd->bqk", z, t_no_template_norm) * (math.exp(scale) if scale is not None else 1)
        assert_sensitive(ref, rows_not_normalised_per_template=wrong)


# ------------------------------------------------------------------------------------------ Vireo head order
@pytest.mark.parametrize("residual_level", [0, 3])
def test_vireo_head_order_aag_then_cmpe_on_refined_s4_then_prior_on_query_positions(residual_level):
    """vireo.md §4: 1. s4 <- s4 + f_M (switch cmpe.residual_level 3: bilinear(s32) + f_M); 2. CMPE on that
    s4; 3. query_pos = Q + prior, content = querys2feat(query_pos); 4. decoder on the new pyramid."""
    torch.manual_seed(0)
    m = tiny_segmentor("vireo")
    if residual_level:
        from dgss.models.segmentor import Segmentor

        cfg = dataclasses.replace(m.cfg, text=dataclasses.replace(m.cfg.text, cmpe_residual_level=residual_level))
        tables = (m.vocab, m.encoder_table, m.head_table)
        m = Segmentor(cfg)
        m.set_vocabulary(*tables)
    head = order_one_(m.head.double())
    E = head_table(19, m.head_table.shape[1], m.head_table.shape[2], seed=50)
    head.set_text(E)
    C_in = m.cfg.encoder.embed_dim
    feats = [randn(1, C_in, s, s, seed=51 + s) for s in (16, 8, 4, 2)]
    Q = randn(10, 32, seed=60)
    seen = {}
    real_decoder = head.transformer_decoder.forward

    def spy(content, query_pos, *a, **k):
        seen["content"], seen["query_pos"] = content, query_pos
        return real_decoder(content, query_pos, *a, **k)

    head.transformer_decoder.forward = spy
    with torch.no_grad():
        out = head(feats, Q, E)
        s4 = level_fusion_ref(feats, head.refine)
        if residual_level:
            s4 = s4 - feats[0] + F.interpolate(feats[3], size=feats[0].shape[-2:], mode="bilinear", align_corners=False)
        M, prior = cmpe_ref(s4, E, head.prior)
        torch.testing.assert_close(out["coarse_masks"], M, **TOL)
        torch.testing.assert_close(seen["query_pos"], Q[None] + prior, **TOL)
        torch.testing.assert_close(seen["content"], linear(Q[None] + prior, head.querys2feat), **TOL)
        ref = Mask2FormerHead.decode(head, [s4] + feats[1:], Q[None] + prior)
        torch.testing.assert_close(out["pred_logits"], ref["pred_logits"], **TOL)
        torch.testing.assert_close(out["pred_masks"], ref["pred_masks"], **TOL)
        assert_sensitive(prior, prior_before_aag=cmpe_ref(feats[0], E, head.prior)[1])


# ------------------------------------------------------------------------------------------ semantic scores
def test_semantic_score_aggregation_at_order_one():
    """mask2former.md §7: seg[b, c] = Σ_q softmax(cls_q)[c] · sigmoid(up(mask_q)), c < K (no-object dropped)."""
    logits, masks = randn(2, 5, 4, seed=70, scale=2.0), randn(2, 5, 3, 4, seed=71, scale=2.0)
    up = F.interpolate(masks, size=(6, 8), mode="bilinear", align_corners=False)
    ref = torch.zeros(2, 3, 6, 8, dtype=torch.float64)
    for b in range(2):
        for q in range(5):
            p = softmax(logits[b, q], -1)
            for c in range(3):
                ref[b, c] += p[c] * torch.sigmoid(up[b, q])
    got = Mask2FormerHead.semantic_inference(logits, masks, (6, 8))
    torch.testing.assert_close(got, ref, **TOL)
    wrong = torch.einsum("bqc,bqhw->bchw", softmax(logits[..., :-1], -1), torch.sigmoid(up))
    assert_sensitive(ref, softmax_without_no_object=wrong)


# ------------------------------------------------------------------------------------------ segmentor
def extract_features_ref(model, x):
    """rein.md §4 / depthforge.md §3: block l, then the adapter on the patch tokens only (prefix tokens
    untouched), taps read AFTER the update, resampled x4, x2, x1, x0.5; depth block map[l] feeds block l."""
    enc, ad = model.encoder, model.adapter
    P = enc.num_prefix_tokens
    t, state = enc.embed(x)
    h, w = state.grid
    tokens = ad.learnable_tokens_a @ ad.learnable_tokens_b
    Z = None
    if model.depth_encoder is not None:
        d, dstate = model.depth_encoder.embed(x)
        Z = []
        for j in range(model.depth_encoder.depth):
            d = model.depth_encoder.forward_block(j, d, dstate)
            Z.append(d[:, model.depth_encoder.num_prefix_tokens :])
    taps, prefixes = [], []
    for i in range(enc.depth):
        t = enc.forward_block(i, t, state)
        prefix, Fm = t[:, :P], t[:, P:]
        if Z is None:
            Fm = rein_ref(Fm, tokens[i], ad, C=enc.embed_dim)
        else:
            z = Z[model.cfg.resolved_depth_layer_map()[i]]
            Fm = rein_ref(
                Fm,
                tokens[i],
                ad,
                C=enc.embed_dim,
                logits=torch.einsum("bnc,tc->bnt", Fm + z, tokens[i]) / math.sqrt(enc.embed_dim),
            )
        t = torch.cat([prefix, Fm], 1)
        prefixes.append(prefix)
        if i in model.cfg.taps:
            taps.append(Fm.transpose(1, 2).reshape(x.shape[0], -1, h, w))
    scales = (4.0, 2.0, 1.0, 0.5)
    return [
        F.interpolate(m, scale_factor=s, mode="bilinear", align_corners=False)
        for m, s in zip(taps, scales, strict=False)
    ], prefixes


@pytest.mark.parametrize(
    "method,kw", [("rein", {}), ("rein", {"depth": 6}), ("depthforge", {"ablation": "da-ao", "depth_depth": 2})]
)
def test_segmentor_taps_after_adapter_scales_and_depth_map_at_order_one(method, kw):
    torch.manual_seed(0)
    kw = dict(kw)
    depth = kw.pop("depth", 4)
    m = tiny_segmentor(method, depth=depth, **kw).eval()
    order_one_(m.adapter)
    m.double()
    if method == "rein" and depth == 6:
        m.cfg.taps = (1, 2, 4, 5)  # not the last four blocks: tap indices really matter
    x = randn(2, 3, 64, 64, seed=80, scale=50.0)
    seen_prefix = []
    real_block = m.encoder.forward_block

    def block_spy(i, t, state):
        seen_prefix.append(t[:, : m.encoder.num_prefix_tokens].clone())
        return real_block(i, t, state)

    with torch.no_grad():
        ref, prefixes = extract_features_ref(m, x)
        m.encoder.forward_block = block_spy
        got = m.extract_features(x)
    for g, r in zip(got, ref, strict=False):
        torch.testing.assert_close(g, r, **TOL)
    # the prefix (cls/register) tokens each block receives are the previous block's output, untouched
    for i in range(1, m.encoder.depth):
        torch.testing.assert_close(seen_prefix[i], prefixes[i - 1], rtol=0, atol=0)
    if method == "depthforge":
        assert m.depth_layer_map == (0, 0, 1, 1)


def test_segmentor_taps_before_adapter_would_be_seen():
    """The re-derivation tells taps after the update from taps before it at order one."""
    m = tiny_segmentor("rein").eval()
    order_one_(m.adapter)
    m.double()
    x = randn(1, 3, 64, 64, seed=81, scale=50.0)
    with torch.no_grad():
        ref, _ = extract_features_ref(m, x)
        enc = m.encoder
        t, state = enc.embed(x)
        P = enc.num_prefix_tokens
        tokens = m.adapter.learnable_tokens_a @ m.adapter.learnable_tokens_b
        before = None
        for i in range(enc.depth):
            t = enc.forward_block(i, t, state)
            if i == m.cfg.taps[-1]:
                before = t[:, P:].transpose(1, 2).reshape(1, -1, *state.grid)
            t = torch.cat([t[:, :P], rein_ref(t[:, P:], tokens[i], m.adapter, C=enc.embed_dim)], 1)
        assert_sensitive(
            ref[3], tap_before_update=F.interpolate(before, scale_factor=0.5, mode="bilinear", align_corners=False)
        )


@pytest.mark.parametrize("taps", [(3, 1, 2, 0), (0, 2, 1, 3), (0, 1, 1, 3), (0, 1, 2), (0, 1, 2, 4)])
def test_segmentor_rejects_unsorted_repeated_missing_or_out_of_range_taps(taps):
    cfg = tiny_segmentor_config("rein")
    with pytest.raises(ValueError, match="taps"):
        dataclasses.replace(cfg, taps=taps)


def test_ablation_rein_row_equals_rein_model_outputs():
    """DepthForge row ``rein`` is REIN: same parameters, same outputs at order one (not only the same keys)."""
    torch.manual_seed(0)
    a = tiny_segmentor("depthforge", ablation="rein").eval()
    b = tiny_segmentor("rein").eval()
    assert a.depth_encoder is None and a.head.refine is None
    b.load_state_dict(a.state_dict(), strict=True)
    order_one_(a.adapter, seed=3)
    order_one_(b.adapter, seed=3)
    a.double(), b.double()
    x = randn(1, 3, 64, 64, seed=90, scale=50.0)
    with torch.no_grad():
        oa, ob = a(x), b(x)
    torch.testing.assert_close(oa["pred_logits"], ob["pred_logits"], rtol=0, atol=0)
    torch.testing.assert_close(oa["pred_masks"], ob["pred_masks"], rtol=0, atol=0)

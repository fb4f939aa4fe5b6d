"""CAT-Seg: counts, CLIP towers against open_clip, formulas re-derived at order-one weights (float64),
class handling (permutation, padding, pruning), loss, reference inference, text cache, optimizer,
checkpoint import, bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from catseg_helpers import tiny_open_clip
from dgss.errors import ClassCountError, ClipWeightsError, DgssError, ReferenceFormatError, VocabularyError
from dgss.heads.catseg_aggregator import (
    ClassAggregation,
    GuidedSwinBlock,
    LinearClassAttention,
    cost_volume,
    shift_window_mask,
)
from dgss.losses.catseg_loss import catseg_bce_loss
from dgss.models.catseg import CATSeg, build_catseg, catseg_config, cosine_lr

from .order_one import TOL, assert_sensitive, randn

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster on a shared machine

CITYSCAPES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person with clothes,people,human", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)  # fmt: skip


def order_one(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1)
    return module


def tiny(names=CITYSCAPES[:3], seed: int = 0, pad_len: int = 256, **over) -> CATSeg:
    """The tiny preset; ``pad_len`` below 256 keeps class-handling tests fast (same code path)."""
    torch.manual_seed(seed)
    agg = dataclasses.replace(catseg_config("catseg-tiny").aggregator, pad_len=pad_len)
    return build_catseg("catseg-tiny", class_names=tuple(names), aggregator=agg, **over)


def open_clip_tiny(seed: int = 0):
    return order_one(tiny_open_clip(seed), seed).eval()


# ------------------------------------------------------------------------------------------ counts
@pytest.mark.parametrize(
    ("name", "parts", "trainable", "total"),
    [
        ("catseg-clip-l", (304_293_888, 123_650_305, 1_048_832, 2_097_280, 2_636_641), 70_270_177, 433_726_946),
        ("catseg-clip-b", (86_192_640, 63_428_097, 786_688, 1_572_992, 2_308_961), 25_115_873, 154_289_378),
    ],
)
def test_published_counts_on_meta(name, parts, trainable, total):
    with torch.device("meta"):
        m = build_catseg(name)
    got = tuple(sum(p.numel() for p in mod.parameters()) for mod in m.param_groups().values())
    assert got == parts
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == trainable
    assert sum(p.numel() for p in m.parameters()) == total
    clip_train = [n for n, p in m.clip_parameters() if p.requires_grad]
    L = m.cfg.vision.layers
    assert len(clip_train) == 2 * (L + 12)
    assert all(n.endswith(("q_proj_weight", "v_proj_weight")) for n in clip_train)


def test_no_parameter_shape_depends_on_the_vocabulary():
    a, b = tiny(CITYSCAPES[:1]), tiny([f"thing {i}" for i in range(300)])
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_params_command_prints_the_counts(capsys):
    import argparse

    from dgss.commands.params import cmd_params

    cmd_params(argparse.Namespace(model="catseg-clip-l", num_classes=19))
    out = capsys.readouterr().out
    assert "433,726,946" in out and "70,270,177" in out


# ------------------------------------------------------------------------------------------ CLIP towers
def test_towers_equal_open_clip_and_dense_block_formula(tmp_path):
    oc = open_clip_tiny()
    path = tmp_path / "clip.pt"
    torch.save(oc.state_dict(), path)
    m = tiny().double()
    m.load_clip(path)
    m.eval()
    tokens = m._tokens
    with torch.no_grad():
        assert torch.allclose(m.clip_text(tokens), oc.encode_text(tokens, normalize=False), **TOL)
        x = randn(2, 3, 32, 32, seed=3)
        feats, taps = m.clip_visual(x, taps=(1, 2))
        v = oc.visual
        t = v.conv1(x).flatten(2).transpose(1, 2)
        t = torch.cat([v.class_embedding.expand(2, 1, -1), t], 1) + v.positional_embedding
        t = v.ln_pre(t)
        for i, blk in enumerate(v.transformer.resblocks[:-1]):
            t = blk(t)
            if i in (1, 2):
                ref_tap = t[:, 1:].transpose(1, 2).reshape(2, 32, 8, 8)
                assert torch.allclose(taps[(1, 2).index(i)], ref_tap, **TOL)
        last = v.transformer.resblocks[-1]
        y = last.ln_1(t)
        W_v = last.attn.in_proj_weight[64:]
        b_v = last.attn.in_proj_bias[64:]
        val = torch.einsum("blc,oc->blo", y, W_v) + b_v
        val = torch.einsum("blc,oc->blo", val, last.attn.out_proj.weight) + last.attn.out_proj.bias
        dense = val + t[:, :1]  # residual: the input cls token
        dense = dense + last.mlp(last.ln_2(dense))
        ref = (v.ln_post(dense) @ v.proj)[:, 1:].transpose(1, 2).reshape(2, 16, 8, 8)
        assert torch.allclose(feats, ref, **TOL)
        tok = val + t
        wrong = (v.ln_post(tok + last.mlp(last.ln_2(tok))) @ v.proj)[:, 1:].transpose(1, 2).reshape(2, 16, 8, 8)
        full = (v.ln_post(last(t)) @ v.proj)[:, 1:].transpose(1, 2).reshape(2, 16, 8, 8)
        assert_sensitive(ref, token_residual=wrong, full_attention=full)
    assert type(m.clip_visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    z = randn(100, seed=4)
    assert torch.allclose(m.clip_visual.transformer.resblocks[0].mlp.gelu(z), z * torch.sigmoid(1.702 * z), **TOL)


def test_position_grid_resized_bicubically_for_vit_b_layout():
    cfg = catseg_config("catseg-tiny")
    import dataclasses

    from dgss.backbones.clip_dense import DenseClipVisual

    vis = order_one(DenseClipVisual(dataclasses.replace(cfg.vision, pos_grid=5)))
    pos = vis.position((8, 8))
    grid = vis.positional_embedding[1:].reshape(1, 5, 5, -1).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)[0].flatten(1).T
    assert (
        pos.shape == (65, 32)
        and torch.allclose(pos[1:], ref, **TOL)
        and torch.equal(pos[0], vis.positional_embedding[0])
    )


# ------------------------------------------------------------------------------------------ formulas
def test_cost_volume_equals_einsum_of_separately_normalised_features():
    f, t = randn(2, 16, 8, 8, seed=1), randn(2, 5, 1, 16, seed=2)
    c = cost_volume(f, t)
    fn = f / f.pow(2).sum(1, keepdim=True).sqrt()
    tn = t / t.pow(2).sum(-1, keepdim=True).sqrt()
    ref = torch.einsum("bchw,btpc->bpthw", fn, tn)
    assert c.shape == (2, 1, 5, 8, 8) and torch.allclose(c, ref, **TOL) and c.abs().max() <= 1
    assert_sensitive(ref, unnormalised_text=torch.einsum("bchw,btpc->bpthw", fn, t))


def test_linear_class_attention_formula_no_output_projection():
    att = order_one(LinearClassAttention(8, 4, heads=2))
    y, u = randn(3, 6, 8, seed=5), randn(3, 6, 4, seed=6)
    out = att(y, u)
    yu = torch.cat([y, u], -1)
    q = F.elu(yu @ att.q.weight.T + att.q.bias) + 1
    k = F.elu(yu @ att.k.weight.T + att.k.bias) + 1
    v = y @ att.v.weight.T + att.v.bias
    ref = torch.zeros_like(out)
    for h in range(2):
        s = slice(4 * h, 4 * h + 4)
        for n in range(3):
            for l in range(6):
                w = torch.stack([q[n, l, s] @ k[n, j, s] for j in range(6)])
                ref[n, l, s] = (w[:, None] * v[n, :, s]).sum(0) / (q[n, l, s] @ k[n, :, s].sum(0) + 1e-6)
    assert torch.allclose(out, ref, **TOL)
    assert not hasattr(att, "proj")
    soft = torch.einsum("nlc,nsc->nls", q, k).softmax(-1) @ v
    assert_sensitive(ref, softmax_attention=soft)


def test_shift_mask_pattern():
    m = shift_window_mask(8, 4, 2)
    assert m.shape == (4, 16, 16)
    assert (m[0] == 0).all()  # top-left window lies in one region
    region = torch.zeros(8, 8)
    region[:4, :4], region[:4, 4:6], region[:4, 6:] = 0, 1, 2
    region[4:6, :4], region[4:6, 4:6], region[4:6, 6:] = 3, 4, 5
    region[6:, :4], region[6:, 4:6], region[6:, 6:] = 6, 7, 8
    last = region[4:, 4:].flatten()
    ref = torch.where(last[:, None] == last[None, :], 0.0, -100.0)
    assert torch.equal(m[3], ref) and set(m.unique().tolist()) == {0.0, -100.0}


def _swin_inputs():
    x, g = randn(2, 8, 8, 16, seed=7), randn(2, 8, 8, 16, seed=8)
    return x, g


def test_window_locality_and_guidance_only_in_q_k():
    blk = order_one(GuidedSwinBlock(16, 16, heads=2, window=4, shift=0, grid=8, mlp_ratio=4))
    x, g = _swin_inputs()
    base = blk(x, g)
    x2 = x.clone()
    x2[:, 0, 0] += 5.0  # inside the top-left window
    moved = blk(x2, g)
    assert torch.allclose(moved[:, 4:, :], base[:, 4:, :], **TOL) and torch.allclose(
        moved[:, :, 4:], base[:, :, 4:], **TOL
    )
    assert not torch.allclose(moved[:, :4, :4], base[:, :4, :4])
    g2 = randn(2, 8, 8, 16, seed=9)
    assert not torch.allclose(blk(x, g2), base)
    with torch.no_grad():
        blk.attn.q.weight[:, 16:] = 0
        blk.attn.k.weight[:, 16:] = 0
    assert torch.allclose(blk(x, g), blk(x, g2), **TOL)  # guidance enters q and k only


def test_shifted_block_equals_explicit_rolled_windows():
    blk = order_one(GuidedSwinBlock(16, 16, heads=2, window=4, shift=2, grid=8, mlp_ratio=4))
    x, g = _swin_inputs()
    out = blk(x, g)

    def ln(z, mod):
        return (z - z.mean(-1, keepdim=True)) / (
            z.var(-1, unbiased=False, keepdim=True) + 1e-5
        ).sqrt() * mod.weight + mod.bias

    y = torch.roll(ln(x, blk.norm1), (-2, -2), (1, 2))
    gr = torch.roll(g, (-2, -2), (1, 2))
    mask = shift_window_mask(8, 4, 2).double()
    a = blk.attn
    res = torch.zeros_like(y)
    for wi, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        yw, gw = y[:, r : r + 4, c : c + 4].reshape(2, 16, 16), gr[:, r : r + 4, c : c + 4].reshape(2, 16, 16)
        yg = torch.cat([yw, gw], -1)
        q, k, v = yg @ a.q.weight.T + a.q.bias, yg @ a.k.weight.T + a.k.bias, yw @ a.v.weight.T + a.v.bias
        heads = []
        for h in range(2):
            s = slice(8 * h, 8 * h + 8)
            w = (q[..., s] @ k[..., s].transpose(1, 2)) / math.sqrt(8) + mask[wi]
            heads.append(w.softmax(-1) @ v[..., s])
        res[:, r : r + 4, c : c + 4] = (torch.cat(heads, -1) @ a.proj.weight.T + a.proj.bias).reshape(2, 4, 4, 16)
    z = x + torch.roll(res, (2, 2), (1, 2))
    ref = (
        z + F.gelu(ln(z, blk.norm2) @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias) @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias
    )
    assert torch.allclose(out, ref, **TOL)


def test_class_layer_zero_weights_doubling_quirk_and_pool_switch():
    cfg = catseg_config("catseg-tiny").aggregator
    layer = order_one(ClassAggregation(cfg))
    x, u = randn(1, 3, 16, 8, 8, seed=10), randn(1, 3, 16, seed=11)
    assert not torch.allclose(layer(x, u, 1), layer(x, u, 2))
    with torch.no_grad():
        for mod in (layer.attention.q, layer.attention.k, layer.attention.v, layer.MLP[0], layer.MLP[2]):
            mod.weight.zero_()
            mod.bias.zero_()
    assert torch.allclose(layer(x, u, 1), 2 * x, **TOL)
    pooled = F.avg_pool2d(x[0], 2)
    up = F.interpolate(pooled, size=(8, 8), mode="bilinear", align_corners=True)
    assert torch.allclose(layer(x, u, 2), x + up[None], **TOL)


# ------------------------------------------------------------------------------------------ classes
def _eval64(model):
    return order_one(model, seed=1).eval()


def test_permutation_equivariance_with_padding_and_with_pruning():
    x = randn(1, 3, 32, 32, seed=12)
    for n in (19, 30):  # class slots 24: 5 padding tokens, then pruning to 24
        names = [f"class {i}" for i in range(n)]
        m = _eval64(tiny(names, pad_len=24))
        with torch.no_grad():
            base = m(x)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
            m.set_vocabulary([names[i] for i in perm])
            permuted = m(x)
        assert torch.allclose(permuted, base[:, perm], rtol=1e-7, atol=1e-7)


def test_padding_tokens_take_part_and_pruning_keeps_top_classes():
    x = randn(2, 3, 32, 32, seed=13).float()
    m = _eval64(tiny(CITYSCAPES)).float()
    with torch.no_grad():
        a = m(x)
        m.aggregator.layers[0].attention.padding_tokens.add_(randn(1, 1, 16, seed=20).float())
        assert not torch.allclose(m(x), a)  # 256 - 19 = 237 padding tokens in every class attention
        names = [f"class {i}" for i in range(300)]
        m.set_vocabulary(names)
        out = m(x)
        kept = (out != -100).flatten(2).all(2)
        assert ((out == -100).flatten(2).all(2) | kept).all() and kept.sum(1).tolist() == [256, 256]
        feats, _ = m.clip_visual(x, taps=())
        text = m.encode_text()[:, 0]
        score = torch.einsum("bchw,tc->bthw", F.normalize(feats, dim=1), F.normalize(text, dim=-1)).flatten(2).amax(2)
        for b in range(2):
            top = set(score[b].topk(256).indices.tolist())
            assert set(kept[b].nonzero()[:, 0].tolist()) == top
        # pruning = running the kept classes alone (no padding at 256)
        sub = sorted(kept[1].nonzero()[:, 0].tolist())
        m.set_vocabulary([names[i] for i in sub])
        assert torch.allclose(m(x[1:])[0], out[1, sub], rtol=1e-4, atol=1e-4)


def test_any_vocabulary_size_runs():
    m = tiny(["c0"]).eval()
    for T in (1, 255, 256, 257, 847):
        m.set_vocabulary([f"c{i}" for i in range(T)])
        with torch.no_grad():
            out = m(torch.zeros(1, 3, 32, 32))
        assert out.shape == (1, T, 32, 32) and int((out[0, :, 0, 0] != -100).sum()) == min(T, 256)


# ------------------------------------------------------------------------------------------ loss
def test_bce_counts_ignore_pixels_as_negatives_or_skips_them():
    logits, labels = (
        randn(2, 3, 4, 4, seed=14),
        torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(0)),
    )
    labels[0, :2] = 255
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    p = torch.sigmoid(up)
    terms = torch.zeros_like(up)
    for b in range(2):
        for t in range(3):
            y = (labels[b] == t).double()
            terms[b, t] = -(y * torch.log(p[b, t]) + (1 - y) * torch.log(1 - p[b, t]))
    assert torch.allclose(catseg_bce_loss(logits, labels), terms.mean(), **TOL)
    valid = (labels != 255)[:, None].expand_as(terms)
    assert torch.allclose(catseg_bce_loss(logits, labels, ignore="skip"), terms[valid].mean(), **TOL)
    assert_sensitive(terms.mean(), skip=terms[valid].mean())


# ------------------------------------------------------------------------------------------ inference
def test_reference_inference_equals_explicit_four_crops_and_global_view():
    m = _eval64(tiny(CITYSCAPES[:4], pad_len=8))
    x = randn(1, 3, 40, 60, seed=15)
    with torch.no_grad():
        out = m.reference_inference(x)
        S, c, s = 53, 32, 21
        big = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False)
        canvas, counts = torch.zeros(1, 4, S, S, dtype=x.dtype), torch.zeros(S, S, dtype=x.dtype)
        for r in (0, s):
            for q in (0, s):
                lg = m(big[..., r : r + c, q : q + c])
                canvas[..., r : r + c, q : q + c] += torch.sigmoid(F.interpolate(lg, size=(c, c), mode="bilinear"))
                counts[r : r + c, q : q + c] += 1
        assert set(counts.unique().tolist()) == {1.0, 2.0, 4.0}
        glob = m(F.interpolate(x, size=(c, c), mode="bilinear", align_corners=False))
        glob = F.interpolate(
            torch.sigmoid(F.interpolate(glob, size=(c, c), mode="bilinear")), size=(S, S), mode="bilinear"
        )
        ref = F.interpolate((canvas / counts + glob) / 2, size=(40, 60), mode="bilinear", align_corners=False)
    assert torch.allclose(out, ref, rtol=1e-7, atol=1e-9)
    m.cfg.inference = "dgss"
    with torch.no_grad():
        assert m.slide_inference(x).shape == (1, 4, 40, 60)


# ------------------------------------------------------------------------------------------ text / training
def test_text_cache_follows_vocabulary_and_weights():
    m = tiny(CITYSCAPES[:3])
    calls = []
    m.clip_text.register_forward_hook(lambda *a: calls.append(1))
    m.eval()
    with torch.no_grad():
        a = m.encode_text()
        assert torch.equal(m.encode_text(), a) and len(calls) == 1
        m.set_vocabulary(["dog", "cat"])
        assert m.encode_text().shape == (2, 1, 16) and len(calls) == 2
    m.train()
    e = m.encode_text()  # training: with gradient, every call
    assert e.requires_grad and len(calls) == 3
    opt = torch.optim.AdamW(m.optimizer_groups(lr=1e-2, weight_decay=0.0))
    e.sum().backward()
    opt.step()
    m.eval()
    with torch.no_grad():
        after = m.encode_text()
        assert len(calls) == 4 and not torch.allclose(after, e.detach())
        assert torch.allclose(after, F.normalize(m.clip_text(m._tokens), dim=-1)[:, None])


def test_training_step_moves_only_q_v_and_leaves_frozen_clip_bytes():
    m = tiny(CITYSCAPES[:3]).train()
    frozen = {n: p.detach().clone() for n, p in m.clip_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in m.clip_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(m.optimizer_groups(lr=2e-4, weight_decay=1e-4))
    x = m.normalize(torch.rand(2, 3, 32, 32) * 255)
    loss = m.training_loss()(m(x), torch.randint(0, 3, (2, 32, 32)))["loss_bce"]
    loss.backward()
    last_q = m.clip_visual.transformer.resblocks[-1].attn.q_proj_weight
    assert last_q.grad is not None and torch.count_nonzero(last_q.grad) == 0
    assert m.clip_text.transformer.resblocks[-1].attn.q_proj_weight.grad.abs().sum() > 0
    for n, p in m.clip_parameters():
        if not p.requires_grad:
            assert p.grad is None, n
    torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], m.cfg.grad_clip)
    opt.step()
    for n, p in m.clip_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    now = dict(m.clip_parameters())
    dense_q = "clip_visual.transformer.resblocks.3.attn.q_proj_weight"  # zero gradient: weight decay only
    assert torch.allclose(now[dense_q], trained[dense_q] * (1 - 2e-6 * 1e-4))
    assert all(not torch.equal(now[n], v) for n, v in trained.items() if n != dense_q)


def test_optimizer_groups_and_schedule():
    m = tiny()
    groups = m.optimizer_groups(lr=2e-4, weight_decay=1e-4)
    names = {id(p): n for n, p in m.named_parameters()}
    for g in groups:
        for p in g["params"]:
            n = names[id(p)]
            assert g["lr"] == pytest.approx(2e-6 if n.startswith("clip_") else 2e-4), n
            is_norm = ".norm" in n or "guidance_norm" in n or "double_conv.1" in n or "double_conv.4" in n
            assert g["weight_decay"] == (0.0 if is_norm else 1e-4), n
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in m.parameters())
    assert cosine_lr(0, 2e-4, 100) == 2e-4 and cosine_lr(100, 2e-4, 100) == 0.0
    assert cosine_lr(50, 2e-4, 100) == pytest.approx(1e-4)
    assert m.cfg.grad_clip == 0.01


# ------------------------------------------------------------------------------------------ checkpoints
def _reference_state(model) -> dict:
    """A synthetic released checkpoint: the key table of the docs written out by hand."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("clip_visual."):
            sd["sem_seg_head.predictor.clip_model.visual." + k[12:]] = v.clone()
        elif k.startswith("clip_text."):
            sd["sem_seg_head.predictor.clip_model." + k[10:]] = v.clone()
        elif k.startswith("aggregator."):
            sd["sem_seg_head.predictor.transformer." + k[11:]] = v.clone()
        else:
            sd[k] = v.clone()
    for i in range(2):
        sd[f"sem_seg_head.predictor.transformer.layers.{i}.swin_block.block_2.attn_mask"] = torch.zeros(4, 16, 16)
    return sd


def test_reference_import_round_trip_and_named_errors():
    from dgss.models.catseg_convert import from_catseg_reference, load_catseg_reference, to_catseg_reference

    src = order_one(tiny(), seed=5)
    ref = _reference_state(src)
    assert "sem_seg_head.predictor.transformer.layers.0.attention.padding_tokens" in ref
    assert "sem_seg_head.predictor.clip_model.visual.transformer.resblocks.0.attn.q_proj_weight" in ref
    assert "sem_seg_head.predictor.transformer.decoder1.conv.double_conv.4.weight" in ref
    dst = tiny(seed=9).double()
    load_catseg_reference(dst, {"model": ref})
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    back = to_catseg_reference(from_catseg_reference(ref, dst))
    assert set(back) == set(ref) - {k for k in ref if k.endswith("attn_mask")}
    bad = dict(ref, **{"sem_seg_head.predictor.transformer.extra.weight": torch.zeros(1)})
    with pytest.raises(ReferenceFormatError, match="extra.weight"):
        from_catseg_reference(bad, dst)
    k = "sem_seg_head.predictor.transformer.conv1.weight"
    with pytest.raises(ReferenceFormatError, match="conv1.weight"):
        from_catseg_reference(dict(ref, **{k: torch.zeros(3, 1, 7, 7)}), dst)


def test_open_clip_export_refuses_and_reloads(tmp_path):
    from dgss.models.catseg_convert import to_open_clip

    oc = open_clip_tiny()
    m = tiny().double()
    path = tmp_path / "clip.pt"
    torch.save(oc.state_dict(), path)
    m.load_clip(path)
    exported = to_open_clip(m.state_dict())
    for k, v in oc.state_dict().items():
        if k != "attn_mask":
            assert torch.equal(exported[k], v), k


# ------------------------------------------------------------------------------------------ bad input
def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert isinstance(e.value, DgssError) and "\n" not in msg
    return msg


def test_bad_inputs_are_one_line_errors(tmp_path):
    from open_clip.model import CLIP

    wrong = CLIP(
        embed_dim=16,
        vision_cfg=dict(image_size=32, layers=4, width=48, head_width=16, patch_size=4),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
        quick_gelu=True,
    )
    path = tmp_path / "wrong.pt"
    torch.save(wrong.state_dict(), path)
    m = tiny()
    with pytest.raises(ClipWeightsError) as e:
        m.load_clip(path)
    assert "visual.class_embedding" in _one_line(e)
    with pytest.raises(VocabularyError) as e:
        m.set_vocabulary([])
    _one_line(e)
    m = tiny([f"c{i}" for i in range(257)])
    import dataclasses

    m.aggregator.cfg = dataclasses.replace(m.aggregator.cfg, prune=False)
    with pytest.raises(ClassCountError) as e, torch.no_grad():
        m.eval()(torch.zeros(1, 3, 32, 32))
    assert "257" in _one_line(e)


def test_convert_command_imports_a_released_checkpoint(tmp_path):
    import argparse

    from dgss.commands.convert import run
    from dgss.models.catseg import CatSegConfig
    from dgss.models.checkpoint import read_checkpoint

    src = order_one(tiny(), seed=6).float()
    path = tmp_path / "model_tiny.pth"
    torch.save({"model": _reference_state(src), "iteration": torch.tensor(80000)}, path)
    out = tmp_path / "tiny.safetensors"
    run(
        argparse.Namespace(
            input=str(path), output=str(out), model="catseg-tiny", encoder_weights=None, to="dgss", raw=False
        )
    )
    tensors, meta = read_checkpoint(out)
    assert meta["method"] == "catseg" and CatSegConfig.from_dict(meta["config"]).name == "catseg-tiny"
    trained = src.trainable_state_dict()
    assert set(tensors) == set(trained) and all(torch.equal(tensors[k], v) for k, v in trained.items())


def test_prompts_use_the_first_synonym_and_keep_bare_commas():
    from dgss.models.catseg import TEMPLATE, class_prompts

    names = ("bicycle, motorcycle", "person with clothes,people,human")
    assert class_prompts(names, TEMPLATE, "first") == (
        ["A photo of a bicycle in the scene", "A photo of a person with clothes,people,human in the scene"],
        [0, 1],
    )
    prompts, owner = class_prompts(names, TEMPLATE, "mean")
    assert len(prompts) == 3 and owner == [0, 0, 1]
    m = tiny(names, synonyms="mean").eval()
    with torch.no_grad():
        e = F.normalize(m.clip_text(m._tokens), dim=-1)
        assert torch.allclose(m.encode_text()[0, 0], F.normalize(e[:2].mean(0), dim=0), atol=1e-6)
        m.cfg.synonyms = "first"
        m.set_vocabulary(list(names))
        assert torch.allclose(m.encode_text()[0, 0], e[0], atol=1e-6)

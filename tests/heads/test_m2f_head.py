"""Mask2FormerHead: outputs, query hooks, pluggable classifier / refine, semantic inference."""

import math

import pytest
import torch
from torch import nn

from dgss.heads import Mask2FormerHead, Mask2FormerHeadConfig

IN_CH = [16, 24, 32, 40]


def tiny_cfg(**kw) -> Mask2FormerHeadConfig:
    base = dict(
        num_classes=5,
        in_channels=IN_CH,
        feat_channels=32,
        out_channels=32,
        num_queries=10,
        num_encoder_layers=2,
        num_decoder_layers=3,
        num_heads=4,
        encoder_ffn_dims=64,
        decoder_ffn_dims=64,
    )
    base.update(kw)
    return Mask2FormerHeadConfig(**base)


def feats(b=2, h4=16, w4=24):
    return [torch.randn(b, c, h4 // 2**i, w4 // 2**i) for i, c in enumerate(IN_CH)]


def test_outputs_and_deep_supervision_count():
    torch.manual_seed(0)
    head = Mask2FormerHead(tiny_cfg(num_decoder_layers=9))
    out = head(feats(), torch.randn(10, 32))
    assert out["pred_logits"].shape == (2, 10, 6)
    assert out["pred_masks"].shape == (2, 10, 16, 24)
    assert len(out["aux_outputs"]) == 9  # initial prediction + layers 0..7; 10 outputs in total
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == (2, 10, 6) and aux["pred_masks"].shape == (2, 10, 16, 24)


def test_link_queries_batched_equals_shared():
    torch.manual_seed(0)
    head = Mask2FormerHead(tiny_cfg()).eval()
    x, q = feats(), torch.randn(10, 32)
    a = head(x, q)
    b = head(x, q.unsqueeze(0).expand(2, -1, -1))
    torch.testing.assert_close(a["pred_masks"], b["pred_masks"])
    torch.testing.assert_close(a["pred_logits"], b["pred_logits"])


def test_query_hook_validation():
    link = Mask2FormerHead(tiny_cfg())
    learned = Mask2FormerHead(tiny_cfg(query_source="learned"))
    x = feats()
    with pytest.raises(ValueError):
        link(x, None)
    with pytest.raises(ValueError):
        link(x, torch.randn(7, 32))  # wrong number of queries
    with pytest.raises(ValueError):
        learned(x, torch.randn(10, 32))
    assert learned(x)["pred_logits"].shape == (2, 10, 6)
    with pytest.raises(ValueError):
        tiny_cfg(query_source="text")


def test_gradients_reach_link_queries_and_features():
    torch.manual_seed(0)
    head = Mask2FormerHead(tiny_cfg())
    x = [f.requires_grad_() for f in feats()]
    q = torch.randn(10, 32, requires_grad=True)
    out = head(x, q)
    loss = out["pred_logits"].square().mean() + out["pred_masks"].square().mean()
    loss = loss + sum(a["pred_masks"].square().mean() for a in out["aux_outputs"])
    loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in x)
    assert head.querys2feat.weight.grad.abs().sum() > 0


class TableClassifier(nn.Module):
    """Stand-in for a text classifier: Linear(C, D) then a dot product with a fixed (K+1, D) table."""

    def __init__(self, c, d, k1):
        super().__init__()
        self.proj = nn.Linear(c, d)
        self.register_buffer("table", torch.randn(k1, d), persistent=False)

    def forward(self, x):
        return self.proj(x) @ self.table.T


def test_pluggable_classifier():
    clf = TableClassifier(32, 48, 8)
    head = Mask2FormerHead(tiny_cfg(num_classes=7), classifier=clf)
    assert head.cls_embed is clf
    out = head(feats(), torch.randn(10, 32))
    assert out["pred_logits"].shape == (2, 10, 8)


class Double(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, features):
        self.calls += 1
        return [2 * f for f in features]


def test_refine_hook_applied_before_pixel_decoder():
    torch.manual_seed(0)
    plain = Mask2FormerHead(tiny_cfg()).eval()
    refine = Double()
    refined = Mask2FormerHead(tiny_cfg(), refine=refine).eval()
    refined.load_state_dict(plain.state_dict())
    x, q = feats(), torch.randn(10, 32)
    a = refined(x, q)
    b = plain([2 * f for f in x], q)
    assert refine.calls == 1
    torch.testing.assert_close(a["pred_masks"], b["pred_masks"])


def test_semantic_inference_hand_computation():
    # B=1, Q=2, K=2 (+ no-object), masks 2x2 upsampled to 4x4.
    logits = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]])
    masks = torch.tensor([[[[0.0, 1.0], [2.0, -1.0]], [[-2.0, 0.5], [1.0, 3.0]]]])
    seg = Mask2FormerHead.semantic_inference(logits, masks, (4, 4))
    assert seg.shape == (1, 2, 4, 4)
    # bilinear 2->4 with align_corners=False: source coords -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    a = [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    for c in range(2):
        for y in range(4):
            for x in range(4):
                want = 0.0
                for q in range(2):
                    e = [math.exp(v) for v in logits[0, q].tolist()]
                    p = e[c] / sum(e)
                    m = sum(a[y][i] * a[x][j] * masks[0, q, i, j].item() for i in range(2) for j in range(2))
                    want += p / (1 + math.exp(-m))
                assert seg[0, c, y, x].item() == pytest.approx(want, abs=1e-6)

"""Hungarian matcher and point sampling (mask2former.md §5-6)."""

import itertools
import math

import pytest
import torch

from dgss.losses import HungarianMatcher, point_sample, uncertain_point_coords_with_randomness


def pixel_centres(h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)[None]  # (1, h·w, 2)


def test_point_sample_exact_at_pixel_centres_and_zero_padding():
    x = torch.randn(2, 3, 4, 5)
    got = point_sample(x, pixel_centres(4, 5).expand(2, -1, -1))
    torch.testing.assert_close(got, x.flatten(2))
    # corner point (0, 0): half a pixel outside in both axes -> 1/4 of the corner value (zero padding)
    got = point_sample(x, torch.zeros(2, 1, 2))
    torch.testing.assert_close(got[..., 0], x[..., 0, 0] / 4)


def test_uncertain_points_prefer_boundary():
    # logits: |x| small only in a thin column; importance points must lie there
    h = w = 32
    xs = (torch.arange(w) + 0.5) / w
    logits = (50 * (xs - 0.5)).expand(h, w)[None, None].repeat(3, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    pts = uncertain_point_coords_with_randomness(
        logits, num_points=40, oversample_ratio=3, importance_sample_ratio=0.75, generator=g
    )
    assert pts.shape == (3, 40, 2)
    assert ((pts >= 0) & (pts <= 1)).all()
    important = pts[:, :30, 0]
    # the 30 most uncertain of 120 uniform draws: close to the x = 0.5 boundary
    assert (important - 0.5).abs().max() < 0.25
    assert (pts[:, 30:, 0] - 0.5).abs().max() > (important - 0.5).abs().max()  # fresh uniform points


def explicit_cost(logits, masks, labels, gt, w=(2.0, 5.0, 5.0)):
    """Cost matrix written out with python scalars (masks already sampled at points: (Q,P), (G,P))."""
    q_n, p_n = masks.shape
    g_n = gt.shape[0]
    cost = torch.zeros(q_n, g_n, dtype=torch.float64)
    for q in range(q_n):
        e = [math.exp(v) for v in logits[q].tolist()]
        for g in range(g_n):
            c_cls = -e[int(labels[g])] / sum(e)
            bce, inter, sp, sy = 0.0, 0.0, 0.0, 0.0
            for p in range(p_n):
                m, y = masks[q, p].item(), gt[g, p].item()
                s = 1 / (1 + math.exp(-m))
                bce += -(y * math.log(s) + (1 - y) * math.log(1 - s))
                inter += s * y
                sp += s
                sy += y
            dice = 1 - (2 * inter + 1) / (sp + sy + 1)
            cost[q, g] = w[0] * c_cls + w[1] * bce / p_n + w[2] * dice
    return cost


def test_cost_matrix_matches_explicit_formulas():
    torch.manual_seed(0)
    q, g, h, w = 4, 3, 3, 4
    logits, masks = torch.randn(q, 6), torch.randn(q, h, w)
    labels = torch.tensor([0, 4, 2])
    gt = (torch.rand(g, h, w) > 0.5).float()
    m = HungarianMatcher(num_points=h * w)
    cost = m.cost_matrix(logits, masks, labels, gt, pixel_centres(h, w))
    want = explicit_cost(logits, masks.flatten(1), labels, gt.flatten(1))
    assert cost.dtype == torch.float32
    torch.testing.assert_close(cost.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_matcher_equals_brute_force(seed):
    torch.manual_seed(seed)
    q, g, h, w = 5, 3, 4, 4
    logits, masks = torch.randn(1, q, 4), 3 * torch.randn(1, q, h, w)
    target = {"labels": torch.randint(0, 3, (g,)), "masks": torch.rand(g, 8, 8) > 0.5}
    m = HungarianMatcher(num_points=20, generator=torch.Generator().manual_seed(seed))
    pts = torch.rand(1, 20, 2)
    m.sample_points = lambda device: pts  # fixed points for cost and matching
    ((rows, cols),) = m(logits, masks, [target])
    cost = m.cost_matrix(logits[0], masks[0], target["labels"], target["masks"].float(), m.sample_points(None))
    best = min(itertools.permutations(range(q), g), key=lambda perm: sum(cost[perm[j], j].item() for j in range(g)))
    got = {int(c): int(r) for r, c in zip(rows, cols, strict=False)}
    assert [got[j] for j in range(g)] == list(best)
    assert rows.tolist() == sorted(rows.tolist())


def test_perfect_prediction_gives_identity():
    torch.manual_seed(0)
    k, g, q, h, w = 4, 3, 5, 8, 8
    labels = torch.tensor([2, 0, 3])
    gt = torch.zeros(g, h, w, dtype=torch.bool)
    gt[0, :4], gt[1, 4:, :4], gt[2, 4:, 4:] = True, True, True
    logits = torch.full((1, q, k + 1), -20.0)
    masks = torch.full((1, q, h, w), -20.0)
    for j in range(g):
        logits[0, j, labels[j]] = 20.0
        masks[0, j][gt[j]] = 20.0
    logits[0, g:, k] = 20.0  # remaining queries predict no-object
    m = HungarianMatcher(num_points=200)
    ((rows, cols),) = m(logits, masks, [{"labels": labels, "masks": gt}])
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [0, 1, 2]
    cost = m.cost_matrix(logits[0], masks[0], labels, gt.float(), pixel_centres(h, w))
    diag = cost.diagonal()
    torch.testing.assert_close(diag, torch.full((g,), -2.0), atol=1e-3, rtol=0)  # -2·1 + 5·0 + 5·0
    assert torch.all(cost.min(dim=0).values == diag)


def test_zero_gt_image():
    m = HungarianMatcher(num_points=10)
    out = m(
        torch.randn(2, 3, 4),
        torch.randn(2, 3, 4, 4),
        [
            {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 8, 8)},
            {"labels": torch.tensor([1]), "masks": torch.ones(1, 8, 8)},
        ],
    )
    assert out[0][0].numel() == 0 and out[0][1].numel() == 0
    assert out[1][0].numel() == 1 and out[1][1].tolist() == [0]

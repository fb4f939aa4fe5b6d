"""Mask2Former criterion vs a pure-python reference, invariances, zero-GT, DDP normaliser, targets."""

import itertools
import math

import pytest
import torch

import dgss.losses.mask2former_loss as m2f_loss
from dgss.losses import Mask2FormerCriterion, Mask2FormerCriterionConfig, semantic_to_targets

# bilinear 2 -> 4 upsampling matrix (align_corners=False): source coords -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
UP = [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
CENTRES_2x2 = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]])  # (x, y) row-major


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def bce(v: float, y: float) -> float:
    return -(y * math.log(sig(v)) + (1 - y) * math.log(1 - sig(v)))


def dice(vals, ys) -> float:
    s = [sig(v) for v in vals]
    return 1 - (2 * sum(a * b for a, b in zip(s, ys, strict=False)) + 1) / (sum(s) + sum(ys) + 1)


def reference_losses(logits, masks, targets, mode: str, k: int):
    """Pure-python losses for one output.

    logits (B,Q,K+1); masks (B,Q,2,2) logits; targets[b] = (labels, blocks (G,2,2) in {0,1}); the GT masks given
    to the criterion are the blocks repeated 2x2 (4x4). Matching uses the 4 pixel centres of the 2x2 grid,
    where bilinear sampling of both the prediction and the 4x4 GT is exact.
    """
    b_n, q_n, _ = logits.shape
    n = sum(len(t[0]) for t in targets)
    ce_num = ce_den = bce_sum = dice_sum = 0.0
    for b in range(b_n):
        labels, blocks = targets[b]
        g_n = len(labels)
        probs = [
            [math.exp(v) / sum(math.exp(u) for u in logits[b, q].tolist()) for v in logits[b, q].tolist()]
            for q in range(q_n)
        ]
        m_pts = [masks[b, q].flatten().tolist() for q in range(q_n)]
        y_pts = [blocks[g].flatten().tolist() for g in range(g_n)]

        def cost(q, g, m_pts=m_pts, y_pts=y_pts, probs=probs, labels=labels):
            c_bce = sum(bce(v, y) for v, y in zip(m_pts[q], y_pts[g], strict=False)) / 4
            return -2 * probs[q][labels[g]] + 5 * c_bce + 5 * dice(m_pts[q], y_pts[g])

        best = min(itertools.permutations(range(q_n), g_n), key=lambda p: sum(cost(p[g], g) for g in range(g_n)))
        match = {q: g for g, q in enumerate(best)}
        for q in range(q_n):
            tgt = labels[match[q]] if q in match else k
            w = 1.0 if tgt < k else 0.1
            ce_num += w * -math.log(probs[q][tgt])
            ce_den += w
        for q, g in match.items():
            if mode == "stock":
                vals, ys = m_pts[q], y_pts[g]
            else:  # full-resolution: upsample 2x2 -> 4x4, GT 4x4
                mk = masks[b, q].tolist()
                vals = [
                    sum(UP[y][i] * UP[x][j] * mk[i][j] for i in range(2) for j in range(2))
                    for y in range(4)
                    for x in range(4)
                ]
                ys = [blocks[g][y // 2][x // 2].item() for y in range(4) for x in range(4)]
            bce_sum += sum(bce(v, y) for v, y in zip(vals, ys, strict=False)) / len(vals)
            dice_sum += dice(vals, ys)
    nbar = max(n, 1)
    cls = ce_num / ce_den if mode == "stock" else ce_num / (b_n * q_n)
    return {"loss_cls": 2 * cls, "loss_mask": 5 * bce_sum / nbar, "loss_dice": 5 * dice_sum / nbar}


def make_case(seed: int, b_n=2, q_n=4, k=3):
    g = torch.Generator().manual_seed(seed)
    targets_py, targets = [], []
    for b in range(b_n):
        g_n = b + 1
        labels = torch.randperm(k, generator=g)[:g_n]
        blocks = (torch.rand(g_n, 2, 2, generator=g) > 0.5).float()
        targets_py.append((labels.tolist(), blocks))
        targets.append({"labels": labels, "masks": blocks.repeat_interleave(2, 1).repeat_interleave(2, 2).bool()})
    outputs = [
        {
            "pred_logits": 2 * torch.randn(b_n, q_n, k + 1, generator=g, dtype=torch.float64),
            "pred_masks": 3 * torch.randn(b_n, q_n, 2, 2, generator=g, dtype=torch.float64),
        }
        for _ in range(3)
    ]
    return outputs, targets, targets_py


def fixed_point_criterion(mode: str, k: int) -> Mask2FormerCriterion:
    crit = Mask2FormerCriterion(Mask2FormerCriterionConfig(num_classes=k, mode=mode, num_points=4))
    crit.matcher.sample_points = lambda device: CENTRES_2x2.to(device)
    crit.sample_points = lambda logits: CENTRES_2x2.to(logits.device).expand(logits.shape[0], -1, -1)
    return crit


@pytest.mark.parametrize("mode", ["stock", "full_res_query_mean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_losses_equal_python_reference(mode, seed):
    k = 3
    outs, targets, targets_py = make_case(seed, k=k)
    head_out = {**outs[-1], "aux_outputs": outs[:-1]}
    losses = fixed_point_criterion(mode, k)(head_out, targets)
    assert list(losses) == [f"d{i}.{n}" for i in range(2) for n in ("loss_cls", "loss_mask", "loss_dice")] + [
        "loss_cls",
        "loss_mask",
        "loss_dice",
    ]
    for prefix, o in [("d0.", outs[0]), ("d1.", outs[1]), ("", outs[2])]:
        want = reference_losses(o["pred_logits"], o["pred_masks"], targets_py, mode, k)
        for name, value in want.items():
            assert losses[prefix + name].item() == pytest.approx(value, rel=1e-9, abs=1e-12), prefix + name


def test_two_query_case_with_cross_entropy():
    """A 2-query case spelled out: query 1 fits the single GT; losses via F.cross_entropy / explicit sums."""
    logits = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]]])  # K = 2
    masks = torch.tensor([[[[-4.0, -4.0], [-4.0, -4.0]], [[3.0, -2.0], [2.0, -3.0]]]])
    gt = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)[None]
    crit = fixed_point_criterion("stock", 2)
    losses = crit({"pred_logits": logits, "pred_masks": masks}, [{"labels": torch.tensor([1]), "masks": gt}])
    ce = torch.nn.functional.cross_entropy(logits[0], torch.tensor([2, 1]), reduction="none")
    assert losses["loss_cls"].item() == pytest.approx(2 * (0.1 * ce[0] + ce[1]).item() / 1.1, rel=1e-6)
    vals, ys = [3.0, -2.0, 2.0, -3.0], [1, 0, 1, 0]
    assert losses["loss_mask"].item() == pytest.approx(
        5 * sum(bce(v, y) for v, y in zip(vals, ys, strict=False)) / 4, rel=1e-6
    )
    assert losses["loss_dice"].item() == pytest.approx(5 * dice(vals, ys), rel=1e-6)


@pytest.mark.parametrize("mode", ["stock", "full_res_query_mean"])
def test_permutation_invariance(mode):
    torch.manual_seed(0)
    b_n, q_n, k = 2, 6, 4
    label_map = torch.randint(0, k, (b_n, 16, 16))
    label_map[:, :3] = 255
    targets = semantic_to_targets(label_map, k)
    outs = [
        {"pred_logits": torch.randn(b_n, q_n, k + 1), "pred_masks": 4 * torch.randn(b_n, q_n, 8, 8)} for _ in range(3)
    ]
    pts = torch.rand(1, 30, 2)
    crit = Mask2FormerCriterion(Mask2FormerCriterionConfig(num_classes=k, mode=mode, num_points=30))
    crit.matcher.sample_points = lambda device: pts
    crit.sample_points = lambda logits: pts.expand(logits.shape[0], -1, -1)
    a = crit({**outs[-1], "aux_outputs": outs[:-1]}, targets)

    qp = torch.randperm(q_n)
    p_outs = [{"pred_logits": o["pred_logits"][:, qp], "pred_masks": o["pred_masks"][:, qp]} for o in outs]
    p_targets = []
    for t in targets:
        gp = torch.randperm(len(t["labels"]))
        p_targets.append({"labels": t["labels"][gp], "masks": t["masks"][gp]})
    b = crit({**p_outs[-1], "aux_outputs": p_outs[:-1]}, p_targets)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["stock", "full_res_query_mean"])
def test_zero_gt_finite_and_grads_only_on_class_logits(mode):
    torch.manual_seed(0)
    outs = [
        {
            "pred_logits": torch.randn(2, 5, 4, requires_grad=True),
            "pred_masks": torch.randn(2, 5, 8, 8, requires_grad=True),
        }
        for _ in range(3)
    ]
    empty = {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 32, 32, dtype=torch.bool)}
    crit = Mask2FormerCriterion(Mask2FormerCriterionConfig(num_classes=3, mode=mode, num_points=50))
    losses = crit({**outs[-1], "aux_outputs": outs[:-1]}, [empty, empty])
    total = sum(losses.values())
    assert torch.isfinite(total)
    for key, v in losses.items():
        if not key.endswith("loss_cls"):
            assert v.item() == 0.0
    total.backward()
    for o in outs:
        assert o["pred_logits"].grad is not None and o["pred_logits"].grad.abs().sum() > 0
        assert o["pred_masks"].grad is None or torch.all(o["pred_masks"].grad == 0)
    # all queries are no-object: stock CE normaliser is Σ w = 0.1 · B · Q, i.e. the plain mean
    ce = torch.nn.functional.cross_entropy(outs[-1]["pred_logits"].flatten(0, 1), torch.full((10,), 3))
    factor = 1.0 if mode == "stock" else 0.1
    assert losses["loss_cls"].item() == pytest.approx(2 * factor * ce.item(), rel=1e-5)


def test_mixed_batch_with_one_empty_image():
    torch.manual_seed(0)
    out = {
        "pred_logits": torch.randn(2, 5, 4, requires_grad=True),
        "pred_masks": torch.randn(2, 5, 8, 8, requires_grad=True),
        "aux_outputs": [],
    }
    empty = {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 32, 32)}
    full = {"labels": torch.tensor([0, 2]), "masks": torch.rand(2, 32, 32) > 0.5}
    losses = Mask2FormerCriterion(Mask2FormerCriterionConfig(num_classes=3, num_points=50))(out, [empty, full])
    sum(losses.values()).backward()
    assert torch.all(out["pred_masks"].grad[0] == 0) and out["pred_masks"].grad[1].abs().sum() > 0


def test_num_masks_averaged_over_ranks(monkeypatch):
    """Simulated 2-rank run where the other rank has 5 matches: n̄ = (n + 5) / 2."""
    outs, targets, _ = make_case(0)
    n = sum(len(t["labels"]) for t in targets)  # 3
    crit = fixed_point_criterion("stock", 3)
    single = crit({**outs[-1]}, targets)

    monkeypatch.setattr(m2f_loss.dist, "is_available", lambda: True)
    monkeypatch.setattr(m2f_loss.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(m2f_loss.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(m2f_loss.dist, "all_reduce", lambda t: t.add_(5.0))
    multi = crit({**outs[-1]}, targets)
    ratio = n / ((n + 5) / 2)
    assert multi["loss_mask"].item() == pytest.approx(single["loss_mask"].item() * ratio, rel=1e-9)
    assert multi["loss_dice"].item() == pytest.approx(single["loss_dice"].item() * ratio, rel=1e-9)
    assert multi["loss_cls"].item() == pytest.approx(single["loss_cls"].item(), rel=1e-12)


def test_semantic_to_targets():
    lm = torch.tensor([[[0, 0, 255], [3, 3, 0]], [[255, 255, 255], [255, 255, 255]]])
    t = semantic_to_targets(lm, num_classes=4)
    assert t[0]["labels"].tolist() == [0, 3]
    assert t[0]["masks"].tolist() == [
        [[True, True, False], [False, False, True]],
        [[False, False, False], [True, True, False]],
    ]
    assert t[1]["labels"].numel() == 0 and t[1]["masks"].shape == (0, 2, 3)
    with pytest.raises(ValueError, match="7"):
        semantic_to_targets(torch.tensor([[[7]]]), num_classes=4)

"""Independent second implementation: our matcher/criterion vs transformers' ``Mask2FormerLoss``.

How the random points are fixed: both implementations draw all points from the global torch RNG in the
same order, so seeding it identically before each call makes them use the same points. Order (read
from ``modeling_mask2former.py``): per output, the matcher draws ``rand(1, P, 2)`` per image, then the
mask loss draws ``rand(N, 3P, 2)`` for the N matched masks of the batch (concatenated image by image,
query index ascending), keeps the top ``0.75P`` by ``-|logit|`` and appends ``rand(N, P/4, 2)``;
outputs are processed last first, then the auxiliary outputs in order. Our criterion follows this order
(it is also what MMDetection does per output), so the comparison is exact up to float rounding.

HF's loss is unweighted with names ``loss_cross_entropy``/``loss_mask``/``loss_dice`` (+ ``_{i}`` for
auxiliary output i); ours returns the weighted terms ``loss_cls``/``loss_mask``/``loss_dice``
(+ ``d{i}.`` prefix), so HF values are multiplied by 2/5/5.

Not comparable: the Vireo ``full_res_query_mean`` mode has no transformers counterpart; it is checked
against the pure-python reference in ``test_m2f_criterion.py``.
"""

import pytest
import torch

from dgss.losses import HungarianMatcher, Mask2FormerCriterion, Mask2FormerCriterionConfig, semantic_to_targets

tf_m2f = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
from transformers import Mask2FormerConfig

K, Q, P = 4, 10, 60


def case(seed: int = 0, b: int = 2, n_aux: int = 3):
    g = torch.Generator().manual_seed(seed)
    label_map = torch.randint(0, K, (b, 6, 8), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    label_map[:, :5] = 255  # ignored band
    targets = semantic_to_targets(label_map, K)
    outs = [
        {"pred_logits": torch.randn(b, Q, K + 1, generator=g), "pred_masks": 5 * torch.randn(b, Q, 12, 16, generator=g)}
        for _ in range(n_aux + 1)
    ]
    return outs, targets


def hf_criterion():
    cfg = Mask2FormerConfig(
        num_labels=K,
        train_num_points=P,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        no_object_weight=0.1,
        class_weight=2.0,
        mask_weight=5.0,
        dice_weight=5.0,
    )
    return tf_m2f.Mask2FormerLoss(cfg, {"loss_cross_entropy": 2.0, "loss_mask": 5.0, "loss_dice": 5.0})


def test_matcher_matches_transformers():
    outs, targets = case(1)
    ours = HungarianMatcher(2.0, 5.0, 5.0, num_points=P)
    theirs = tf_m2f.Mask2FormerHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=P)
    for o in outs:
        torch.manual_seed(11)
        a = ours(o["pred_logits"], o["pred_masks"], targets)
        torch.manual_seed(11)
        b = theirs(
            o["pred_masks"], o["pred_logits"], [t["masks"].float() for t in targets], [t["labels"] for t in targets]
        )
        for (qa, ga), (qb, gb) in zip(a, b, strict=False):
            assert qa.tolist() == qb.tolist() and ga.tolist() == gb.tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_criterion_matches_transformers_loss(seed):
    outs, targets = case(seed)
    crit = Mask2FormerCriterion(Mask2FormerCriterionConfig(num_classes=K, num_points=P))
    torch.manual_seed(100 + seed)
    ours = crit({**outs[-1], "aux_outputs": outs[:-1]}, targets)

    hf = hf_criterion()
    torch.manual_seed(100 + seed)
    theirs = hf(
        masks_queries_logits=outs[-1]["pred_masks"],
        class_queries_logits=outs[-1]["pred_logits"],
        mask_labels=[t["masks"].float() for t in targets],
        class_labels=[t["labels"] for t in targets],
        auxiliary_predictions=[
            {"masks_queries_logits": o["pred_masks"], "class_queries_logits": o["pred_logits"]} for o in outs[:-1]
        ],
    )
    assert len(ours) == len(theirs) == 3 * len(outs)
    names = {"loss_cls": ("loss_cross_entropy", 2.0), "loss_mask": ("loss_mask", 5.0), "loss_dice": ("loss_dice", 5.0)}
    for ours_name, (hf_name, w) in names.items():
        torch.testing.assert_close(ours[ours_name], w * theirs[hf_name], rtol=1e-5, atol=1e-6)
        for i in range(len(outs) - 1):
            torch.testing.assert_close(ours[f"d{i}.{ours_name}"], w * theirs[f"{hf_name}_{i}"], rtol=1e-5, atol=1e-6)


def test_gradients_match_transformers_loss():
    outs, targets = case(2, n_aux=1)
    leaves = [{k: v.clone().requires_grad_() for k, v in o.items()} for o in outs]
    crit = Mask2FormerCriterion(Mask2FormerCriterionConfig(num_classes=K, num_points=P))
    torch.manual_seed(5)
    sum(crit({**leaves[-1], "aux_outputs": leaves[:-1]}, targets).values()).backward()

    hf_leaves = [{k: v.clone().requires_grad_() for k, v in o.items()} for o in outs]
    torch.manual_seed(5)
    theirs = hf_criterion()(
        masks_queries_logits=hf_leaves[-1]["pred_masks"],
        class_queries_logits=hf_leaves[-1]["pred_logits"],
        mask_labels=[t["masks"].float() for t in targets],
        class_labels=[t["labels"] for t in targets],
        auxiliary_predictions=[
            {"masks_queries_logits": hf_leaves[0]["pred_masks"], "class_queries_logits": hf_leaves[0]["pred_logits"]}
        ],
    )
    weights = {"loss_cross_entropy": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    sum(weights[k.rsplit("_", 1)[0] if k[-1].isdigit() else k] * v for k, v in theirs.items()).backward()
    for a, b in zip(leaves, hf_leaves, strict=False):
        for k in a:
            torch.testing.assert_close(a[k].grad, b[k].grad, rtol=1e-5, atol=1e-7)

"""Which loss each method row trains with: one source of truth (the model config), checked through the
real ``dgss train`` path against an independent computation of the loss terms.

Expected rows (``vireo.md`` §5/§10, issue 11): Vireo's full-resolution loss (CE averaged over all B·Q
queries, mask BCE/dice at label resolution) only where Vireo's head is (full, +DOV-VEH, +CMPE); the
stock point-sampled loss (CE normalised by the sum of target class weights) for every other row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.nn.functional as F

from dgss.cli import main
from dgss.config import load_config, segmentor_config_from
from dgss.engine.logging import read_jsonl
from dgss.losses.matcher import HungarianMatcher
from dgss.models.presets import DEPTHFORGE_ABLATIONS
from dgss.models.vireo import VIREO_ABLATIONS

ROOT = Path(__file__).resolve().parents[2]
VIREO_PAPER = ROOT / "src" / "dgss" / "configs" / "vireo" / "citys2acdc_vireo_dinov2-l.yaml"
DEPTHFORGE_PAPER = ROOT / "src" / "dgss" / "configs" / "depthforge" / "citys2acdc_depthforge_dinov2-l.yaml"
TINY_VIREO = ROOT / "src" / "dgss" / "configs" / "tiny" / "vireo_synthetic.yaml"

FULL, STOCK = "full_res_query_mean", "stock"
VIREO_ROW_LOSS = {
    "rein": STOCK,
    "promptda": STOCK,
    "dav2": STOCK,
    "da-ao": STOCK,
    "geotext": STOCK,
    "dov-veh": FULL,
    "cmpe": FULL,
    "full": FULL,
}


def test_every_row_is_listed():
    assert set(VIREO_ROW_LOSS) == set(VIREO_ABLATIONS)


@pytest.mark.parametrize("row", sorted(VIREO_ROW_LOSS))
def test_vireo_paper_config_rows_route_their_loss(row):
    cfg = load_config(VIREO_PAPER, [f"model.ablation={row}"])
    seg = segmentor_config_from(cfg.model, cfg.loss)
    assert seg.loss_mode == VIREO_ROW_LOSS[row]
    assert seg.prior_loss_weight == (0.1 if VIREO_ABLATIONS[row]["cmpe"] else 0.0)


@pytest.mark.parametrize("row", sorted(DEPTHFORGE_ABLATIONS))
def test_depthforge_rows_train_with_the_stock_loss(row):
    cfg = load_config(DEPTHFORGE_PAPER, [f"model.ablation={row}"])
    seg = segmentor_config_from(cfg.model, cfg.loss)
    assert seg.loss_mode == STOCK and seg.prior_loss_weight == 0.0


def test_an_explicit_loss_mode_is_written_into_the_model_config():
    cfg = load_config(VIREO_PAPER, ["model.ablation=rein", "loss.mode=full_res_query_mean"])
    assert segmentor_config_from(cfg.model, cfg.loss).loss_mode == FULL
    cfg = load_config(VIREO_PAPER, ["loss.mode=stock", "loss.prior_weight=0.3"])
    seg = segmentor_config_from(cfg.model, cfg.loss)
    assert seg.loss_mode == STOCK and seg.prior_loss_weight == 0.3


def test_prior_weight_on_a_row_without_the_prior_is_an_error():
    from dgss.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.prior_weight"):
        load_config(VIREO_PAPER, ["model.ablation=geotext", "loss.prior_weight=0.1"])


def test_old_checkpoint_configs_with_text_loss_mode_still_load():
    from dgss.models.segmentor import SegmentorConfig
    from dgss.testing import tiny_segmentor_config

    d = tiny_segmentor_config("vireo").to_dict()
    d.pop("loss_mode")
    d["text"]["loss_mode"] = FULL
    assert SegmentorConfig.from_dict(d).loss_mode == FULL


# ------------------------------------------------------------------------------ the real train path
def independent_terms(calls, num_classes: int, mode: str, no_object_weight=0.1, class_weight=2.0, mask_weight=5.0):
    """Σ over decoder outputs of the weighted class loss (both modes) and, in Vireo mode, of the full-
    resolution mask BCE, written from vireo.md §5 / mask2former.md §6 with the matches the run made."""
    cls_total, mask_total = 0.0, 0.0
    for logits, masks, targets, matches in calls:
        B, Q, _ = logits.shape
        logp = logits.double().log_softmax(-1)
        num, den = 0.0, 0.0
        n_masks = max(sum(min(Q, int(t["labels"].numel())) for t in targets), 1)
        bce = 0.0
        for b in range(B):
            matched = {int(q): int(g) for q, g in zip(*matches[b], strict=False)}
            for q in range(Q):
                y = int(targets[b]["labels"][matched[q]]) if q in matched else num_classes
                w = no_object_weight if y == num_classes else 1.0
                num += -w * float(logp[b, q, y])
                den += w
            for q, g in matched.items():
                gt = targets[b]["masks"][g].double()
                up = F.interpolate(
                    masks[b, q][None, None].double(), size=gt.shape, mode="bilinear", align_corners=False
                )[0, 0]
                bce += float(F.binary_cross_entropy_with_logits(up, gt))
        cls_total += class_weight * (num / den if mode == STOCK else num / (B * Q))
        mask_total += mask_weight * bce / n_masks
    return cls_total, mask_total


@pytest.mark.parametrize("row,mode", [("rein", STOCK), ("geotext", STOCK), ("full", FULL)])
def test_dgss_train_one_step_runs_the_rows_loss(tmp_path, monkeypatch, capsys, row, mode):
    calls = []
    real = HungarianMatcher.forward

    def recording_forward(self, pred_logits, pred_masks, targets):
        out = real(self, pred_logits, pred_masks, targets)
        calls.append((pred_logits.detach().clone(), pred_masks.detach().clone(), targets, out))
        return out

    monkeypatch.setattr(HungarianMatcher, "forward", recording_forward)
    work = tmp_path / "run"
    rc = main(
        [
            "train",
            str(TINY_VIREO),
            f"model.ablation={row}",
            "train.max_iters=1",
            "train.val_at_end=false",
            "train.val_interval=0",
            "logging.tensorboard=false",
            "--work-dir",
            str(work),
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    rec = read_jsonl(work / "log.jsonl")[1]
    assert len(calls) == 4  # 3 decoder layers + the initial prediction
    K = calls[0][0].shape[-1] - 1
    cls_stock, _ = independent_terms(calls, K, STOCK)
    cls_full, mask_full = independent_terms(calls, K, FULL)
    expected, other = (cls_stock, cls_full) if mode == STOCK else (cls_full, cls_stock)
    assert rec["loss_cls"] == pytest.approx(expected, rel=1e-5)
    assert abs(rec["loss_cls"] - other) > 0.05 * abs(expected)
    if mode == FULL:
        assert rec["loss_mask"] == pytest.approx(mask_full, rel=1e-5)
        assert rec["loss_prior"] > 0
    else:
        assert "loss_prior" not in rec

"""`dgss demo --methods ...`: the side-by-side comparison at a tiny size; the table is checked against the
models themselves (parameter counts, an independent re-evaluation of a checkpoint) and for consistency."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from compare_options import TINY_OPTS
from dgss.cli import main
from dgss.config import config_from_dict, segmentor_config_from
from dgss.demo.compare import CompareOptions, MethodSpec, method_run_config, parse_methods, run_comparison
from dgss.errors import CompareError


def test_method_list_parsing_and_errors():
    assert parse_methods("rein, freeze+pasta,full+advstyle+pasta") == [
        MethodSpec("rein"),
        MethodSpec("freeze", ("pasta",)),
        MethodSpec("full", ("advstyle", "pasta")),
    ]
    with pytest.raises(CompareError, match=r"unknown method 'reins' in 'reins'; known: rein, freeze"):
        parse_methods("reins")
    with pytest.raises(CompareError, match=r"unknown augmentation 'mixup' in 'rein\+mixup'"):
        parse_methods("rein+mixup")
    with pytest.raises(CompareError, match=r"'gtr_ltr'.*your own style images"):
        parse_methods("freeze+gtr_ltr")
    with pytest.raises(CompareError, match=r"'rein' is listed twice"):
        parse_methods("rein,freeze,rein")
    with pytest.raises(CompareError, match="at least one method"):
        parse_methods(" , ")


def test_identical_settings_for_every_method(tmp_path):
    a, b = (
        method_run_config(s, tmp_path / s.slug, tmp_path / "data" / "cityscapes", TINY_OPTS)
        for s in parse_methods("freeze,depthforge+advstyle")
    )
    for key in ("seed", "data", "optim", "schedule", "loss"):
        assert a[key] == b[key], key
    assert {k: v for k, v in a["train"].items() if k != "work_dir"} == {
        k: v for k, v in b["train"].items() if k != "work_dir"
    }
    assert (a["model"]["method"], b["model"]["method"]) == ("freeze", "depthforge")
    assert not a["augment"]["advstyle"]["enabled"] and b["augment"]["advstyle"]["enabled"]


@pytest.mark.e2e
def test_comparison_run_writes_a_consistent_table_and_chart(tmp_path):
    from dgss.demo.run import evaluate_conditions
    from dgss.engine.checkpointing import latest_checkpoint
    from dgss.models.build import build_model
    from dgss.models.checkpoint import load_checkpoint

    specs = parse_methods("freeze,rein+pasta")
    result = run_comparison(specs, tmp_path, TINY_OPTS, echo=lambda *a: None)
    rows = result["rows"]
    assert [r["method"] for r in rows] == ["freeze", "rein+pasta"]
    assert json.loads((tmp_path / "compare.json").read_text()) == result
    for spec, row in zip(specs, rows, strict=False):
        cfg = config_from_dict(method_run_config(spec, tmp_path / "x", tmp_path / "data" / "cityscapes", TINY_OPTS))
        with torch.device("meta"):
            model = build_model(segmentor_config_from(cfg.model))
        assert row["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert row["total_params"] == sum(p.numel() for p in model.parameters())
        assert set(row["mIoU"]) == {"clean", "night", "fog", "rain", "snow"}
        assert all(0.0 <= v <= 100.0 for v in row["mIoU"].values())
        adverse = [row["mIoU"][c] for c in ("night", "fog", "rain", "snow")]
        assert math.isclose(row["mean_adverse"], sum(adverse) / 4, abs_tol=0.01)
        assert row["iterations"] == 2 and 0 < row["sec_per_iter"] < row["train_seconds"]
        assert row["peak_mem_mb"] > 0 and row["mem_kind"] == "CPU peak RSS above start"
    assert rows[0]["trainable_params"] < rows[1]["trainable_params"]  # REIN adds its tokens to the head

    # the table's mIoU is what the trained checkpoint gives when evaluated again, independently
    model = load_checkpoint(
        latest_checkpoint(tmp_path / "runs" / "rein_pasta" / "run").weights, random_frozen=True
    ).eval()
    summary, _ = evaluate_conditions(
        model, tmp_path / "data" / "cityscapes", (128, 64), TINY_OPTS.severity, TINY_OPTS.seed
    )
    assert {d: round(100 * r.miou, 2) for d, r in summary.domains.items()} == rows[1]["mIoU"]
    saved = config_from_dict(json.loads((tmp_path / "runs" / "rein_pasta" / "job.json").read_text())["run_config"])
    assert saved.augment.pasta.enabled and not saved.augment.advstyle.enabled

    md = (tmp_path / "compare.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(lines) == 2 and lines[1].startswith("| `rein+pasta` |")
    assert f"{rows[1]['trainable_params']:,}" in lines[1] and f"{rows[1]['mIoU']['fog']:.2f}" in lines[1]
    assert "RANDOM" in md
    with Image.open(tmp_path / "compare.png") as im:
        assert im.format == "PNG" and im.size[0] > 1000 and im.size[1] > 400


def test_cli_rejects_bad_method_lists_and_weights(capsys):
    assert main(["demo", "--methods", "rein,dinov2"]) == 2
    assert "unknown method 'dinov2'" in capsys.readouterr().err
    assert main(["demo", "--methods", "rein", "--weights", "encoder=x.pth"]) == 2
    assert "takes no --weights" in capsys.readouterr().err


def test_a_failing_method_is_reported_and_the_others_kept(tmp_path, monkeypatch):
    import dgss.demo.compare as cmp

    def fake_child(job, job_file):
        if job["label"] == "rein":
            raise RuntimeError("method 'rein' failed (exit 1): boom")
        return {
            "method": job["label"],
            "mIoU": dict.fromkeys(cmp.CONDITION_COLUMNS, 10.0),
            "mean_adverse": 10.0,
            "trainable_params": 5,
            "total_params": 9,
            "sec_per_iter": 0.5,
            "peak_mem_mb": 12.0,
            "mem_kind": "CPU peak RSS above start",
        }

    monkeypatch.setattr(cmp, "_run_child", fake_child)
    opts = CompareOptions(iters=1, train_scenes=1, val_scenes=1, scene_size=(32, 64), crop=32, embed_dim=32)
    result = run_comparison("freeze,rein", tmp_path, opts, echo=lambda *a: None)
    assert [r["method"] for r in result["rows"]] == ["freeze"] and "boom" in result["failed"]["rein"]
    md = (tmp_path / "compare.md").read_text()
    assert "Failed (see runs/<method>/): `rein`" in md and "| `freeze` | 10.00 |" in md


def test_a_method_that_cannot_be_built_fails_before_any_training(tmp_path, monkeypatch):
    import dgss.demo.compare as cmp

    monkeypatch.setattr(cmp, "_run_child", lambda job, f: pytest.fail("trained although a later method is invalid"))
    # FADA needs 2w | C: a 4x4 patch grid (64 px crop) and width 36 cannot work, the frozen baseline can
    opts = CompareOptions(iters=1, train_scenes=1, val_scenes=1, scene_size=(32, 64), crop=64, embed_dim=36)
    with pytest.raises(CompareError, match=r"'fada' cannot be built at this size: .*does not divide the width C = 36"):
        run_comparison("freeze,fada", tmp_path, opts, echo=lambda *a: None)


def test_catseg_joins_the_comparison_with_its_tiny_model(tmp_path):
    """`dgss demo --methods catseg,...`: CAT-Seg is accepted and its run config builds the tiny CAT-Seg
    (frozen random CLIP towers, trained q/v and aggregator) under the same data, seed and schedule."""
    from dgss.config import config_from_dict, segmentor_config_from
    from dgss.models.catseg import CatSegConfig

    cat, rein = parse_methods("catseg,rein")
    assert cat.method == "catseg"
    raw = method_run_config(cat, tmp_path / cat.slug, tmp_path / "data" / "cityscapes", TINY_OPTS)
    other = method_run_config(rein, tmp_path / rein.slug, tmp_path / "data" / "cityscapes", TINY_OPTS)
    for key in ("seed", "data", "optim", "schedule", "loss"):
        assert raw[key] == other[key], key
    cfg = config_from_dict(raw)
    built = segmentor_config_from(cfg.model)
    assert isinstance(built, CatSegConfig) and len(built.class_names) == 19

"""`dgss demo --methods rein@dinov3,...`: the comparison run with a tiny DINOv3-architecture encoder."""

from __future__ import annotations

import json

import pytest
import torch

from compare_options import TINY_OPTS
from dgss.config import config_from_dict, segmentor_config_from
from dgss.demo.compare import MethodSpec, method_run_config, parse_methods, run_comparison
from dgss.errors import CompareError


def test_encoder_suffix_parsing():
    specs = parse_methods("rein@dinov3, rein, freeze+pasta@dinov3-sp")
    assert specs == [
        MethodSpec("rein", (), "dinov3"),
        MethodSpec("rein"),
        MethodSpec("freeze", ("pasta",), "dinov3-sp"),
    ]
    assert [s.label for s in specs] == ["rein@dinov3", "rein", "freeze+pasta@dinov3-sp"]
    assert [s.slug for s in specs] == ["rein_dinov3", "rein", "freeze_pasta_dinov3-sp"]
    assert [s.encoder_name for s in specs] == ["dinov3-s", None, "dinov3-sp"]
    with pytest.raises(CompareError, match=r"unknown encoder 'dinov4' in 'rein@dinov4'.*dinov3"):
        parse_methods("rein@dinov4")
    with pytest.raises(CompareError, match=r"'rein@dinov3' is listed twice"):
        parse_methods("rein@dinov3,rein@dinov3")


def test_run_config_builds_a_tiny_dinov3_model(tmp_path):
    spec = parse_methods("rein@dinov3")[0]
    cfg = config_from_dict(method_run_config(spec, tmp_path / "w", tmp_path / "data" / "cityscapes", TINY_OPTS))
    seg = segmentor_config_from(cfg.model)
    assert seg.encoder.family == "dinov3" and seg.encoder.embed_dim == 32
    from dgss.models.build import build_model

    with torch.device("meta"):
        model = build_model(seg)
    assert model.encoder.num_prefix_tokens == 5


@pytest.mark.e2e
def test_comparison_run_with_a_dinov3_encoder(tmp_path):
    result = run_comparison(parse_methods("rein@dinov3"), tmp_path, TINY_OPTS, echo=lambda *a: None)
    assert not result["failed"]
    (row,) = result["rows"]
    assert row["method"] == "rein@dinov3" and row["iterations"] == 2
    assert all(0.0 <= v <= 100.0 for v in row["mIoU"].values())
    job = json.loads((tmp_path / "runs" / "rein_dinov3" / "job.json").read_text())
    assert job["run_config"]["model"]["tiny_options"]["encoder"] == "dinov3-s"
    assert "| `rein@dinov3` |" in (tmp_path / "compare.md").read_text()

"""Parameter counts of the frozen encoders against the papers' published totals (DepthForge Tables 6/7)."""

import pytest
import torch

from dgss.backbones import ENCODERS, build_encoder, encoder_config
from dgss.backbones.depth_anything import DepthAnythingV2
from dgss.cli import main
from dgss.errors import UnknownModelError


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name,expected",
    [
        ("dinov2-l", 304_199_680),  # weights.md: DINOv2-L/16 at 512 incl. the unused mask token
        ("dinov2-l-p14", 304_368_640),  # weights.md: the public file at patch 14
        ("clip-l", 304_150_528),  # published 304.15M, image tower without projection
        ("dav2-l", 304_199_680),  # DAv2-L encoder = DINOv2-L architecture
    ],
)
def test_exact_counts(name, expected):
    with torch.device("meta"):
        enc = build_encoder(name)
    assert n_params(enc) == expected


@pytest.mark.parametrize(
    "name,published_m", [("dinov2-l", 304.20), ("eva02-l", 304.24), ("clip-l", 304.15), ("sam-h", 632.18)]
)
def test_published_totals(name, published_m):
    with torch.device("meta"):
        enc = build_encoder(name)
    assert round(n_params(enc) / 1e6, 2) == published_m


def test_dinov2_l_without_mask_token_and_sam_tables():
    with torch.device("meta"):
        enc = build_encoder("dinov2-l")
        sam = build_encoder("sam-h")
    assert n_params(enc) - enc.vit.mask_token.numel() == 304_198_656
    # SAM global blocks keep the pretrained 127-entry tables; windowed blocks 2*14-1 = 27
    assert sam.vit.blocks[7].attn.rel_pos_h.shape == (127, 80)
    assert sam.vit.blocks[0].attn.rel_pos_h.shape == (27, 80)
    assert n_params(sam) == 632_134_400 + 4 * 2 * (127 - 63) * 80


def test_dav2_with_dpt_head_matches_published_335m():
    with torch.device("meta"):
        m = DepthAnythingV2("l", patch14=True)
    assert round(n_params(m) / 1e6, 1) == 335.3


def test_unknown_encoder_lists_known_names():
    with pytest.raises(UnknownModelError) as e:
        encoder_config("dinov4-l")
    assert "dinov2-l" in str(e.value) and "sam-h" in str(e.value)


def test_cli_params_prints_counts(capsys):
    assert main(["params", "dinov2-l"]) == 0
    out = capsys.readouterr().out
    assert "304,199,680" in out and "304.20" in out
    assert main(["params", "sam-h"]) == 0
    assert "632.18" in capsys.readouterr().out


def test_cli_unknown_model_is_one_clear_line(capsys):
    assert main(["params", "resnet-50"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet-50'" in err and "dinov2-l" in err and "Traceback" not in err


def test_zoo_covers_papers_backbones():
    for name in [
        "dinov2-s",
        "dinov2-b",
        "dinov2-l",
        "dinov2-g",
        "dinov2-l-p14",
        "eva02-l",
        "clip-l",
        "sam-h",
        "dav2-s",
        "dav2-b",
        "dav2-l",
        "dav2-l-p14",
    ]:
        assert name in ENCODERS

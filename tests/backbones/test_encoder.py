"""Block-by-block loop vs timm's own forward, frozen behaviour, input checks."""

import pytest
import torch

from dgss.backbones import build_encoder, encoder_config
from dgss.errors import InputSizeError


def tiny(name, **kw):
    cfg = encoder_config(name)
    base = dict(embed_dim=32, depth=3, num_heads=2, img_size=64)
    if cfg.family == "sam":
        base.update(global_attn_indexes=(1,), rel_pos_grid=8, window_size=2)
    base.update(kw)
    torch.manual_seed(0)
    return build_encoder(cfg.replace(**base))


@pytest.mark.parametrize("name", ["dinov2-s", "dinov2-s-p14", "eva02-l", "clip-l", "sam-h"])
def test_block_loop_equals_timm_forward_features(name):
    enc = tiny(name, img_size=64 if not name.endswith("p14") else 56)
    x = torch.randn(2, 3, enc.cfg.img_size, enc.cfg.img_size)
    with torch.no_grad():
        ours = enc.forward_features(x)
        ref = enc.vit.forward_features(x)
    if enc.cfg.family == "sam":  # timm returns NCHW after the (removed) neck
        ref = ref.permute(0, 2, 3, 1).flatten(1, 2)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["dinov2-s", "eva02-l", "clip-l", "sam-h"])
def test_any_size_divisible_by_patch_works(name):
    enc = tiny(name)
    with torch.no_grad():
        outs = enc(torch.randn(1, 3, 48, 80))
    assert len(outs) == 3
    assert outs[-1].shape == (1, enc.num_prefix_tokens + 3 * 5, 32)


def test_dinov2_runtime_pos_embed_resize_is_dinov2_bicubic():
    enc = tiny("dinov2-s")  # grid 4x4 stored
    pos = enc._dinov2_pos_embed((3, 5))
    g = enc.vit.pos_embed[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(g, scale_factor=(3.1 / 4, 5.1 / 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pos[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 15, 32))
    assert enc._dinov2_pos_embed((4, 4)) is enc.vit.pos_embed


def test_input_not_divisible_by_patch_is_a_clear_error():
    enc = tiny("dinov2-s")
    with pytest.raises(InputSizeError, match="not divisible by the patch size 16"):
        enc(torch.randn(1, 3, 50, 64))
    with pytest.raises(InputSizeError, match=r"\(B, 3, H, W\)"):
        enc(torch.randn(3, 64, 64))


def test_frozen_encoder_has_no_trainable_params_and_stays_in_eval():
    enc = tiny("dinov2-s")
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training and not any(m.training for m in enc.modules())
    parent = torch.nn.Sequential(enc)
    parent.train()
    assert not enc.training


def test_gradient_flows_through_frozen_blocks_to_the_input():
    enc = tiny("dinov2-s")
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    enc(x)[-1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())

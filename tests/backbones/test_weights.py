"""Public checkpoint layouts written by the tests, loaded, and checked value by value."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dgss.backbones import build_encoder, encoder_config, load_encoder_weights
from dgss.backbones.depth_anything import DepthAnythingV2
from dgss.errors import FrozenWeightsError

C, DEPTH, HEADS = 32, 2, 2


def meta_dinov2_state(seed=0, patch=14, grid=5, depth=DEPTH):
    """A tiny checkpoint in Meta's dinov2_vit*14_pretrain.pth layout (random values)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    sd = {
        "cls_token": r(1, 1, C),
        "pos_embed": r(1, 1 + grid * grid, C),
        "mask_token": r(1, C),
        "patch_embed.proj.weight": r(C, 3, patch, patch),
        "patch_embed.proj.bias": r(C),
        "norm.weight": r(C),
        "norm.bias": r(C),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update(
            {
                b + "norm1.weight": r(C),
                b + "norm1.bias": r(C),
                b + "norm2.weight": r(C),
                b + "norm2.bias": r(C),
                b + "attn.qkv.weight": r(3 * C, C),
                b + "attn.qkv.bias": r(3 * C),
                b + "attn.proj.weight": r(C, C),
                b + "attn.proj.bias": r(C),
                b + "ls1.gamma": r(C),
                b + "ls2.gamma": r(C),
                b + "mlp.fc1.weight": r(4 * C, C),
                b + "mlp.fc1.bias": r(4 * C),
                b + "mlp.fc2.weight": r(C, 4 * C),
                b + "mlp.fc2.bias": r(C),
            }
        )
    return sd


def tiny_dinov2(patch=16, img=64, name="dinov2-s"):
    """Tiny encoder whose 'public' weights are patch 14 on a 5x5 grid (70 px), like 518 -> 37x37."""
    return build_encoder(
        encoder_config(name).replace(
            embed_dim=C, depth=DEPTH, num_heads=HEADS, patch_size=patch, img_size=img, source_img_size=70
        )
    )


def expected_pos(pos, grid):
    """Independent computation of the reference pos-embed conversion."""
    g = int((pos.shape[1] - 1) ** 0.5)
    p = pos[:, 1:].reshape(1, g, g, C).permute(0, 3, 1, 2)
    p = F.interpolate(p, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], p.permute(0, 2, 3, 1).reshape(1, -1, C)], dim=1)


def assert_blocks_equal(enc, sd):
    got = enc.vit.state_dict()
    for k, v in sd.items():
        if k.startswith("blocks.") or k in (
            "cls_token",
            "norm.weight",
            "norm.bias",
            "patch_embed.proj.bias",
            "mask_token",
        ):
            assert torch.equal(got[k], v), k


def test_meta_pth_converted_14_to_16(tmp_path):
    sd = meta_dinov2_state()
    torch.save(sd, tmp_path / "dinov2_vits14_pretrain.pth")
    enc = tiny_dinov2()  # patch 16, 64 px -> grid 4
    load_encoder_weights(enc, tmp_path / "dinov2_vits14_pretrain.pth")
    got = enc.vit.state_dict()
    ref_kernel = F.interpolate(sd["patch_embed.proj.weight"], size=(16, 16), mode="bicubic", align_corners=False)
    torch.testing.assert_close(got["patch_embed.proj.weight"], ref_kernel, rtol=0, atol=0)
    torch.testing.assert_close(got["pos_embed"], expected_pos(sd["pos_embed"], (4, 4)), rtol=0, atol=0)
    assert_blocks_equal(enc, sd)
    src = enc.frozen_source
    assert src["conversion"] == "bicubic-14to16/v1" and src["grid"] == [4, 4] and len(src["sha256"]) == 64


def test_already_converted_file_loads_unchanged(tmp_path):
    sd = meta_dinov2_state(patch=16, grid=4)
    torch.save(sd, tmp_path / "dinov2_converted.pth")
    enc = tiny_dinov2()
    load_encoder_weights(enc, tmp_path / "dinov2_converted.pth")
    got = enc.vit.state_dict()
    assert torch.equal(got["patch_embed.proj.weight"], sd["patch_embed.proj.weight"])
    assert torch.equal(got["pos_embed"], sd["pos_embed"])
    assert enc.frozen_source["conversion"] == "none"


def test_timm_safetensors_without_mask_token(tmp_path):
    sd = meta_dinov2_state()
    sd.pop("mask_token")
    save_file(sd, str(tmp_path / "model.safetensors"))
    enc = tiny_dinov2(patch=14, img=70, name="dinov2-s-p14")  # native patch 14, grid 5
    load_encoder_weights(enc, tmp_path / "model.safetensors")
    assert_blocks_equal(enc, sd)
    assert torch.equal(enc.vit.pos_embed, sd["pos_embed"])
    assert torch.equal(enc.vit.mask_token, torch.zeros(1, C))


def test_transformers_dinov2_layout_gives_identical_outputs(tmp_path):
    """Independent implementation: transformers' Dinov2Model with the same weights."""
    from transformers import Dinov2Config, Dinov2Model

    hf = Dinov2Model(
        Dinov2Config(
            hidden_size=C,
            num_hidden_layers=DEPTH,
            num_attention_heads=HEADS,
            patch_size=14,
            image_size=70,
            layer_norm_eps=1e-6,
        )
    ).eval()
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "model.safetensors"))
    enc = tiny_dinov2(patch=14, img=70, name="dinov2-s-p14")
    load_encoder_weights(enc, tmp_path / "model.safetensors")
    x = torch.randn(2, 3, 70, 70)
    with torch.no_grad():
        ref = hf(pixel_values=x).last_hidden_state
        ours = enc.forward_features(x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def dav2_original_state(seed=1):
    sd = {f"pretrained.{k}": v for k, v in meta_dinov2_state(seed, depth=12).items()}
    sd["depth_head.projects.0.weight"] = torch.randn(48, C, 1, 1)
    return sd


def test_combined_file_feeds_visual_and_depth_encoders(tmp_path):
    visual = meta_dinov2_state(0, patch=16, grid=4)
    depth = meta_dinov2_state(1, patch=16, grid=4)
    combined = dict(visual)
    combined.update({f"depth_anything.pretrained.{k}": v for k, v in depth.items()})
    combined["depth_anything.depth_head.scratch.output_conv1.weight"] = torch.randn(2, 2, 3, 3)
    torch.save(combined, tmp_path / "dinov2_converted_depth.pth")
    venc, denc = tiny_dinov2(), tiny_dinov2(name="dav2-s")
    load_encoder_weights(venc, tmp_path / "dinov2_converted_depth.pth", role="visual")
    load_encoder_weights(denc, tmp_path / "dinov2_converted_depth.pth", role="depth")
    assert_blocks_equal(venc, visual)
    assert_blocks_equal(denc, depth)


def test_rein_converted_file_in_depth_slot_is_refused(tmp_path):
    torch.save(meta_dinov2_state(), tmp_path / "dinov2_converted.pth")
    with pytest.raises(FrozenWeightsError, match="no depth-encoder weights"):
        load_encoder_weights(tiny_dinov2(name="dav2-s"), tmp_path / "dinov2_converted.pth", role="depth")


def test_dav2_file_in_visual_slot_is_refused(tmp_path):
    torch.save(dav2_original_state(), tmp_path / "depth_anything_v2_vits.pth")
    with pytest.raises(FrozenWeightsError, match="Depth Anything V2 checkpoint"):
        load_encoder_weights(tiny_dinov2(), tmp_path / "depth_anything_v2_vits.pth")


def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = meta_dinov2_state()
    del sd["blocks.1.ls2.gamma"]
    sd["blocks.7.extra"] = torch.zeros(1)
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(FrozenWeightsError) as e:
        load_encoder_weights(tiny_dinov2(), tmp_path / "broken.pth")
    assert "blocks.1.ls2.gamma" in str(e.value) and "blocks.7.extra" in str(e.value)


def test_wrong_width_is_refused(tmp_path):
    torch.save(meta_dinov2_state(), tmp_path / "vits.pth")
    wide = build_encoder(
        encoder_config("dinov2-s").replace(embed_dim=64, depth=DEPTH, num_heads=HEADS, img_size=64, source_img_size=70)
    )
    with pytest.raises(FrozenWeightsError, match="width differs"):
        load_encoder_weights(wide, tmp_path / "vits.pth")


def test_missing_file_and_non_checkpoint(tmp_path):
    with pytest.raises(FrozenWeightsError, match="not found"):
        load_encoder_weights(tiny_dinov2(), tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(FrozenWeightsError, match="cannot be read"):
        load_encoder_weights(tiny_dinov2(), tmp_path / "junk.pth")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FrozenWeightsError, match="Hugging Face Hub"):
        load_encoder_weights(tiny_dinov2(), "hf-hub:nobody/no-such-repo-dgss/weights.safetensors")


@pytest.mark.parametrize("name", ["eva02-l", "clip-l", "sam-h"])
def test_timm_layout_other_towers_with_resampling(tmp_path, name):
    cfg = encoder_config(name)
    kw = dict(embed_dim=C, depth=DEPTH, num_heads=HEADS)
    if cfg.family == "sam":
        kw.update(global_attn_indexes=(1,), rel_pos_grid=8, window_size=2)
        src = build_encoder(cfg.replace(img_size=128, **kw))  # the "pretrained" grid 8x8
    else:
        src = build_encoder(cfg.replace(img_size=56, patch_size=14, **kw))  # patch 14, grid 4
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    sd = {k: v.contiguous() for k, v in src.vit.state_dict().items()}
    save_file(sd, str(tmp_path / "model.safetensors"))
    dst = build_encoder(cfg.replace(img_size=64, **kw))  # patch 16, grid 4
    load_encoder_weights(dst, tmp_path / "model.safetensors")
    got = dst.vit.state_dict()
    for k, v in sd.items():
        if k not in ("patch_embed.proj.weight", "pos_embed"):
            assert torch.equal(got[k], v), k
    if cfg.family == "sam":
        ref = F.interpolate(sd["pos_embed"].permute(0, 3, 1, 2), size=(4, 4), mode="bicubic", align_corners=False)
        torch.testing.assert_close(got["pos_embed"], ref.permute(0, 2, 3, 1), rtol=0, atol=0)
    else:
        ref = F.interpolate(sd["patch_embed.proj.weight"], size=(16, 16), mode="bicubic", align_corners=False)
        torch.testing.assert_close(got["patch_embed.proj.weight"], ref, rtol=0, atol=0)


def test_depth_anything_hf_port_gives_identical_depth(tmp_path):
    """Independent implementation: transformers' DepthAnythingForDepthEstimation, same weights."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    bb = Dinov2Config(
        hidden_size=C,
        num_hidden_layers=12,
        num_attention_heads=HEADS,
        patch_size=14,
        image_size=70,
        out_indices=[3, 6, 9, 12],
        apply_layernorm=True,
        reshape_hidden_states=False,
        layer_norm_eps=1e-6,
    )
    hf = DepthAnythingForDepthEstimation(
        DepthAnythingConfig(
            backbone_config=bb,
            reassemble_hidden_size=C,
            patch_size=14,
            fusion_hidden_size=64,
            neck_hidden_sizes=[48, 96, 192, 384],
            depth_estimation_type="relative",
        )
    ).eval()
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "model.safetensors"))
    enc = build_encoder(encoder_config("dav2-s-p14").replace(embed_dim=C, num_heads=HEADS, img_size=70))
    ours = DepthAnythingV2("s", patch14=True, encoder=enc).load(tmp_path / "model.safetensors")
    x = torch.randn(1, 3, 70, 70)
    with torch.no_grad():
        ref = hf(pixel_values=x).predicted_depth
    torch.testing.assert_close(ours(x), ref, rtol=1e-4, atol=1e-5)


def test_depth_anything_original_layout_maps_every_head_tensor(tmp_path):
    """Original depth_head.* names (written here from the DAv2 source layout) reach the DPT head."""
    enc = build_encoder(encoder_config("dav2-s").replace(embed_dim=C, num_heads=HEADS, img_size=64, source_img_size=70))
    model = DepthAnythingV2("s", encoder=enc)
    head = model.depth_head.state_dict()
    orig = {}
    table = {"projects.{i}.": "neck.reassemble_stage.layers.{i}.projection.", "scratch.layer{j}_rn.": "neck.convs.{i}."}
    for i in range(4):
        for o, h in table.items():
            for s in ("weight", "bias"):
                hk = h.format(i=i) + s
                if hk in head:
                    orig["depth_head." + o.format(i=i, j=i + 1) + s] = torch.randn_like(head[hk])
    for i in (0, 1, 3):
        for s in ("weight", "bias"):
            orig[f"depth_head.resize_layers.{i}.{s}"] = torch.randn_like(
                head[f"neck.reassemble_stage.layers.{i}.resize.{s}"]
            )
    for r in range(1, 5):
        f = 4 - r
        for s in ("weight", "bias"):
            orig[f"depth_head.scratch.refinenet{r}.out_conv.{s}"] = torch.randn_like(
                head[f"neck.fusion_stage.layers.{f}.projection.{s}"]
            )
            for u in (1, 2):
                for c in (1, 2):
                    orig[f"depth_head.scratch.refinenet{r}.resConfUnit{u}.conv{c}.{s}"] = torch.randn_like(
                        head[f"neck.fusion_stage.layers.{f}.residual_layer{u}.convolution{c}.{s}"]
                    )
    for o, h in {"output_conv1": "head.conv1", "output_conv2.0": "head.conv2", "output_conv2.2": "head.conv3"}.items():
        for s in ("weight", "bias"):
            orig[f"depth_head.scratch.{o}.{s}"] = torch.randn_like(head[f"{h}.{s}"])
    assert len(orig) == len(head)
    orig.update({f"pretrained.{k}": v for k, v in meta_dinov2_state(depth=12).items()})
    torch.save(orig, tmp_path / "depth_anything_v2_vits.pth")
    model.load(tmp_path / "depth_anything_v2_vits.pth")
    got = model.depth_head.state_dict()
    assert torch.equal(
        got["neck.fusion_stage.layers.0.projection.weight"], orig["depth_head.scratch.refinenet4.out_conv.weight"]
    )
    assert torch.equal(got["head.conv3.bias"], orig["depth_head.scratch.output_conv2.2.bias"])
    assert torch.equal(got["neck.convs.2.weight"], orig["depth_head.scratch.layer3_rn.weight"])
    depth = model(torch.randn(1, 3, 64, 64))
    assert depth.shape == (1, 64, 64) and torch.isfinite(depth).all()


def test_promptda_checkpoint_feeds_depth_slot(tmp_path):
    sd = {f"pipeline.pretrained.{k}": v for k, v in meta_dinov2_state(3).items()}
    sd["pipeline.depth_head.x"] = torch.zeros(1)
    torch.save({"state_dict": sd}, tmp_path / "promptda_vitl.ckpt")
    enc = tiny_dinov2(name="promptda-l")
    load_encoder_weights(enc, tmp_path / "promptda_vitl.ckpt", role="depth")
    assert torch.equal(enc.vit.blocks[1].ls2.gamma, sd["pipeline.pretrained.blocks.1.ls2.gamma"])


def test_grid_converted_for_another_crop_is_refused(tmp_path):
    """weights.md §2: the public grid or this model's grid; a file converted for 1024 crops is not it."""
    torch.save(meta_dinov2_state(patch=16, grid=8), tmp_path / "dinov2_converted_1024x1024.pth")
    with pytest.raises(FrozenWeightsError, match="neither the public 5x5 nor this model's 4x4"):
        load_encoder_weights(tiny_dinov2(), tmp_path / "dinov2_converted_1024x1024.pth")
    torch.save(meta_dinov2_state(patch=12, grid=5), tmp_path / "odd.pth")
    with pytest.raises(FrozenWeightsError, match="patch kernel 12x12"):
        load_encoder_weights(tiny_dinov2(), tmp_path / "odd.pth")

"""Head key mapping to the MMDetection 3.x reference layout (weights.md §5, without ``decode_head.``)."""

import pytest
import torch

from dgss.heads import Mask2FormerHead, Mask2FormerHeadConfig, head_from_reference, head_to_reference


def expected_reference_shapes(k: int = 19, link: bool = True) -> dict[str, tuple[int, ...]]:
    """The head table of weights.md §5 written out for the reference configuration."""
    d: dict[str, tuple[int, ...]] = {}
    for e in range(3):  # index 0 = s32
        p = f"pixel_decoder.input_convs.{e}."
        d[p + "conv.weight"], d[p + "conv.bias"] = (256, 1024, 1, 1), (256,)
        d[p + "gn.weight"], d[p + "gn.bias"] = (256,), (256,)
    for i in range(6):
        p = f"pixel_decoder.encoder.layers.{i}."
        d[p + "self_attn.sampling_offsets.weight"], d[p + "self_attn.sampling_offsets.bias"] = (192, 256), (192,)
        d[p + "self_attn.attention_weights.weight"], d[p + "self_attn.attention_weights.bias"] = (96, 256), (96,)
        d[p + "self_attn.value_proj.weight"], d[p + "self_attn.value_proj.bias"] = (256, 256), (256,)
        d[p + "self_attn.output_proj.weight"], d[p + "self_attn.output_proj.bias"] = (256, 256), (256,)
        d[p + "ffn.layers.0.0.weight"], d[p + "ffn.layers.0.0.bias"] = (1024, 256), (1024,)
        d[p + "ffn.layers.1.weight"], d[p + "ffn.layers.1.bias"] = (256, 1024), (256,)
        for n in range(2):
            d[p + f"norms.{n}.weight"], d[p + f"norms.{n}.bias"] = (256,), (256,)
    d["pixel_decoder.level_encoding.weight"] = (3, 256)
    d["pixel_decoder.lateral_convs.0.conv.weight"] = (256, 1024, 1, 1)
    d["pixel_decoder.lateral_convs.0.gn.weight"] = d["pixel_decoder.lateral_convs.0.gn.bias"] = (256,)
    d["pixel_decoder.output_convs.0.conv.weight"] = (256, 256, 3, 3)
    d["pixel_decoder.output_convs.0.gn.weight"] = d["pixel_decoder.output_convs.0.gn.bias"] = (256,)
    d["pixel_decoder.mask_feature.weight"], d["pixel_decoder.mask_feature.bias"] = (256, 256, 1, 1), (256,)
    for i in range(9):
        p = f"transformer_decoder.layers.{i}."
        for a in ("cross_attn", "self_attn"):
            d[p + f"{a}.attn.in_proj_weight"], d[p + f"{a}.attn.in_proj_bias"] = (768, 256), (768,)
            d[p + f"{a}.attn.out_proj.weight"], d[p + f"{a}.attn.out_proj.bias"] = (256, 256), (256,)
        d[p + "ffn.layers.0.0.weight"], d[p + "ffn.layers.0.0.bias"] = (2048, 256), (2048,)
        d[p + "ffn.layers.1.weight"], d[p + "ffn.layers.1.bias"] = (256, 2048), (256,)
        for n in range(3):
            d[p + f"norms.{n}.weight"], d[p + f"norms.{n}.bias"] = (256,), (256,)
    d["transformer_decoder.post_norm.weight"] = d["transformer_decoder.post_norm.bias"] = (256,)
    d["level_embed.weight"] = (3, 256)
    d["cls_embed.weight"], d["cls_embed.bias"] = (k + 1, 256), (k + 1,)
    for j in (0, 2, 4):
        d[f"mask_embed.{j}.weight"], d[f"mask_embed.{j}.bias"] = (256, 256), (256,)
    if link:
        d["querys2feat.weight"], d["querys2feat.bias"] = (256, 256), (256,)
    else:
        d["query_embed.weight"] = d["query_feat.weight"] = (100, 256)
    return d


@pytest.mark.parametrize("source", ["link", "learned"])
def test_reference_key_set_matches_weights_table(source):
    with torch.device("meta"):
        head = Mask2FormerHead(Mask2FormerHeadConfig(num_classes=19, query_source=source))
    ref = head_to_reference(head.state_dict())
    got = {k: tuple(v.shape) for k, v in ref.items()}
    want = expected_reference_shapes(19, link=source == "link")
    assert set(got) - set(want) == set()
    assert set(want) - set(got) == set()
    assert got == want


def test_round_trip_is_exact_inverse():
    torch.manual_seed(0)
    cfg = Mask2FormerHeadConfig(
        num_classes=3,
        in_channels=[8, 8, 8, 8],
        feat_channels=32,
        out_channels=32,
        num_queries=4,
        num_encoder_layers=2,
        num_decoder_layers=3,
        num_heads=4,
        encoder_ffn_dims=16,
        decoder_ffn_dims=16,
    )
    head = Mask2FormerHead(cfg)
    sd = head.state_dict()
    ref = head_to_reference(sd)
    back = head_from_reference(ref)
    assert list(back) == list(sd)
    assert all(back[k] is sd[k] for k in sd)
    assert head_to_reference(back).keys() == ref.keys()
    fresh = Mask2FormerHead(cfg)
    fresh.load_state_dict(head_from_reference(ref), strict=True)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k])


def test_unknown_keys_raise_with_names():
    t = torch.zeros(1)
    with pytest.raises(ValueError, match="feat_conv.weight"):
        head_from_reference({"level_embed.weight": t, "feat_conv.weight": t})
    with pytest.raises(ValueError, match="refine.gate.weight"):
        head_to_reference({"refine.gate.weight": t})
    with pytest.raises(ValueError, match="norms.3"):  # decoder layers have norms 0..2 only
        head_from_reference({"transformer_decoder.layers.0.norms.3.weight": t})


def test_extra_prefixes_pass_through():
    t = torch.zeros(1)
    ours = {"refine.attention_gate.spatial_attention.weight": t, "level_embed.weight": t}
    ref = head_to_reference(ours, extra_prefixes={"refine.": "DQCM."})
    assert set(ref) == {"DQCM.attention_gate.spatial_attention.weight", "level_embed.weight"}
    assert head_from_reference(ref, extra_prefixes={"refine.": "DQCM."}).keys() == ours.keys()

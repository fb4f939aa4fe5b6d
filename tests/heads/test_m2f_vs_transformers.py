"""Independent second implementation: our head vs transformers' Mask2Former components.

Correspondence (read from ``transformers/models/mask2former/modeling_mask2former.py``, v5):

- ``Mask2FormerPixelDecoder`` == ``MSDeformAttnPixelDecoder``: ``input_projections[e]`` (s32 first) =
  ``input_convs[e]``; the Parameter ``level_embed`` = ``level_encoding.weight``; encoder layers
  ``self_attn_layer_norm``/``fc1``/``fc2``/``final_layer_norm`` = ``norm1``/``ffn.fc1``/``ffn.fc2``/``norm2``;
  ``adapter_1``/``layer_1`` = ``lateral_convs[0]``/``output_convs[0]``; ``mask_projection`` = ``mask_feature``.
  HF hard-codes 3 levels and 4 points; GroupNorm has 32 groups, so the tiny width is 32.
- ``Mask2FormerTransformerModule``: HF ``decoder_layers`` = ours + 1; its input projections are the
  identity (in_features == hidden_dim); ``level_embed`` = head ``level_embed``; learned queries
  ``queries_embedder`` (positional) / ``queries_features`` (content) = ``query_embed`` / ``query_feat``;
  decoder layers: ``cross_attn`` is ``nn.MultiheadAttention`` on both sides, HF ``self_attn.{q,k,v}_proj`` =
  chunks of our ``self_attn.in_proj_*``; ``cross_attn_layer_norm``/``self_attn_layer_norm``/
  ``final_layer_norm`` = ``cross_attn_norm``/``self_attn_norm``/``ffn_norm``; ``decoder.layernorm`` =
  ``post_norm``; ``mask_predictor.mask_embedder.{k}.0`` = ``mask_embed.{2k}``.
  HF masks are computed at mask-feature resolution and attention masks are resized to the next memory
  level, as in our spec. HF has no class head: its post-normed ``intermediate_hidden_states`` (Q, B, C)
  are passed through our ``cls_embed`` and compared with our ``pred_logits``.
- Link queries: HF's module only has learned queries, so for ``query_source="link"`` we call
  ``tm.decoder`` directly with ``inputs_embeds = querys2feat(Q)`` and ``query_position_embeddings = Q``,
  rebuilding the few input lines of ``Mask2FormerTransformerModule.forward`` in the test.

Weights: our modules are built, perturbed randomly (so that no parameter keeps a degenerate init) and
loaded strictly into the HF modules, so HF's own initialiser is not needed. Everything runs in float64.
"""

import re

import pytest
import torch

from dgss.heads import Mask2FormerHead, Mask2FormerHeadConfig, Mask2FormerTransformerDecoder

tf_m2f = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
from transformers import Mask2FormerConfig

IN_CH = [16, 24, 32, 40]
C, HEADS, ENC_LAYERS, DEC_LAYERS, QUERIES, K = 32, 4, 2, 3, 10, 5


def our_cfg(source: str) -> Mask2FormerHeadConfig:
    return Mask2FormerHeadConfig(
        num_classes=K,
        in_channels=IN_CH,
        feat_channels=C,
        out_channels=C,
        num_queries=QUERIES,
        num_encoder_layers=ENC_LAYERS,
        num_decoder_layers=DEC_LAYERS,
        num_heads=HEADS,
        num_points=4,
        encoder_ffn_dims=48,
        decoder_ffn_dims=64,
        query_source=source,
    )


def hf_cfg() -> Mask2FormerConfig:
    return Mask2FormerConfig(
        num_labels=K,
        feature_size=C,
        mask_feature_size=C,
        hidden_dim=C,
        encoder_layers=ENC_LAYERS,
        decoder_layers=DEC_LAYERS + 1,
        num_attention_heads=HEADS,
        encoder_feedforward_dim=48,
        dim_feedforward=64,
        num_queries=QUERIES,
        feature_strides=[4, 8, 16, 32],
        common_stride=4,
        dropout=0.0,
        pre_norm=False,
    )


def build_head(source: str, seed: int = 0) -> Mask2FormerHead:
    torch.manual_seed(seed)
    head = Mask2FormerHead(our_cfg(source)).double().eval()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return head


def pixel_decoder_to_hf(sd: dict) -> dict:
    rules = [
        (r"^input_convs\.(\d+)\.conv\.", r"input_projections.\1.0."),
        (r"^input_convs\.(\d+)\.gn\.", r"input_projections.\1.1."),
        (r"^level_encoding\.weight$", "level_embed"),
        (r"\.norm1\.", ".self_attn_layer_norm."),
        (r"\.norm2\.", ".final_layer_norm."),
        (r"\.ffn\.fc(\d)\.", r".fc\1."),
        (r"^lateral_convs\.0\.conv\.", "adapter_1.0."),
        (r"^lateral_convs\.0\.gn\.", "adapter_1.1."),
        (r"^output_convs\.0\.conv\.", "layer_1.0."),
        (r"^output_convs\.0\.gn\.", "layer_1.1."),
        (r"^mask_feature\.", "mask_projection."),
    ]
    out = {}
    for k, v in sd.items():
        for pat, rep in rules:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


def transformer_to_hf(head: Mask2FormerHead, hf_tm) -> dict:
    sd = head.state_dict()
    out = {"level_embed.weight": sd["level_embed.weight"]}
    if "query_embed.weight" in sd:
        out["queries_embedder.weight"] = sd["query_embed.weight"]
        out["queries_features.weight"] = sd["query_feat.weight"]
    else:  # unused by the link path; keep HF's tensors
        out["queries_embedder.weight"] = hf_tm.queries_embedder.weight.detach().clone()
        out["queries_features.weight"] = hf_tm.queries_features.weight.detach().clone()
    for i in range(DEC_LAYERS):
        p, h = f"transformer_decoder.layers.{i}.", f"decoder.layers.{i}."
        for n in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
            out[h + "cross_attn." + n] = sd[p + "cross_attn." + n]
        for wb in ("weight", "bias"):
            q, k, v = sd[p + f"self_attn.in_proj_{wb}"].chunk(3)
            out[h + f"self_attn.q_proj.{wb}"], out[h + f"self_attn.k_proj.{wb}"] = q, k
            out[h + f"self_attn.v_proj.{wb}"] = v
            out[h + f"self_attn.out_proj.{wb}"] = sd[p + f"self_attn.out_proj.{wb}"]
            out[h + f"cross_attn_layer_norm.{wb}"] = sd[p + f"cross_attn_norm.{wb}"]
            out[h + f"self_attn_layer_norm.{wb}"] = sd[p + f"self_attn_norm.{wb}"]
            out[h + f"final_layer_norm.{wb}"] = sd[p + f"ffn_norm.{wb}"]
            out[h + f"fc1.{wb}"] = sd[p + f"ffn.fc1.{wb}"]
            out[h + f"fc2.{wb}"] = sd[p + f"ffn.fc2.{wb}"]
    for wb in ("weight", "bias"):
        out[f"decoder.layernorm.{wb}"] = sd[f"transformer_decoder.post_norm.{wb}"]
        for k in range(3):
            out[f"decoder.mask_predictor.mask_embedder.{k}.0.{wb}"] = sd[f"mask_embed.{2 * k}.{wb}"]
    return out


def hf_modules(head: Mask2FormerHead):
    """HF modules in the head's dtype, holding exactly the head's weights."""
    cfg = hf_cfg()
    dtype = head.level_embed.weight.dtype
    pd = tf_m2f.Mask2FormerPixelDecoder(cfg, feature_channels=IN_CH).to(dtype)
    tm = tf_m2f.Mask2FormerTransformerModule(in_features=C, config=cfg).to(dtype)
    pd.load_state_dict(pixel_decoder_to_hf(head.pixel_decoder.state_dict()), strict=True)
    tm.load_state_dict(transformer_to_hf(head, tm), strict=True)
    return pd.eval(), tm.eval()


def features(seed: int = 1, b: int = 2, h4: int = 24, w4: int = 32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, h4 // 2**i, w4 // 2**i, generator=g, dtype=torch.float64) for i, c in enumerate(IN_CH)]


def our_outputs(out: dict) -> list[dict]:
    return out["aux_outputs"] + [{"pred_logits": out["pred_logits"], "pred_masks": out["pred_masks"]}]


@torch.no_grad()
def test_pixel_decoder_matches_transformers():
    head = build_head("learned")
    pd, _ = hf_modules(head)
    x = features()
    mask_features, memories = head.pixel_decoder(x)
    ref = pd(x)
    torch.testing.assert_close(mask_features, ref.mask_features, rtol=1e-9, atol=1e-9)
    assert len(ref.multi_scale_features) == 3
    for ours, theirs in zip(memories, ref.multi_scale_features, strict=False):  # [o32, o16, o8]
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


@torch.no_grad()
def test_head_learned_queries_matches_transformers(monkeypatch):
    head = build_head("learned")
    pd, tm = hf_modules(head)
    x = features(seed=5)
    # record that the masked attention is non-trivial, including queries whose mask covers nothing
    stats = []
    orig = Mask2FormerTransformerDecoder.attention_mask

    def spy(mask_logits, size, num_heads):
        m = orig(mask_logits, size, num_heads)
        stats.append((m.float().mean().item(), bool(m.all(-1).any())))
        return m

    monkeypatch.setattr(Mask2FormerTransformerDecoder, "attention_mask", staticmethod(spy))
    out = our_outputs(head(x))
    assert len(stats) == DEC_LAYERS and all(0.0 < frac < 1.0 for frac, _ in stats)
    assert any(all_masked for _, all_masked in stats)
    ref_pd = pd(x)
    ref = tm(multi_scale_features=ref_pd.multi_scale_features, mask_features=ref_pd.mask_features)
    assert len(ref.masks_queries_logits) == len(out) == DEC_LAYERS + 1
    for ours, m, hs in zip(out, ref.masks_queries_logits, ref.intermediate_hidden_states, strict=False):
        torch.testing.assert_close(ours["pred_masks"], m, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(ours["pred_logits"], head.cls_embed(hs.transpose(0, 1)), rtol=1e-9, atol=1e-9)


@torch.no_grad()
def test_head_link_queries_matches_transformers_decoder():
    head = build_head("link")
    pd, tm = hf_modules(head)
    x = features(seed=3, b=2)
    query = torch.randn(QUERIES, C, dtype=torch.float64)
    out = our_outputs(head(x, query))

    ref_pd = pd(x)
    feats, pos, sizes = [], [], []
    for i, f in enumerate(ref_pd.multi_scale_features):  # lines of Mask2FormerTransformerModule.forward
        sizes.append(f.shape[-2:])
        pos.append(tm.position_embedder(f.shape, f.device, f.dtype, None).flatten(2).permute(2, 0, 1))
        feats.append((tm.input_projections[i](f).flatten(2) + tm.level_embed.weight[i][None, :, None]).permute(2, 0, 1))
    b = x[0].shape[0]
    q_pos = query[:, None].expand(-1, b, -1)  # (Q, B, C)
    q_feat = head.querys2feat(query)[:, None].expand(-1, b, -1)
    ref = tm.decoder(
        inputs_embeds=q_feat,
        multi_stage_positional_embeddings=pos,
        pixel_embeddings=ref_pd.mask_features,
        encoder_hidden_states=feats,
        query_position_embeddings=q_pos,
        feature_size_list=sizes,
        return_dict=True,
    )
    for ours, m, hs in zip(out, ref.masks_queries_logits, ref.intermediate_hidden_states, strict=False):
        torch.testing.assert_close(ours["pred_masks"], m, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(ours["pred_logits"], head.cls_embed(hs.transpose(0, 1)), rtol=1e-9, atol=1e-9)


@torch.no_grad()
def test_fp32_agreement():
    """Same comparison in float32: agreement to ~1e-5 relative (mask logits reach ~40)."""
    head = build_head("learned").float()
    pd, tm = hf_modules(head)
    x = [f.float() for f in features(seed=5)]
    out = our_outputs(head(x))
    ref_pd = pd(x)
    ref = tm(multi_scale_features=ref_pd.multi_scale_features, mask_features=ref_pd.mask_features)
    for ours, m in zip(out, ref.masks_queries_logits, strict=False):
        torch.testing.assert_close(ours["pred_masks"], m, rtol=1e-5, atol=1e-4)

"""Catalogue of planted mistakes for ``tools/mutation_check.py``.

Each :class:`Mutant` is one exact text edit: ``original`` (a line, part of a line, or a short block
that is moved) must occur exactly once in ``file``; it is replaced by ``replacement``. The check
refuses to run if any ``original`` is missing or ambiguous, so a refactor that touches a mutated line
makes the catalogue fail loudly instead of silently testing nothing.

``tests`` are the fast tests (files or node ids, run in this order with ``pytest -x``) expected to
catch the mutant. Never list slow tests here (overfit, DDP, CLI end-to-end runs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str  # relative to the repository root
    original: str  # must occur exactly once in the file
    replacement: str
    description: str
    tests: tuple[str, ...]

    @property
    def area(self) -> str:
        parts = self.file.split("/")
        return parts[2] if len(parts) > 3 else parts[-1].removesuffix(".py")


# ------------------------------------------------------------------------------------------ test sets
_C = "tests/models/test_catseg.py::"
_TC = "tests/models/test_catseg_text_disk_cache.py::"
FORMULAS = "tests/models/test_formulas.py"  # the lead's O(1)-scale formula tests
_F = FORMULAS + "::"
F_REIN = (
    _F + "test_rein_update_at_order_one",
    _F + "test_rein_full_rank_tokens_at_order_one",
    _F + "test_rein_query_link_interleaved_at_order_one",
)
F_DEPTHFORGE = (
    _F + "test_depthforge_every_fusion_mode_at_order_one",
    _F + "test_depthforge_attention_opt_off_at_order_one",
)
F_GEOTEXT = (
    _F + "test_geotext_text_context_fusion_and_alpha_mix_at_order_one",
    _F + "test_geotext_depth_fusion_none_and_logit_sum_at_order_one",
)
F_QUERY_LINK = (_F + "test_vireo_segmentor_query_link_uses_raw_tokens_at_order_one",)
F_AAG = (_F + "test_aag_level_fusion_at_order_one",)
F_CMPE = (_F + "test_cmpe_coarse_masks_and_prior_at_order_one",)
F_DOV = (_F + "test_dov_veh_logits_at_order_one",)
F_HEAD_ORDER = (_F + "test_vireo_head_order_aag_then_cmpe_on_refined_s4_then_prior_on_query_positions",)
F_SEMANTIC = (_F + "test_semantic_score_aggregation_at_order_one",)
F_TAPS = (_F + "test_segmentor_taps_after_adapter_scales_and_depth_map_at_order_one",)

_R = "tests/models/test_rein.py::"
REIN = (
    _R + "test_update_matches_formula",
    _R + "test_switches_change_what_they_say",
    _R + "test_query_link_is_interleaved_max_mean_last",
    _R + "test_prefix_tokens_untouched_and_every_block_updated",
)
_D = "tests/models/test_depthforge.py::"
DEPTHFORGE = (
    _D + "test_zero_depth_gives_exactly_rein",
    _D + "test_logit_sum_formula",
    _D + "test_narrow_shallow_depth_encoder_uses_projection_and_layer_map",
    _D + "test_segmentor_with_zero_depth_features_equals_rein_segmentor",
)
RESAMPLE = (_D + "test_depth_grid_resampling_hand_built",)
GATE = (_D + "test_gate_and_split_fusion",)
_V = "tests/models/test_vireo.py::"
GEOTEXT = (_V + "test_geotext_update_formula_at_initial_scale",)
CMPE = (_V + "test_cmpe_chunked_equals_unchunked",)
PRIOR = ("tests/losses/test_loss_formulas.py", _V + "test_prior_loss_ignores_255_and_excludes_background")
_S = "tests/models/test_segmentor.py::"
PYRAMID = (_S + "test_pyramid_strides",)
SLIDE = (
    "tests/models/test_sliding_window.py",
    _S + "test_window_grid_of_cityscapes",
    _S + "test_slide_equals_naive_loop_on_uneven_sizes",
    _S + "test_windows_not_divisible_by_patch_are_padded",
)
HEAD = (
    "tests/heads/test_m2f_head.py::test_semantic_inference_hand_computation",
    "tests/heads/test_m2f_vs_transformers.py",
)
MSDA = (
    "tests/heads/test_m2f_components.py::test_msda_equals_naive_loop",
    "tests/heads/test_m2f_components.py::test_msda_cores_equal_naive_loop",
    "tests/heads/test_m2f_vs_transformers.py",
)
LOSSES = (
    "tests/losses/test_loss_formulas.py",
    "tests/losses/test_m2f_criterion.py",
    "tests/losses/test_m2f_matcher.py",
    "tests/losses/test_m2f_loss_vs_transformers.py",
)
METRICS = ("tests/test_metric_formulas.py", "tests/test_metrics.py")
LABELS = ("tests/data/test_data_label_maps.py",)
COCO_STUFF = ("tests/data/test_coco_stuff.py",)
_T = "tests/data/test_data_transforms.py::"
TRANSFORMS = (
    "tests/data/test_transform_pairs.py",
    _T + "test_scales_and_sizes",
    _T + "test_label_integrity_on_real_images",
    _T + "test_image_and_label_transformed_together",
    _T + "test_small_and_odd_images",
)

_D3 = "tests/backbones/test_dinov3.py"
DINOV3_LOAD = (_D3,)
DINOV3_ENCODER = (
    _D3 + "::test_rope_periods_and_table_follow_the_formula",
    _D3 + "::test_block_loop_equals_timm_forward_features",
    _D3 + "::test_buffers_survive_moves_and_meta_materialisation",
    _D3 + "::test_parity_with_transformers_dinov3",
)
DINOV3_PREFIX = ("tests/models/test_dinov3_models.py::test_token_adapters_leave_the_five_prefix_tokens_alone",)

_SO = "tests/models/test_soma.py::"
SOMA_FORMULA = (_SO + "test_update_formula_at_order_one",)
SOMA_SELECT = (_SO + "test_minor_and_major_selection", _SO + "test_fused_qkv_is_three_separate_inits")
SOMA_STEP = (_SO + "test_one_training_step_moves_only_the_adapter",)
SOMA_CACHE = (_SO + "test_eval_cache_equals_w_plus_delta_and_is_invalidated",)
SOMA_REFERENCE_MODE = (_SO + "test_reference_mode_uses_a_random_linear_and_no_snapshot",)
_EM = "tests/engine/test_ema.py::"
EMA_FORMULA = (_EM + "test_ema_copies_before_begin_then_follows_the_formula_at_order_one",)
EMA_RESUME = (_EM + "test_resume_with_ema_is_exact_and_saved_weights_are_the_ema",)
EVAL_PROTOCOL = (_EM + "test_soma_protocol_sets_the_cityscapes_test_box",)
WD_SCHEDULE = (
    _EM + "test_weight_decay_cosine_published_values",
    _EM + "test_weight_decay_schedule_at_order_one_through_the_scheduler",
)

M = Mutant
MUTANTS: tuple[Mutant, ...] = (
    # ================================================================ adapters/rein.py
    M(
        "rein-no-discard",
        "src/dgss/adapters/rein.py",
        "return weights[..., 1:] @ self.mlp_token2feat(tokens[1:])",
        "return weights @ self.mlp_token2feat(tokens)",
        "REIN discard trick off: token 0 kept as a value",
        F_REIN + REIN,
    ),
    M(
        "rein-no-inner-residual",
        "src/dgss/adapters/rein.py",
        "return feats + self.scale * self.mlp_delta_f(agg + feats)",
        "return feats + self.scale * self.mlp_delta_f(agg)",
        "REIN inner residual (agg + F) dropped",
        F_REIN + REIN,
    ),
    M(
        "rein-softmax-over-patches",
        "src/dgss/adapters/rein.py",
        "return logits.softmax(dim=-1) if self.cfg.use_softmax else logits",
        "return logits.softmax(dim=1) if self.cfg.use_softmax else logits",
        "REIN token softmax over patches instead of tokens",
        F_REIN + REIN,
    ),
    M(
        "rein-qlink-mean-max",
        "src/dgss/adapters/rein.py",
        "[t.max(dim=0).values, t.mean(dim=0), t[-1]]",
        "[t.mean(dim=0), t.max(dim=0).values, t[-1]]",
        "query link pooling order [mean, max, last]",
        F_REIN + REIN,
    ),
    M(
        "rein-qlink-first-layer",
        "src/dgss/adapters/rein.py",
        "[t.max(dim=0).values, t.mean(dim=0), t[-1]]",
        "[t.max(dim=0).values, t.mean(dim=0), t[0]]",
        "query link 'last' pooled from the first layer",
        F_REIN + REIN,
    ),
    M(
        "rein-qlink-concatenated",
        "src/dgss/adapters/rein.py",
        "return merge(pooled.flatten(-2))",
        "return merge(pooled.transpose(-1, -2).flatten(-2))",
        "query link concatenated [max|mean|last], not interleaved",
        F_REIN + REIN,
    ),
    # ================================================================ adapters/depthforge.py
    M(
        "df-depth-logits-unscaled",
        "src/dgss/adapters/depthforge.py",
        "weights = self.token_weights(logits + self.attention_logits(z, t))",
        "weights = self.token_weights(logits + z @ t.t())",
        "DepthForge logit_sum: depth logits without 1/sqrt(C)",
        F_DEPTHFORGE + DEPTHFORGE,
    ),
    M(
        "df-learned-mix-no-sigmoid",
        "src/dgss/adapters/depthforge.py",
        "a = torch.sigmoid(self.fusion_weights[layer])",
        "a = self.fusion_weights[layer]",
        "DepthForge learned_mix: raw weight instead of sigmoid",
        F_DEPTHFORGE + DEPTHFORGE,
    ),
    # ================================================================ adapters/vireo.py (GeoText)
    M(
        "geo-alpha-on-depth",
        "src/dgss/adapters/vireo.py",
        "logits = a * logits + (1 - a) * dl",
        "logits = (1 - a) * logits + a * dl",
        "GeoText alpha applied to the depth logits",
        F_GEOTEXT + GEOTEXT,
    ),
    M(
        "geo-text-temperature",
        "src/dgss/adapters/vireo.py",
        "return tokens + (tokens @ text.t()).softmax(dim=-1) @ text",
        "return tokens + (tokens @ text.t() * tokens.shape[-1] ** -0.5).softmax(dim=-1) @ text",
        "GeoText text fusion with a 1/sqrt(C) temperature",
        F_GEOTEXT + GEOTEXT,
    ),
    M(
        "geo-text-softmax-over-tokens",
        "src/dgss/adapters/vireo.py",
        "return tokens + (tokens @ text.t()).softmax(dim=-1) @ text",
        "return tokens + (tokens @ text.t()).softmax(dim=0) @ text",
        "GeoText text fusion softmax over tokens, not classes",
        F_GEOTEXT + GEOTEXT,
    ),
    M(
        "geo-text-context-unnormalised",
        "src/dgss/adapters/vireo.py",
        "t = F.normalize(F.normalize(encoder_table, dim=-1).mean(dim=1), dim=-1)",
        "t = F.normalize(encoder_table, dim=-1).mean(dim=1)",
        "GeoText template mean not re-normalised",
        F_GEOTEXT + GEOTEXT,
    ),
    M(
        "geo-values-raw-tokens",
        "src/dgss/adapters/vireo.py",
        "return self.refine(feats, self.aggregate(weights, p))",
        "return self.refine(feats, self.aggregate(weights, tokens[layer]))",
        "GeoText values from raw tokens instead of P'",
        F_GEOTEXT + GEOTEXT,
    ),
    M(
        "geo-depth-logits-unscaled",
        "src/dgss/adapters/vireo.py",
        "dl = self.attention_logits(depth, p)",
        "dl = depth @ p.t()",
        "GeoText depth logits without 1/sqrt(C)",
        F_GEOTEXT + GEOTEXT,
    ),
    # ================================================================ heads/refine.py (AAG, level fusion)
    M(
        "aag-gate-order",
        "src/dgss/heads/refine.py",
        "        x = x * self.channel_attention(x)\n        return x * torch.sigmoid(self.spatial_attention(x))",
        "        x = x * torch.sigmoid(self.spatial_attention(x))\n        return x * self.channel_attention(x)",
        "AAG spatial gate before channel gate",
        F_AAG + GATE,
    ),
    M(
        "fusion-slice-reversed",
        "src/dgss/heads/refine.py",
        "wi = w[:, i * C : (i + 1) * C]",
        "wi = w[:, (3 - i) * C : (4 - i) * C]",
        "split fusion: weight slices in reverse level order",
        F_AAG + GATE,
    ),
    M(
        "fusion-no-residual",
        "src/dgss/heads/refine.py",
        "return [feats[0] + self.fuse(feats)] + list(feats[1:])",
        "return [self.fuse(feats)] + list(feats[1:])",
        "level fusion replaces s4 instead of adding to it",
        F_AAG + GATE,
    ),
    M(
        "fusion-align-corners",
        "src/dgss/heads/refine.py",
        'F.interpolate(f, size=size, mode="bilinear", align_corners=False)',
        'F.interpolate(f, size=size, mode="bilinear", align_corners=True)',
        "level fusion resize with align_corners=True",
        F_AAG + GATE,
    ),
    # ================================================================ heads/cmpe.py
    M(
        "cmpe-softmax-logits",
        "src/dgss/heads/cmpe.py",
        's = torch.sigmoid(m) if self.spatial_weights == "softmax_sigmoid" else m',
        "s = m",
        "CMPE spatial weights softmax(M), not softmax(sigmoid(M))",
        F_CMPE + CMPE,
    ),
    M(
        "cmpe-assign-over-queries",
        "src/dgss/heads/cmpe.py",
        "a = (e @ self.query_proto.t()).softmax(dim=1)",
        "a = (e @ self.query_proto.t()).softmax(dim=-1)",
        "CMPE class assignment normalised over queries",
        F_CMPE + CMPE,
    ),
    M(
        "cmpe-drops-first-row",
        "src/dgss/heads/cmpe.py",
        "e = F.normalize(head_table[:-1], dim=-1)",
        "e = F.normalize(head_table[1:], dim=-1)",
        "CMPE drops the first text row, keeps background",
        F_CMPE + CMPE,
    ),
    M(
        "cmpe-spatial-over-classes",
        "src/dgss/heads/cmpe.py",
        "w = s.flatten(2).softmax(dim=-1)",
        "w = s.flatten(2).softmax(dim=1)",
        "CMPE spatial softmax over classes, not positions",
        F_CMPE + CMPE,
    ),
    # ================================================================ heads/classifiers.py (DOV-VEH)
    M(
        "dov-no-template-normalise",
        "src/dgss/heads/classifiers.py",
        "t = F.normalize(F.normalize(e, dim=-1).mean(dim=1), dim=-1)",
        "t = F.normalize(e.mean(dim=1), dim=-1)",
        "DOV-VEH text rows not normalised per template",
        F_DOV,
    ),
    M(
        "dov-no-row-normalise",
        "src/dgss/heads/classifiers.py",
        "t = F.normalize(F.normalize(e, dim=-1).mean(dim=1), dim=-1)",
        "t = F.normalize(e, dim=-1).mean(dim=1)",
        "DOV-VEH template mean not re-normalised",
        F_DOV,
    ),
    # ================================================================ heads/vireo_head.py
    M(
        "vh-prior-before-aag",
        "src/dgss/heads/vireo_head.py",
        "coarse, prior = self.prior(feats[0], head_table)",
        "coarse, prior = self.prior(features[0], head_table)",
        "CMPE prior computed on s4 before the AAG fusion",
        F_HEAD_ORDER,
    ),
    M(
        "vh-prior-replaces-link",
        "src/dgss/heads/vireo_head.py",
        "query_embed.unsqueeze(0) + prior",
        "prior",
        "CMPE prior replaces the linked queries",
        F_HEAD_ORDER,
    ),
    M(
        "vh-decode-unrefined",
        "src/dgss/heads/vireo_head.py",
        "out = self.decode(feats, query_embed)",
        "out = self.decode(features, query_embed)",
        "pixel decoder fed the unrefined pyramid",
        F_HEAD_ORDER,
    ),
    # ================================================================ heads/mask2former.py
    M(
        "m2f-softmax-without-noobject",
        "src/dgss/heads/mask2former.py",
        "probs = pred_logits.softmax(dim=-1)[..., :-1]",
        "probs = pred_logits[..., :-1].softmax(dim=-1)",
        "semantic inference: softmax over K, no-object dropped first",
        F_SEMANTIC + HEAD,
    ),
    M(
        "m2f-query-content-pos-swapped",
        "src/dgss/heads/mask2former.py",
        "return self.querys2feat(query_embed), query_embed",
        "return query_embed, self.querys2feat(query_embed)",
        "link queries: content and position swapped",
        HEAD,
    ),
    # ================================================================ heads/pixel_decoder.py
    M(
        "pd-level-order",
        "src/dgss/heads/pixel_decoder.py",
        "x = features[-1 - e]",
        "x = features[e + 1]",
        "pixel decoder encoder levels fine-to-coarse",
        HEAD,
    ),
    M(
        "pd-ref-points-corner",
        "src/dgss/heads/pixel_decoder.py",
        "ys = (torch.arange(h, dtype=dtype, device=device) + 0.5) / h",
        "ys = torch.arange(h, dtype=dtype, device=device) / h",
        "reference points at cell corners (y)",
        HEAD,
    ),
    # ================================================================ heads/transformer_decoder.py
    M(
        "td-mask-inverted",
        "src/dgss/heads/transformer_decoder.py",
        "m = m.flatten(2).sigmoid() < 0.5",
        "m = m.flatten(2).sigmoid() > 0.5",
        "masked attention mask inverted",
        HEAD,
    ),
    M(
        "td-self-attn-value-pos",
        "src/dgss/heads/transformer_decoder.py",
        "out = self.self_attn(qp, qp, q, need_weights=False)[0]",
        "out = self.self_attn(qp, qp, qp, need_weights=False)[0]",
        "self-attention values carry the query position",
        HEAD,
    ),
    # ================================================================ heads/ms_deform_attn.py
    M(
        "msda-core-last-level-only",
        "src/dgss/heads/ms_deform_attn.py",
        "out = y if out is None else out + y",
        "out = y",
        "deformable-attention sampling keeps only the last level",
        MSDA,
    ),
    M(
        "msda-core-points-weights-swapped",
        "src/dgss/heads/ms_deform_attn.py",
        "weights = attention_weights.to(value.dtype).permute(0, 2, 3, 4, 1)",
        "weights = attention_weights.to(value.dtype).flip(-1).permute(0, 2, 3, 4, 1)",
        "deformable-attention weights applied to the wrong points",
        MSDA,
    ),
    M(
        "msda-normalizer-hw",
        "src/dgss/heads/ms_deform_attn.py",
        "[[w, h] for h, w in spatial_shapes]",
        "[[h, w] for h, w in spatial_shapes]",
        "MSDeformAttn offsets normalised by (h, w) not (w, h)",
        MSDA,
    ),
    # ================================================================ losses/mask2former_loss.py
    M(
        "loss-dice-no-smoothing",
        "src/dgss/losses/mask2former_loss.py",
        "dice = 1 - (2 * (probs * labels).sum(1) + eps) / (probs.sum(1) + labels.sum(1) + eps)",
        "dice = 1 - 2 * (probs * labels).sum(1) / (probs.sum(1) + labels.sum(1))",
        "dice loss without the +1 smoothing",
        LOSSES,
    ),
    M(
        "loss-noobject-weight-index",
        "src/dgss/losses/mask2former_loss.py",
        "weights[-1] = self.cfg.no_object_weight",
        "weights[0] = self.cfg.no_object_weight",
        "no-object weight put on class 0",
        LOSSES,
    ),
    M(
        "loss-noobject-target",
        "src/dgss/losses/mask2former_loss.py",
        "target = torch.full((b, q), self.num_classes, dtype=torch.int64, device=device)",
        "target = torch.full((b, q), self.num_classes - 1, dtype=torch.int64, device=device)",
        "unmatched queries target class K-1, not no-object K",
        LOSSES,
    ),
    M(
        "loss-fullres-nearest",
        "src/dgss/losses/mask2former_loss.py",
        'logits = F.interpolate(src, size=tgt.shape[-2:], mode="bilinear", align_corners=False).flatten(1)',
        'logits = F.interpolate(src, size=tgt.shape[-2:], mode="nearest").flatten(1)',
        "full-res mask loss upsamples with nearest",
        LOSSES,
    ),
    # ================================================================ losses/matcher.py
    M(
        "matcher-class-cost-sign",
        "src/dgss/losses/matcher.py",
        "c_cls = -logits.softmax(-1)[:, labels.to(logits.device)]",
        "c_cls = logits.softmax(-1)[:, labels.to(logits.device)]",
        "matcher class cost +p instead of -p",
        LOSSES,
    ),
    M(
        "matcher-bce-pos-neg-swapped",
        "src/dgss/losses/matcher.py",
        "return (pos @ targets.T + neg @ (1 - targets).T) / p",
        "return (pos @ (1 - targets).T + neg @ targets.T) / p",
        "matcher BCE cost with positive/negative swapped",
        LOSSES,
    ),
    M(
        "matcher-dice-no-factor-2",
        "src/dgss/losses/matcher.py",
        "numerator = 2 * probs @ targets.T",
        "numerator = probs @ targets.T",
        "matcher dice cost without the factor 2",
        LOSSES,
    ),
    # ================================================================ losses/point_sampling.py
    M(
        "ps-align-corners",
        "src/dgss/losses/point_sampling.py",
        "def point_sample(input: Tensor, points: Tensor, align_corners: bool = False) -> Tensor:",
        "def point_sample(input: Tensor, points: Tensor, align_corners: bool = True) -> Tensor:",
        "point_sample with align_corners=True",
        LOSSES,
    ),
    M(
        "ps-uncertainty-sign",
        "src/dgss/losses/point_sampling.py",
        "return -logits.abs()",
        "return logits.abs()",
        "importance sampling prefers confident points",
        LOSSES,
    ),
    # ================================================================ losses/prior_loss.py
    M(
        "prior-ignore-as-background",
        "src/dgss/losses/prior_loss.py",
        "valid = lab != ignore_index",
        "valid = lab >= 0",
        "prior loss counts ignore pixels as background",
        PRIOR,
    ),
    M(
        "prior-out-of-vocab-off-by-one",
        "src/dgss/losses/prior_loss.py",
        "target[lab[valid] >= K] = 0",
        "target[lab[valid] > K] = 0",
        "prior loss: label K (background) gets class K-1",
        PRIOR,
    ),
    # ================================================================ metrics.py
    M(
        "metrics-union-no-minus-tp",
        "src/dgss/metrics.py",
        "union = cm.sum(0) + cm.sum(1) - tp",
        "union = cm.sum(0) + cm.sum(1)",
        "IoU denominator TP counted twice",
        METRICS,
    ),
    M(
        "metrics-ignore-by-prediction",
        "src/dgss/metrics.py",
        "keep = label != ignore_index",
        "keep = pred != ignore_index",
        "ignore mask taken from the prediction",
        METRICS,
    ),
    M(
        "metrics-cm-transposed",
        "src/dgss/metrics.py",
        "torch.bincount(label * num_classes + pred,",
        "torch.bincount(pred * num_classes + label,",
        "confusion matrix rows = prediction",
        METRICS,
    ),
    M(
        "metrics-absent-classes-zero",
        "src/dgss/metrics.py",
        'return float(iou[valid].mean()) if valid.any() else float("nan")',
        'return float(iou.nan_to_num(0.0).mean()) if valid.any() else float("nan")',
        "mIoU counts absent classes as 0",
        METRICS,
    ),
    M(
        "metrics-update-overwrites",
        "src/dgss/metrics.py",
        "self.matrices[domain] += cm",
        "self.matrices[domain] = cm",
        "domain matrix overwritten, not accumulated",
        METRICS,
    ),
    M(
        "metrics-mean-pixel-weighted",
        "src/dgss/metrics.py",
        'mean = sum(vals) / len(vals) if vals else float("nan")',
        "mean = sum(doms[d].miou * doms[d].pixels for d in over) / sum(doms[d].pixels for d in over) if vals "
        'else float("nan")',
        "mean over domains weighted by their pixel counts",
        METRICS,
    ),
    # ================================================================ data/label_maps.py
    M(
        "lm-cityscapes-id-off-by-one",
        "src/dgss/data/label_maps.py",
        "CITYSCAPES_ID_TO_TRAINID[_lab.id] = _lab.trainId",
        "CITYSCAPES_ID_TO_TRAINID[_lab.id + 1] = _lab.trainId",
        "Cityscapes labelId -> trainId shifted by one",
        LABELS,
    ),
    M(
        "lm-deliver-off-by-one",
        "src/dgss/data/label_maps.py",
        "_DELIVER_LUT[1:26] = np.arange(25, dtype=np.uint8)",
        "_DELIVER_LUT[0:25] = np.arange(25, dtype=np.uint8)",
        "DELIVER 0..24 -> 0..24 instead of 1..25 -> 0..24",
        LABELS,
    ),
    M(
        "lm-ade150-class0-lost",
        "src/dgss/data/label_maps.py",
        "out[out < 0] = IGNORE_INDEX",
        "out[out <= 0] = IGNORE_INDEX",
        "ADE-150 class 0 (wall) mapped to ignore",
        LABELS,
    ),
    M(
        "lm-mapillary-hyphen",
        "src/dgss/data/label_maps.py",
        'key = readable.lower().replace(" ", "").replace("-", "")',
        'key = readable.lower().replace(" ", "")',
        "Mapillary names keep '-' (Crosswalk - Plain lost)",
        LABELS,
    ),
    M(
        "lm-ade847-off-by-one",
        "src/dgss/data/label_maps.py",
        "lut[np.asarray(ADE847_FULL_IDS)] = np.arange(847, dtype=np.uint16)",
        "lut[np.asarray(ADE847_FULL_IDS)] = np.arange(1, 848, dtype=np.uint16)",
        "ADE-847 trainIds start at 1",
        LABELS,
    ),
    M(
        "lm-coco-stuff-unused-ids-kept",
        "src/dgss/data/label_maps.py",
        "COCO_STUFF_ID_TO_TRAINID[_COCO_STUFF_USED_IDS] = ",
        "COCO_STUFF_ID_TO_TRAINID[:171] = ",
        "COCO-Stuff raw ids 0..170 taken as classes (the 11 unused ids not skipped)",
        COCO_STUFF,
    ),
    M(
        "lm-coco-stuff-bad-ids-ignored",
        "src/dgss/data/label_maps.py",
        "bad = _bad_values(label, 181, (IGNORE_INDEX,))",
        "bad = _bad_values(label, 254, (IGNORE_INDEX,))",
        "COCO-Stuff values 182..254 silently become ignore instead of failing",
        COCO_STUFF,
    ),
    # ================================================================ data/transforms.py
    M(
        "tr-flip-image-only",
        "src/dgss/data/transforms.py",
        "label = F.horizontal_flip(tv_tensors.Mask(label)).as_subclass(torch.Tensor)",
        "label = label.as_subclass(torch.Tensor)",
        "train flip mirrors the image but not the label",
        TRANSFORMS,
    ),
    M(
        "tr-pad-label-zero",
        "src/dgss/data/transforms.py",
        "label = F.pad(tv_tensors.Mask(label), [0, 0, pw, ph], fill=ignore_index)",
        "label = F.pad(tv_tensors.Mask(label), [0, 0, pw, ph], fill=0)",
        "label padding with class 0 instead of ignore",
        TRANSFORMS,
    ),
    M(
        "tr-short-edge-truncates",
        "src/dgss/data/transforms.py",
        "return int(new_h + 0.5), int(new_w + 0.5)",
        "return int(new_h), int(new_w)",
        "short-edge resize truncates instead of rounding",
        TRANSFORMS,
    ),
    M(
        "tr-fit-size-max",
        "src/dgss/data/transforms.py",
        "scale = min(long_side / max(height, width), short_side / min(height, width))",
        "scale = max(long_side / max(height, width), short_side / min(height, width))",
        "keep-ratio test resize overflows the box (max)",
        TRANSFORMS,
    ),
    M(
        "tr-label-resize-wh",
        "src/dgss/data/transforms.py",
        "label = F.resize(tv_tensors.Mask(label), list(size), interpolation=InterpolationMode.NEAREST)",
        "label = F.resize(tv_tensors.Mask(label), list(size)[::-1], interpolation=InterpolationMode.NEAREST)",
        "label resized to (w, h) instead of (h, w)",
        TRANSFORMS,
    ),
    M(
        "tr-cat-max-ratio-boundary",
        "src/dgss/data/transforms.py",
        "float(counts.max()) / float(counts.sum()) < cat_max_ratio",
        "float(counts.max()) / float(counts.sum()) <= cat_max_ratio",
        "crop accepted when the largest class is exactly the ratio",
        TRANSFORMS,
    ),
    # ================================================================ models/segmentor.py
    M(
        "seg-taps-before-adapter",
        "src/dgss/models/segmentor.py",
        "            if after:\n"
        "                kw = dict(const)\n"
        "                if depth is not None:\n"
        '                    kw["depth"] = depth.get(i)\n'
        "                t = torch.cat([t[:, :P], ad.update(t[:, P:], i, tokens, **kw)], dim=1)\n"
        "            if i in self.cfg.taps:\n"
        "                taps.append(enc.tokens_to_map(t, state.grid))\n",
        "            if i in self.cfg.taps:\n"
        "                taps.append(enc.tokens_to_map(t, state.grid))\n"
        "            if after:\n"
        "                kw = dict(const)\n"
        "                if depth is not None:\n"
        '                    kw["depth"] = depth.get(i)\n'
        "                t = torch.cat([t[:, :P], ad.update(t[:, P:], i, tokens, **kw)], dim=1)\n",
        "pyramid taps read before the adapter update",
        F_TAPS + PYRAMID,
    ),
    M(
        "seg-query-link-fused",
        "src/dgss/models/segmentor.py",
        "            return self.adapter.query_embed()\n",
        "            return self.adapter.query_embed(self.adapter.fused_tokens(self.adapter.all_tokens(), "
        'self.encoder_constants()["text"]) if isinstance(self.adapter, GeoTextAdapter) else None)\n',
        "Vireo query link built from text-fused tokens",
        F_QUERY_LINK,
    ),
    M(
        "seg-prefix-updated",
        "src/dgss/models/segmentor.py",
        "t = torch.cat([t[:, :P], ad.update(t[:, P:], i, tokens, **kw)], dim=1)",
        "t = ad.update(t, i, tokens, **kw)",
        "adapter also updates the prefix (cls) tokens",
        F_TAPS + REIN,
    ),
    M(
        "seg-tap-scales-swapped",
        "src/dgss/models/segmentor.py",
        "TAP_SCALES = (4.0, 2.0, 1.0, 0.5)",
        "TAP_SCALES = (2.0, 4.0, 1.0, 0.5)",
        "tap scales of s4 and s8 swapped",
        F_TAPS + PYRAMID,
    ),
    M(
        "seg-depth-map-off-by-one",
        "src/dgss/models/segmentor.py",
        "return tuple(l * Ld // Lv for l in range(Lv))",
        "return tuple((l + 1) * Ld // Lv - 1 for l in range(Lv))",
        "proportional depth layer map takes the group's last block",
        F_TAPS + DEPTHFORGE,
    ),
    M(
        "seg-depth-previous-block",
        "src/dgss/models/segmentor.py",
        'kw["depth"] = depth.get(i)',
        'kw["depth"] = depth.get(max(i - 1, 0))',
        "adapter of block l gets the depth tokens of block l-1",
        F_TAPS + DEPTHFORGE,
    ),
    M(
        "seg-window-not-flush",
        "src/dgss/models/segmentor.py",
        "y1, x1 = max(y2 - wh, 0), max(x2 - ww, 0)",
        "y1, x1 = max(y1, 0), max(x1, 0)",
        "last sliding window not shifted flush with the border",
        SLIDE,
    ),
    M(
        "seg-window-rows-floor",
        "src/dgss/models/segmentor.py",
        "rows = max(H - wh + sh - 1, 0) // sh + 1",
        "rows = max(H - wh + sh - 1, 0) // sh",
        "one window row too few",
        SLIDE,
    ),
    M(
        "seg-slide-not-averaged",
        "src/dgss/models/segmentor.py",
        "return scores / counts",
        "return scores / counts.clamp(max=1)",
        "overlapping window scores summed, not averaged",
        SLIDE,
    ),
    M(
        "seg-pad-top-left",
        "src/dgss/models/segmentor.py",
        "x = F.pad(x, (0, pw, 0, ph))",
        "x = F.pad(x, (pw, 0, ph, 0))",
        "window padded top/left but cropped bottom/right",
        SLIDE,
    ),
    M(
        "seg-resample-align-corners",
        "src/dgss/models/segmentor.py",
        'm = F.interpolate(m, size=dst, mode="bilinear", align_corners=False)',
        'm = F.interpolate(m, size=dst, mode="bilinear", align_corners=True)',
        "depth token grid resampled with align_corners=True",
        RESAMPLE + DEPTHFORGE,
    ),
    M(
        "seg-slide-overwrite",
        "src/dgss/models/segmentor.py",
        "scores[b, :, y1:y2, x1:x2] += o",
        "scores[b, :, y1:y2, x1:x2] = o",
        "window scores overwrite instead of accumulate",
        SLIDE,
    ),
    M(
        "seg-window-cols-stride-h",
        "src/dgss/models/segmentor.py",
        "cols = max(W - ww + sw - 1, 0) // sw + 1",
        "cols = max(W - ww + sw - 1, 0) // sh + 1",
        "window columns counted with the vertical stride",
        SLIDE,
    ),
    # ================================================================ DINOv3 encoder (backbones/)
    M(
        "dinov3-hf-k-v-rows-swapped",
        "src/dgss/backbones/dinov3_layouts.py",
        '_QKV_ROWS = {"attention.q_proj.weight": 0, "attention.k_proj.weight": 1, "attention.v_proj.weight": 2}',
        '_QKV_ROWS = {"attention.q_proj.weight": 0, "attention.k_proj.weight": 2, "attention.v_proj.weight": 1}',
        "transformers DINOv3 layout: k and v rows of the fused qkv swapped",
        DINOV3_LOAD,
    ),
    M(
        "dinov3-hf-gate-up-swapped",
        "src/dgss/backbones/dinov3_layouts.py",
        '_HF_MLP_GATED = {"mlp.gate_proj": "mlp.fc1_g", "mlp.up_proj": "mlp.fc1_x", "mlp.down_proj": "mlp.fc2"}',
        '_HF_MLP_GATED = {"mlp.gate_proj": "mlp.fc1_x", "mlp.up_proj": "mlp.fc1_g", "mlp.down_proj": "mlp.fc2"}',
        "transformers DINOv3 SwiGLU: gate and up projections swapped",
        DINOV3_LOAD,
    ),
    M(
        "dinov3-hf-layerscale-swapped",
        "src/dgss/backbones/dinov3_layouts.py",
        '"layer_scale1.lambda1": "gamma_1",',
        '"layer_scale1.lambda1": "gamma_2",',
        "transformers DINOv3 layer scale 1 loaded into gamma_2",
        DINOV3_LOAD,
    ),
    M(
        "dinov3-meta-q-v-bias-swapped",
        "src/dgss/backbones/dinov3_layouts.py",
        'out[stem + "q_bias"], out[stem + "v_bias"] = q, vb',
        'out[stem + "q_bias"], out[stem + "v_bias"] = vb, q',
        "Meta DINOv3 layout: q and v thirds of qkv.bias swapped",
        DINOV3_LOAD,
    ),
    M(
        "dinov3-meta-k-bias-unchecked",
        "src/dgss/backbones/dinov3_layouts.py",
        "    if kb.any():",
        "    if False:",
        "Meta DINOv3 layout: a non-zero k bias is silently discarded",
        DINOV3_LOAD,
    ),
    M(
        "dinov3-nonzero-qv-into-plain-model",
        "src/dgss/backbones/dinov3_layouts.py",
        "nonzero = [k for k in given if sd[k].any()]",
        "nonzero = []",
        "non-zero q/v biases silently dropped for the -nobias variant",
        DINOV3_LOAD,
    ),
    M(
        "dinov3-family-not-checked",
        "src/dgss/backbones/weights.py",
        "    if found is None or found == fam:",
        "    if True:",
        "a DINOv3 file given to a DINOv2 encoder (and back) is not refused up front",
        DINOV3_LOAD,
    ),
    M(
        "dinov3-rope-periods-not-rounded",
        "src/dgss/backbones/vit_encoder.py",
        'return periods.to(torch.bfloat16).to(torch.float32) if rounding == "bf16" else periods',
        "return periods",
        "RoPE periods default not rounded through bf16 (Meta's values)",
        DINOV3_ENCODER,
    ),
    M(
        "dinov3-rope-period-exponent",
        "src/dgss/backbones/vit_encoder.py",
        "periods = temperature ** (2.0 * k / (head_dim // 2))",
        "periods = temperature ** (2.0 * k / head_dim)",
        "RoPE periods T^(2k/d) instead of T^(2k/(d/2))",
        DINOV3_ENCODER,
    ),
    M(
        "dinov3-registers-before-cls",
        "src/dgss/backbones/vit_encoder.py",
        "t = torch.cat([v.cls_token.expand(B, -1, -1), v.reg_token.expand(B, -1, -1), t], dim=1)",
        "t = torch.cat([v.reg_token.expand(B, -1, -1), v.cls_token.expand(B, -1, -1), t], dim=1)",
        "DINOv3 prefix order [registers, cls] instead of [cls, registers]",
        DINOV3_ENCODER,
    ),
    M(
        "dinov3-rope-cache-ignores-grid",
        "src/dgss/backbones/vit_encoder.py",
        "key = (grid, rope.periods.device, rope.periods.dtype)",
        "key = (rope.periods.device, rope.periods.dtype)",
        "RoPE table cached without its grid (another window size reuses it)",
        DINOV3_ENCODER,
    ),
    M(
        "dinov3-k-bias-not-reset",
        "src/dgss/backbones/vit_encoder.py",
        "                    blk.attn.k_bias.zero_()",
        "                    pass",
        "k-bias buffer left uninitialised after meta -> real materialisation",
        DINOV3_ENCODER,
    ),
    M(
        "seg-one-prefix-token",
        "src/dgss/models/segmentor.py",
        "        P = enc.num_prefix_tokens",
        "        P = 1",
        "token adapters update the DINOv3 registers (prefix hard-coded to cls only)",
        DINOV3_PREFIX,
    ),
    # ================================================================ SoMA (adapters/soma.py)
    M(
        "soma-major-components",
        "src/dgss/adapters/soma.py",
        "idx = slice(S.shape[0] - rank, None) if minor else slice(0, rank)",
        "idx = slice(0, rank) if minor else slice(0, rank)",
        "SoMA takes the largest singular triplets instead of the minor ones",
        SOMA_SELECT,
    ),
    M(
        "soma-no-sqrt-split",
        "src/dgss/adapters/soma.py",
        "root = (S[idx] / scaling).sqrt()",
        "root = S[idx] / scaling",
        "SoMA factors carry S instead of sqrt(S) each (B A = U S^2 Vh)",
        SOMA_SELECT,
    ),
    M(
        "soma-qkv-rows-interleaved",
        "src/dgss/adapters/soma.py",
        "w = weight[j * rows : (j + 1) * rows]",
        "w = weight[j::n]",
        "fused qkv split into interleaved rows instead of q, k, v blocks",
        SOMA_SELECT,
    ),
    M(
        "soma-delta-without-snapshot-term",
        "src/dgss/adapters/soma.py",
        "d = torch.matmul(B - B0, A) + torch.matmul(B0, A - A0)",
        "d = torch.matmul(B - B0, A)",
        "SoMA update drops B0 (A - A0)",
        SOMA_FORMULA,
    ),
    M(
        "soma-delta-unscaled",
        "src/dgss/adapters/soma.py",
        "return (scaling * d).reshape(-1, A.shape[-1])",
        "return d.reshape(-1, A.shape[-1])",
        "SoMA update without s = alpha / r",
        SOMA_FORMULA,
    ),
    M(
        "soma-bias-not-substituted",
        "src/dgss/adapters/soma.py",
        "                out.append((blk.get_submodule(path) if path else blk, attr, getattr(t, name)))",
        "                pass",
        "trainable bias copies never reach the block",
        SOMA_FORMULA + SOMA_STEP,
    ),
    M(
        "soma-stale-eval-cache",
        "src/dgss/adapters/soma.py",
        "if hit is None or hit[0] != key:",
        "if hit is None:",
        "eval cache ignores in-place changes of the factors (EMA swap, optimiser)",
        SOMA_CACHE,
    ),
    M(
        "soma-reference-mode-keeps-snapshot",
        "src/dgss/adapters/soma.py",
        "                    t.init_A.zero_()",
        "                    t.init_A.copy_(t.lora_A)",
        "init reference keeps A0 (the released code has W' = W + BA)",
        SOMA_REFERENCE_MODE,
    ),
    # ================================================================ EMA (engine/ema.py, engine/trainer.py)
    M(
        "ema-momentum-complement",
        "src/dgss/engine/ema.py",
        "self.shadow[n].lerp_(p.detach(), self.momentum)",
        "self.shadow[n].lerp_(p.detach(), 1.0 - self.momentum)",
        "EMA weights the new value by 1 - m",
        EMA_FORMULA,
    ),
    M(
        "ema-first-step-averages",
        "src/dgss/engine/ema.py",
        "        if self.steps == 0:",
        "        if self.steps < 0:",
        "the first averaged step averages instead of copying",
        EMA_FORMULA,
    ),
    M(
        "ema-begin-off-by-one",
        "src/dgss/engine/ema.py",
        "if finished < self.begin_iter:",
        "if finished <= self.begin_iter:",
        "EMA starts one iteration late",
        EMA_FORMULA,
    ),
    M(
        "ema-saves-raw-weights",
        "src/dgss/engine/trainer.py",
        "with self.ema.applied() if self.ema is not None else nullcontext():  # saved weights: the EMA",
        "with nullcontext():  # saved weights: the EMA",
        "checkpoints hold the raw weights instead of the EMA",
        EMA_RESUME,
    ),
    M(
        "ema-resume-keeps-ema-as-weights",
        "src/dgss/engine/ema.py",
        '            p.copy_(state["raw"][n].to(p.device, p.dtype))',
        "            pass",
        "resume trains on from the EMA instead of the raw weights",
        EMA_RESUME,
    ),
    # ================================================================ weight-decay schedule (engine/schedulers.py)
    M(
        "wd-zero-groups-always-annealed",
        "src/dgss/engine/schedulers.py",
        'if self.type == "constant" or (base == 0.0 and not self.include_zero_groups):',
        'if self.type == "constant":',
        "zero-decay groups annealed although include_zero_groups is off",
        WD_SCHEDULE,
    ),
    M(
        "wd-cosine-rising",
        "src/dgss/engine/schedulers.py",
        "return self.eta_min + (base - self.eta_min) * (1.0 + math.cos(math.pi * frac)) / 2.0",
        "return self.eta_min + (base - self.eta_min) * (1.0 - math.cos(math.pi * frac)) / 2.0",
        "weight-decay cosine runs from eta_min up to the base",
        WD_SCHEDULE,
    ),
    M(
        "wd-compounds-on-current-value",
        "src/dgss/engine/schedulers.py",
        'g["weight_decay"] = self.wd_schedule.wd_at(t, g["base_weight_decay"])',
        'g["weight_decay"] = self.wd_schedule.wd_at(t, g["weight_decay"])',
        "weight decay annealed from the last value instead of the group's base",
        WD_SCHEDULE,
    ),
    M(
        "eval-protocol-ignored",
        "src/dgss/engine/trainer.py",
        "box = v.resize or EVAL_PROTOCOLS[self.cfg.data.protocol].get(info.name)",
        "box = v.resize",
        "data.protocol soma does not change the test boxes",
        EVAL_PROTOCOL,
    ),
    # ================================================================ CAT-Seg (heads/catseg_aggregator.py, losses, models)
    M(
        "catseg-cost-text-unnormalised",
        "src/dgss/heads/catseg_aggregator.py",
        "    t = F.normalize(text, dim=-1)\n    return torch.einsum",
        "    t = text\n    return torch.einsum",
        "cost volume without normalising the text embeddings",
        (_C + "test_cost_volume_equals_einsum_of_separately_normalised_features",),
    ),
    M(
        "catseg-linear-attention-mean-keys",
        "src/dgss/heads/catseg_aggregator.py",
        'den = torch.einsum("nlhd,nhd->nlh", q, k.sum(dim=1)) + 1e-6',
        'den = torch.einsum("nlhd,nhd->nlh", q, k.mean(dim=1)) + 1e-6',
        "linear class attention normalised by the mean key instead of the sum",
        (_C + "test_linear_class_attention_formula_no_output_projection",),
    ),
    M(
        "catseg-class-residual-dropped",
        "src/dgss/heads/catseg_aggregator.py",
        "return x + z.reshape(B, T, C, H, W)",
        "return z.reshape(B, T, C, H, W)",
        "class aggregation without the X + up(Z'') residual",
        (_C + "test_class_layer_zero_weights_doubling_quirk_and_pool_switch",),
    ),
    M(
        "catseg-shift-mask-inverted",
        "src/dgss/heads/catseg_aggregator.py",
        "return torch.zeros(diff.shape).masked_fill(diff, -100.0)",
        "return torch.zeros(diff.shape).masked_fill(~diff, -100.0)",
        "shifted-window mask blocks the same region instead of the others",
        (_C + "test_shift_mask_pattern", _C + "test_shifted_block_equals_explicit_rolled_windows"),
    ),
    M(
        "catseg-swin-no-roll-back",
        "src/dgss/heads/catseg_aggregator.py",
        "            out = torch.roll(out, (s, s), dims=(1, 2))",
        "            out = out",
        "shifted window attention output not rolled back",
        (_C + "test_shifted_block_equals_explicit_rolled_windows",),
    ),
    M(
        "catseg-no-class-padding",
        "src/dgss/heads/catseg_aggregator.py",
        "if self.pad_len and T < self.pad_len:",
        "if False:",
        "class attention without the learned padding tokens",
        (_C + "test_padding_tokens_take_part_and_pruning_keeps_top_classes",),
    ),
    M(
        "catseg-prune-keeps-lowest",
        "src/dgss/heads/catseg_aggregator.py",
        "return score.topk(cap, dim=1, sorted=False).indices",
        "return score.topk(cap, dim=1, largest=False, sorted=False).indices",
        "pruning keeps the classes of lowest instead of highest max cosine",
        (_C + "test_padding_tokens_take_part_and_pruning_keeps_top_classes",),
    ),
    M(
        "catseg-dense-token-residual",
        "src/dgss/backbones/clip_blocks.py",
        'v = v + (x[:, :1] if residual == "cls" else x)',
        "v = v + x",
        "dense last block adds each token instead of the input cls token",
        (_C + "test_towers_equal_open_clip_and_dense_block_formula",),
    ),
    M(
        "catseg-bce-ignore-as-class-0",
        "src/dgss/losses/catseg_loss.py",
        "target.scatter_(1, idx[:, None], valid[:, None].to(logits.dtype))",
        "target.scatter_(1, idx[:, None], 1.0)",
        "ignore pixels become positives of class 0 instead of all-negative",
        (_C + "test_bce_counts_ignore_pixels_as_negatives_or_skips_them",),
    ),
    M(
        "catseg-bce-skip-mean-per-pixel",
        "src/dgss/losses/catseg_loss.py",
        "return (loss * w).sum() / (w.sum() * T).clamp_min(1)",
        "return (loss * w).sum() / w.sum().clamp_min(1)",
        "loss_ignore skip divides by pixels instead of pixels x classes",
        (_C + "test_bce_counts_ignore_pixels_as_negatives_or_skips_them",),
    ),
    M(
        "catseg-text-cache-ignores-weights",
        "src/dgss/models/catseg.py",
        "key = (self.vocab, self.text_version())",
        "key = (self.vocab,)",
        "text cache not keyed by the text tower's weights (stale after a step)",
        (_C + "test_text_cache_follows_vocabulary_and_weights",),
    ),
    M(
        "catseg-reference-no-overlap-count",
        "src/dgss/models/catseg.py",
        "folded = folded.reshape(1, k, S, S) / counts",
        "folded = folded.reshape(1, k, S, S)",
        "reference inference sums overlapping crops instead of averaging",
        (_C + "test_reference_inference_equals_explicit_four_crops_and_global_view",),
    ),
    M(
        "catseg-last-synonym",
        "src/dgss/models/catseg.py",
        'for p in parts[:1] if synonyms == "first" else parts:',
        'for p in parts[-1:] if synonyms == "first" else parts:',
        "prompts use the last synonym instead of the first",
        (_C + "test_prompts_use_the_first_synonym_and_keep_bare_commas",),
    ),
    M(
        "catseg-cosine-lr-rising",
        "src/dgss/engine/schedulers.py",
        "return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + math.cos(math.pi * frac)) / 2.0",
        "return self.eta_min + (self.base_lr - self.eta_min) * (1.0 - math.cos(math.pi * frac)) / 2.0",
        "cosine learning rate rises from 0 instead of falling to 0",
        ("tests/engine/test_catseg_trainer.py::test_cosine_schedule_runs_to_zero_without_warmup",),
    ),
    M(
        "catseg-position-grid-not-resized",
        "src/dgss/backbones/clip_dense.py",
        "if grid == (g, g):",
        "if True:",
        "ViT-B/16 position embeddings not resized to the 24x24 token grid",
        (_C + "test_position_grid_resized_bicubically_for_vit_b_layout",),
    ),
    M(
        "catseg-text-key-ignores-weights",
        "src/dgss/models/catseg.py",
        'return embedding_key("catseg", module_digest(self.clip_text), prompt, self.vocab)',
        'return embedding_key("catseg", "clip", prompt, self.vocab)',
        "the on-disk text-embedding key ignores the trained text tower: a stale table after training",
        (_TC + "test_key_follows_the_trained_text_weights_and_the_vocabulary",),
    ),
    M(
        "text-digest-without-values",
        "src/dgss/models/text_tables.py",
        "        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())\n",
        "",
        "the weight digest hashes names and shapes only: changed weights keep their key",
        (_TC + "test_key_follows_the_trained_text_weights_and_the_vocabulary",),
    ),
    M(
        "catseg-window-count-no-global-view",
        "src/dgss/models/catseg.py",
        "return ((S - c) // stride + 1) ** 2 + 1  # crops + the global view",
        "return ((S - c) // stride + 1) ** 2  # crops + the global view",
        "progress total misses the reference protocol's global view",
        ("tests/cli/test_catseg_predict_export.py::test_progress_counts_the_reference_views",),
    ),
    M(
        "export-leaves-training-mode",
        "src/dgss/engine/export.py",
        "_WindowScores(model).eval(),",
        "_WindowScores(model),",
        "the ONNX exporter restores the wrapper's training mode onto the model",
        ("tests/cli/test_catseg_predict_export.py::test_export_beyond_256_classes_prunes_inside_the_graph",),
    ),
    M(
        "ort-int8-8bit-weights",
        "src/dgss/engine/backends.py",
        "INT8_REDUCE_RANGE = True",
        "INT8_REDUCE_RANGE = False",
        "ONNX Runtime int8 with 8-bit weights: u8 x s8 pair sums saturate int16 on CPUs without VNNI",
        ("tests/perf/test_inference_backends.py::test_int8_within_tolerance",),
    ),
    M(
        "ort-int8-every-matmul",
        "src/dgss/engine/backends.py",
        "                    nodes_to_quantize=nodes,\n",
        "",
        "ONNX Runtime int8 quantises every MatMul / Gemm (the head too), not only the frozen Linear layers",
        ("tests/perf/test_inference_backends.py::test_int8_within_tolerance",),
    ),
)

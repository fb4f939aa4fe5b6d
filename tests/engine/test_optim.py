import torch

from dgss.config import OptimConfig
from dgss.engine.optim import assign_params, build_optimizer
from dgss.testing import tiny_segmentor


def _by_name(model, cfg=None):
    cfg = cfg or OptimConfig()
    return {a.name: a for a in assign_params(model, cfg.param_rules, cfg.norm_decay_mult)}


def test_no_decay_rules_rein():
    model = tiny_segmentor("rein")
    a = _by_name(model)
    for name in (
        "adapter.learnable_tokens_a",
        "adapter.learnable_tokens_b",
        "adapter.scale",
        "head.level_embed.weight",
        "head.transformer_decoder.post_norm.weight",
        "head.transformer_decoder.layers.0.ffn_norm.bias",
    ):
        assert a[name].decay_mult == 0.0 and a[name].lr_mult == 1.0, name
    # GroupNorm of the pixel-decoder convs: no "norm" in the name, caught as a normalisation layer
    assert a["head.pixel_decoder.input_convs.0.gn.weight"].decay_mult == 0.0
    assert a["head.pixel_decoder.input_convs.0.gn.weight"].rule == "norm-layer"
    # biases and the pixel decoder's level_encoding decay (data.md section 7)
    for name in (
        "adapter.mlp_delta_f.bias",
        "head.pixel_decoder.level_encoding.weight",
        "head.cls_embed.weight",
        "adapter.mlp_token2feat.weight",
    ):
        assert a[name].decay_mult == 1.0, name


def test_longest_key_wins_and_learned_queries_no_decay():
    model = tiny_segmentor("freeze")  # learned query_embed / query_feat
    names = {n for n, _ in model.named_parameters()}
    cfg = OptimConfig()
    a = _by_name(model, cfg)
    q = [n for n in names if "query_embed" in n]
    assert q and all(a[n].decay_mult == 0.0 for n in q)
    cfg.param_rules["query_embed.weight"] = type(cfg.param_rules["norm"])(lr_mult=0.5, decay_mult=1.0)
    a = _by_name(model, cfg)
    assert all(a[n].lr_mult == 0.5 and a[n].rule == "query_embed.weight" for n in q if n.endswith("query_embed.weight"))


def test_only_trainable_params_reach_the_optimizer():
    model = tiny_segmentor("depthforge")
    opt = build_optimizer(model, OptimConfig(lr=1e-3, weight_decay=0.05))
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in in_opt) == p.requires_grad, name
    frozen = [n for n, p in model.named_parameters() if n.startswith(("encoder.", "depth_encoder."))]
    assert frozen and not any(id(dict(model.named_parameters())[n]) in in_opt for n in frozen)
    decays = sorted({g["weight_decay"] for g in opt.param_groups})
    assert decays == [0.0, 0.05]
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999)

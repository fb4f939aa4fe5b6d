"""AdamW with the papers' parameter groups (``docs/data-protocol.md``).

Only parameters with ``requires_grad`` enter the optimiser. Per parameter (full dotted name):

1. the longest key of ``param_rules`` that is a substring of the name gives ``lr_mult``/``decay_mult``
   (defaults: ``norm`` -> no decay; ``query_embed``, ``level_embed``, ``learnable_tokens`` (REIN family,
   FADA's four token tensors), ``adapter.scale``, ``prompt_embeddings`` (VPT) -> no decay, lr ×1; LoRA
   factors, AdaptFormer projections, FADA's MLPs and Haar kernels decay like any weight);
2. otherwise parameters owned by a normalisation layer (LayerNorm, GroupNorm, BatchNorm, ...) get
   ``norm_decay_mult`` (0);
3. otherwise ``lr_mult = decay_mult = 1`` (biases included: they decay, as in the reference).

Parameters with equal multipliers share one group; each group records ``lr_mult``, ``decay_mult`` and a
``name`` (the rule that formed it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NORM_TYPES = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)


@dataclass(frozen=True)
class ParamAssignment:
    name: str
    rule: str  # matching key, "norm-layer" or "default"
    lr_mult: float
    decay_mult: float


def _norm_param_names(model: nn.Module) -> set[str]:
    names = set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, NORM_TYPES) or type(mod).__name__.lower().endswith(("norm", "norm2d", "rmsnorm")):
            for p_name, _ in mod.named_parameters(recurse=False):
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return names


def assign_params(model: nn.Module, param_rules: dict, norm_decay_mult: float = 0.0) -> list[ParamAssignment]:
    """The multipliers of every trainable parameter of ``model`` (see module docstring).

    ``param_rules`` maps a substring to an object/dict with ``lr_mult`` and ``decay_mult``.
    """
    rules = {k: (_get(v, "lr_mult"), _get(v, "decay_mult")) for k, v in param_rules.items()}
    keys = sorted(rules, key=lambda k: (-len(k), k))  # longest key first; ties alphabetical
    norm_names = _norm_param_names(model)
    out = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = next((k for k in keys if k in name), None)
        if key is not None:
            lr_mult, decay_mult = rules[key]
            out.append(ParamAssignment(name, key, lr_mult, decay_mult))
        elif name in norm_names:
            out.append(ParamAssignment(name, "norm-layer", 1.0, norm_decay_mult))
        else:
            out.append(ParamAssignment(name, "default", 1.0, 1.0))
    return out


def _get(v, key: str) -> float:
    return float(v[key] if isinstance(v, dict) else getattr(v, key))


def param_groups(
    model: nn.Module, *, lr: float, weight_decay: float, param_rules: dict, norm_decay_mult: float = 0.0
) -> list[dict]:
    """Optimiser groups of the trainable parameters, one per distinct (lr_mult, decay_mult)."""
    params = dict(model.named_parameters())
    groups: dict[tuple[float, float], dict] = {}
    for a in assign_params(model, param_rules, norm_decay_mult):
        g = groups.get((a.lr_mult, a.decay_mult))
        if g is None:
            g = groups[(a.lr_mult, a.decay_mult)] = {
                "params": [],
                "lr": lr * a.lr_mult,
                "weight_decay": weight_decay * a.decay_mult,
                "lr_mult": a.lr_mult,
                "decay_mult": a.decay_mult,
                "name": f"lr x{a.lr_mult:g}, decay x{a.decay_mult:g}",
            }
        g["params"].append(params[a.name])
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model`` from a :class:`dgss.config.OptimConfig`."""
    if cfg.type != "adamw":
        raise ValueError(f"unknown optimizer {cfg.type!r}")
    groups = param_groups(
        model,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        param_rules=cfg.param_rules,
        norm_decay_mult=cfg.norm_decay_mult,
    )
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def describe_groups(optimizer: torch.optim.Optimizer) -> list[str]:
    """One line per group: name, tensors, elements, lr, weight decay."""
    lines = []
    for g in optimizer.param_groups:
        n = sum(p.numel() for p in g["params"])
        lines.append(
            f"{g.get('name', 'group')}: {len(g['params'])} tensors, {n:,} parameters, "
            f"lr {g['lr']:.3g}, weight decay {g['weight_decay']:.3g}"
        )
    return lines

"""Typed run configuration of ``dgss train``: YAML file + ``key=value`` overrides -> :class:`RunConfig`.

A run config has these sections (every key is optional unless marked; defaults = the papers' common
recipe, ``docs/data-protocol.md``)::

    name: gta2citys_rein_dinov2-l        # (required) run name; default work dir work_dirs/<name>
    seed: 42
    model:    method, preset, num_classes, ablation, tiny, tiny_options, overrides, vocab
    weights:  encoder, depth_encoder, text_encoder, random, init_from
    data:     root, train {dataset, split, batch_size, crop_size, scales, ...}, val [ {dataset, split, ...} ],
              mean_over
    optim:    lr, weight_decay, betas, eps, param_rules {substring: {lr_mult, decay_mult}}, norm_decay_mult
    schedule: type (poly | warmup_poly | onecycle | constant), power, eta_min, warmup_iters, ...
    loss:     mode, points, num_points, class/mask/dice/no_object weights, prior_weight
    train:    max_iters, accumulate, grad_clip, amp, device, val_interval, ckpt_interval, keep_last, work_dir
    logging:  interval, tensorboard, jsonl, progress
    augment:  pasta {enabled, alpha, beta, k, ...}, advstyle {enabled, lr, ...}, gtr_ltr {enabled, style_dir,
              weights, ...}: the augmentation baselines (docs/methods/pasta.md, docs/methods/advstyle.md, docs/methods/gtr-ltr.md), all off by default

Loading is strict: an unknown key fails with its dotted name (and a close match when there is one), a
value of the wrong type fails with the key, the expected type and the value. ``key=value`` overrides use
dotted paths (list items by index: ``data.val.0.split=val``); values are parsed as YAML
(``optim.lr=2e-4``, ``data.val=[{dataset: cityscapes}]``, ``train.grad_clip=null``).
"""

from __future__ import annotations

from ..errors import ConfigError
from .model import segmentor_config_from
from .packaged import config_path, find_configs, packaged_config, packaged_configs
from .parse import apply_override, config_from_dict, load_config, parse_override
from .schema import (
    METHODS,
    SYNTHETIC,
    AdvStyleConfig,
    AugmentConfig,
    DataConfig,
    GtrLtrConfig,
    LoggingConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ParamRule,
    PastaConfig,
    RunConfig,
    ScheduleConfig,
    SyntheticConfig,
    TrainDataConfig,
    TrainLoopConfig,
    ValDataConfig,
    WeightsConfig,
    to_plain,
)
from .validate import validate

__all__ = [
    "METHODS",
    "SYNTHETIC",
    "AdvStyleConfig",
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "GtrLtrConfig",
    "LoggingConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ParamRule",
    "PastaConfig",
    "RunConfig",
    "ScheduleConfig",
    "SyntheticConfig",
    "TrainDataConfig",
    "TrainLoopConfig",
    "ValDataConfig",
    "WeightsConfig",
    "apply_override",
    "config_from_dict",
    "config_path",
    "find_configs",
    "load_config",
    "packaged_config",
    "packaged_configs",
    "parse_override",
    "segmentor_config_from",
    "to_plain",
    "validate",
]

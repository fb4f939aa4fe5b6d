"""Cross-field checks of a run config that types alone cannot express."""

from __future__ import annotations

import difflib

from .keys import key_error
from .model import segmentor_config_from
from .schema import SYNTHETIC, AugmentConfig, RunConfig


def validate(cfg: RunConfig) -> None:
    """Cross-field checks that types alone cannot express."""
    m = cfg.model
    if m.tiny:
        if m.preset is not None:
            raise key_error("model.preset", "give either a preset or tiny: true, not both")
    else:
        from ..models.presets import PRESETS

        if m.method == "catseg":
            from ..models.catseg import CATSEG_PRESETS

            if m.preset not in CATSEG_PRESETS:
                raise key_error("model.preset", f"method catseg needs one of {', '.join(CATSEG_PRESETS)}")
        elif m.preset is None:
            raise key_error(
                "model.preset", f"required for method {m.method!r} (e.g. {m.method}-dinov2-l), or set tiny: true"
            )
        elif m.preset not in PRESETS:
            close = difflib.get_close_matches(m.preset, list(PRESETS), n=3)
            raise key_error(
                "model.preset", f"unknown preset {m.preset!r}" + (f"; close: {', '.join(close)}" if close else "")
            )
        elif PRESETS[m.preset]["method"] != m.method:
            raise key_error(
                "model.method",
                f"{m.method!r} does not match preset {m.preset!r} (method {PRESETS[m.preset]['method']!r})",
            )
    if m.tiny_options and not m.tiny:
        raise key_error("model.tiny_options", "only used with tiny: true")
    if m.ablation is not None:
        from ..models.presets import DEPTHFORGE_ABLATIONS
        from ..models.vireo import VIREO_ABLATIONS

        rows = {"depthforge": DEPTHFORGE_ABLATIONS, "vireo": VIREO_ABLATIONS}.get(m.method)
        if rows is None:
            raise key_error("model.ablation", f"ablation rows exist for methods depthforge and vireo, not {m.method!r}")
        if m.ablation not in rows:
            raise key_error("model.ablation", f"unknown row {m.ablation!r}; known: {', '.join(rows)}")
    if m.num_classes < 1:
        raise key_error("model.num_classes", "must be >= 1")

    from ..data.datasets import DATASETS

    known_data = [*DATASETS, SYNTHETIC]
    t = cfg.data.train
    _check_dataset("data.train", t.dataset, t.conditions, t.synthetic, known_data)
    for key in ("batch_size", "crop_size", "max_long"):
        if getattr(t, key) < 1:
            raise key_error(f"data.train.{key}", "must be >= 1")
    if t.num_workers < 0:
        raise key_error("data.train.num_workers", "must be >= 0")
    if t.scales is not None and (not t.scales or min(t.scales) < 1):
        raise key_error("data.train.scales", "must be a non-empty list of positive sizes")
    if t.dataset != SYNTHETIC and t.dataset in DATASETS and DATASETS[t.dataset].num_classes not in (0, m.num_classes):
        raise key_error(
            "data.train.dataset",
            f"{t.dataset} has {DATASETS[t.dataset].num_classes} classes but model.num_classes is {m.num_classes}",
        )
    for i, v in enumerate(cfg.data.val):
        key = f"data.val.{i}"
        _check_dataset(key, v.dataset, v.conditions, v.synthetic, known_data)
        if v.resize is not None and (len(v.resize) != 2 or min(v.resize) < 1):
            raise key_error(f"{key}.resize", "must be [width, height]")
        if v.max_images is not None and v.max_images < 1:
            raise key_error(f"{key}.max_images", "must be >= 1")
        if v.dataset in DATASETS and DATASETS[v.dataset].num_classes not in (0, m.num_classes) and v.vocab is None:
            raise key_error(
                f"{key}.dataset",
                f"{v.dataset} has {DATASETS[v.dataset].num_classes} classes, the model "
                f"{m.num_classes}; only open-vocabulary methods (vocab:) can evaluate it",
            )
        if v.vocab is not None and m.method not in ("vireo", "catseg"):
            raise key_error(f"{key}.vocab", f"vocabularies need a text-classifier method (vireo), not {m.method!r}")

    o = cfg.optim
    if o.lr <= 0:
        raise key_error("optim.lr", "must be > 0")
    if o.weight_decay < 0 or o.eps <= 0 or not all(0 <= b < 1 for b in o.betas):
        raise key_error("optim", "needs weight_decay >= 0, eps > 0 and betas in [0, 1)")
    wd = o.weight_decay_schedule
    if wd.eta_min < 0:
        raise key_error("optim.weight_decay_schedule.eta_min", f"must be >= 0, got {wd.eta_min}")
    if wd.type == "constant" and (wd.eta_min or wd.include_zero_groups):
        raise key_error("optim.weight_decay_schedule", "eta_min and include_zero_groups are only used by type cosine")
    e = cfg.ema
    if not 0.0 < e.momentum <= 1.0:
        raise key_error("ema.momentum", f"must be in (0, 1], got {e.momentum}")
    if e.begin_iter < 0:
        raise key_error("ema.begin_iter", f"must be >= 0, got {e.begin_iter}")
    s = cfg.schedule
    if s.type == "warmup_poly" and s.warmup_iters < 1:
        raise key_error("schedule.warmup_iters", "warmup_poly needs warmup_iters >= 1")
    if s.type != "warmup_poly" and s.warmup_iters:
        raise key_error("schedule.warmup_iters", f"only used by type warmup_poly (type is {s.type!r})")
    if s.warmup_iters >= cfg.train.max_iters and s.type == "warmup_poly":
        raise key_error("schedule.warmup_iters", "must be smaller than train.max_iters")
    if not 0 < s.pct_start < 1 or s.div_factor <= 0 or s.final_div_factor <= 0:
        raise key_error("schedule", "needs 0 < pct_start < 1 and positive div factors")
    lo = cfg.loss
    if lo.num_points < 1:
        raise key_error("loss.num_points", "must be >= 1")
    if lo.prior_weight is not None and m.method != "vireo":
        raise key_error("loss.prior_weight", f"the CMPE prior loss belongs to vireo, not {m.method!r}")
    tr = cfg.train
    for key in ("max_iters", "accumulate", "keep_last"):
        if getattr(tr, key) < 1:
            raise key_error(f"train.{key}", "must be >= 1")
    for key in ("val_interval", "ckpt_interval"):
        if getattr(tr, key) < 0:
            raise key_error(f"train.{key}", "must be >= 0 (0 = never)")
    if tr.precision == "fp64" and tr.amp != "none":
        raise key_error("train.amp", "autocast cannot be combined with precision fp64")
    if tr.grad_clip is not None and tr.grad_clip <= 0:
        raise key_error("train.grad_clip", "must be > 0 or null")
    if not (tr.device in ("auto", "cpu", "cuda") or tr.device.startswith("cuda:")):
        raise key_error("train.device", f"expected auto, cpu, cuda or cuda:N, got {tr.device!r}")
    if cfg.logging.interval < 1:
        raise key_error("logging.interval", "must be >= 1")
    if cfg.data.mean_over is not None and not cfg.data.mean_over:
        raise key_error("data.mean_over", "must list at least one domain (or be null)")
    _validate_augment(cfg.augment)
    seg = segmentor_config_from(m, lo)  # model overrides / tiny options: unknown keys and bad values fail here
    if lo.prior_weight is not None and seg.prior_loss_weight == 0.0:
        raise key_error("loss.prior_weight", f"model {seg.name!r} has no CMPE prior (ablation row without it)")


def _validate_augment(a: AugmentConfig) -> None:
    """Ranges of the augmentation baselines (files of GTR-LTR are checked when the data pipeline is built)."""
    probs = {
        "augment.pasta.prob": a.pasta.prob,
        "augment.advstyle.prob": a.advstyle.prob,
        "augment.gtr_ltr.global_prob": a.gtr_ltr.global_prob,
        "augment.gtr_ltr.local_prob": a.gtr_ltr.local_prob,
    }
    for key, p in probs.items():
        if not 0.0 <= p <= 1.0:
            raise key_error(key, f"must be in [0, 1], got {p}")
    pa = a.pasta
    if pa.alpha < 0 or pa.beta < 0:
        raise key_error("augment.pasta", f"alpha and beta must be >= 0, got alpha={pa.alpha}, beta={pa.beta}")
    if pa.k <= 0:
        raise key_error("augment.pasta.k", f"must be > 0, got {pa.k}")
    if a.advstyle.lr <= 0:
        raise key_error("augment.advstyle.lr", f"must be > 0 (the ascent step size), got {a.advstyle.lr}")
    gl = a.gtr_ltr
    if gl.enabled:
        for key in ("style_dir", "weights"):
            if not getattr(gl, key):
                what = (
                    "a folder of style (texture/painting) images"
                    if key == "style_dir"
                    else "a style-transfer network file (torch.export .pt2 or TorchScript)"
                )
                raise key_error(
                    f"augment.gtr_ltr.{key}",
                    f"required when gtr_ltr is enabled: {what} that you supply "
                    "(GTR-LTR cannot be reproduced from public sources)",
                )
    if gl.global_prob + gl.local_prob > 1.0 + 1e-9:
        raise key_error(
            "augment.gtr_ltr", f"global_prob + local_prob must be <= 1, got {gl.global_prob + gl.local_prob}"
        )
    if gl.num_regions < 1 or gl.style_size < 1:
        raise key_error("augment.gtr_ltr", "num_regions and style_size must be >= 1")
    lo, hi = gl.region_scale
    if not 0 < lo <= hi <= 1:
        raise key_error(
            "augment.gtr_ltr.region_scale", f"must satisfy 0 < min <= max <= 1, got {list(gl.region_scale)}"
        )


def _check_dataset(key: str, name: str, conditions, synthetic, known: list[str]) -> None:
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        raise key_error(
            f"{key}.dataset",
            f"unknown dataset {name!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; known: {', '.join(known)}",
        )
    if synthetic is not None and name != SYNTHETIC:
        raise key_error(f"{key}.synthetic", "only used with dataset: synthetic")
    if conditions:
        from ..data.datasets import DATASETS

        info = DATASETS.get(name)
        bad = [c for c in conditions if info is None or c not in info.conditions]
        if bad:
            raise key_error(
                f"{key}.conditions",
                f"unknown condition(s) {bad} for {name}"
                + (f"; known: {', '.join(info.conditions)}" if info and info.conditions else ""),
            )

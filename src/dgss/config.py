"""Typed run configuration of ``dgss train``: YAML file + ``key=value`` overrides -> :class:`RunConfig`.

A run config has these sections (every key is optional unless marked; defaults = the papers' common
recipe, ``data.md`` §7)::

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
              weights, ...}: the augmentation baselines (baselines.md §5-7), all off by default

Loading is strict: an unknown key fails with its dotted name (and a close match when there is one), a
value of the wrong type fails with the key, the expected type and the value. ``key=value`` overrides use
dotted paths (list items by index: ``data.val.0.split=val``); values are parsed as YAML
(``optim.lr=2e-4``, ``data.val=[{dataset: cityscapes}]``, ``train.grad_clip=null``).
"""
from __future__ import annotations
from .errors import DgssError

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

METHODS = ("rein", "freeze", "full", "depthforge", "vireo", "lora", "adaptformer", "vpt", "fada")
SYNTHETIC = "synthetic"


class ConfigError(DgssError, ValueError):
    """A run config that cannot be used; the message names the offending key."""


# ================================================================================================ schema
@dataclass
class ModelConfig:
    """Which segmentor to build.

    ``preset``: a name of ``dgss.models.presets.PRESETS`` (``rein-dinov2-l``, ``depthforge-dinov2-l``, ...);
    ``tiny: true`` builds ``dgss.testing.tiny_segmentor_config(method, **tiny_options)`` instead (tests, demos);
    ``ablation``: a DepthForge row of ``DEPTHFORGE_ABLATIONS`` (``rein``, ``drd``, ``da-ao``, ``full``, ...);
    ``overrides``: nested ``SegmentorConfig`` fields applied last (e.g. ``{adapter: {rank: null}}``,
    ``{encoder: {img_size: 1024}, crop_size: 1024, slide_stride: 683}``).
    """

    method: Literal["rein", "freeze", "full", "depthforge", "vireo", "lora", "adaptformer", "vpt", "fada"] = "rein"
    preset: str | None = None
    num_classes: int = 19
    ablation: str | None = None
    tiny: bool = False
    tiny_options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    vocab: str | None = None          # training vocabulary of text-classifier methods (Vireo: cityscapes)


@dataclass
class WeightsConfig:
    """Frozen-encoder weights: a local file or ``hf-hub:org/repo[/file]``; None = the zoo's default source.

    ``random: true`` keeps random frozen weights on purpose (tiny/demo runs only; the run says so).
    ``init_from``: a dgss checkpoint whose trained (adapter + head) weights initialise the run.
    """

    encoder: str | None = None
    depth_encoder: str | None = None
    text_encoder: str | None = None   # Vireo's CLIP text tower
    random: bool = False
    init_from: str | None = None


@dataclass
class SyntheticConfig:
    """In-memory procedural dataset (``dataset: synthetic``): coloured class regions, some ignore pixels."""

    num_images: int = 16
    height: int = 64
    width: int = 64
    num_classes: int | None = None    # classes drawn (first N of the model's); default min(model's, 8)
    seed: int = 0
    domain: str = SYNTHETIC


@dataclass
class TrainDataConfig:
    """Source dataset and the training pipeline (``data.md`` §5). ``batch_size`` is per process."""

    dataset: str = "gta5"
    split: str = "all"
    conditions: list[str] | None = None
    root: str | None = None           # default: <data.root>/<the dataset's folder>
    batch_size: int = 4
    num_workers: int = 4
    crop_size: int = 512
    scales: list[int] | None = None   # short-edge choices; default int(crop_size * 0.1 * x), x = 5..20
    max_long: int = 2048
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    synthetic: SyntheticConfig | None = None


@dataclass
class ValDataConfig:
    """One evaluation target (its domains are reported separately: ACDC conditions, DELIVER conditions)."""

    dataset: str = "cityscapes"
    split: str = "val"
    conditions: list[str] | None = None
    root: str | None = None
    vocab: str | None = None          # evaluation vocabulary (open-vocabulary targets, Vireo)
    max_images: int | None = None     # evaluate an evenly spaced subset (quick periodic validation)
    resize: list[int] | None = None   # test box [w, h]; default: the protocol's resize of the dataset
    keep_ratio: bool = True
    synthetic: SyntheticConfig | None = None


@dataclass
class DataConfig:
    root: str = "data"
    train: TrainDataConfig = field(default_factory=TrainDataConfig)
    val: list[ValDataConfig] = field(default_factory=list)
    mean_over: list[str] | None = None  # domain tags averaged into val/mean_mIoU (default: all)


@dataclass
class ParamRule:
    lr_mult: float = 1.0
    decay_mult: float = 1.0


def _default_param_rules() -> dict[str, ParamRule]:
    # data.md §7: substring rules on the full parameter name, the longest matching key wins.
    # The reference's "reins.scale" / "depthforge.scale" / "vireo.scale" is "adapter.scale" in dgss
    # (FADA: "learnable_tokens" covers its four token tensors). VPT prompts: no decay, as REIN tokens.
    embed = ParamRule(lr_mult=1.0, decay_mult=0.0)
    return {"norm": ParamRule(decay_mult=0.0), "query_embed": embed, "level_embed": embed,
            "learnable_tokens": embed, "adapter.scale": embed, "prompt_embeddings": embed}


@dataclass
class OptimConfig:
    """AdamW; parameters whose name contains a ``param_rules`` key get its multipliers (longest key
    wins); parameters of normalisation layers not matched by a key get ``norm_decay_mult``."""

    type: Literal["adamw"] = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    param_rules: dict[str, ParamRule] = field(default_factory=_default_param_rules)
    norm_decay_mult: float = 0.0


@dataclass
class ScheduleConfig:
    """Per-iteration learning rate (``data.md`` §7).

    ``poly``: lr·(1 − t/T)^power (+ eta_min); ``warmup_poly``: linear factor warmup_start_factor -> 1 over
    ``warmup_iters``, then poly over the rest; ``onecycle``: lr/div_factor -> lr (cosine) over the first
    ``pct_start``·T, then cosine to lr/div_factor/final_div_factor; ``constant``.
    """

    type: Literal["poly", "warmup_poly", "onecycle", "constant"] = "poly"
    power: float = 0.9
    eta_min: float = 0.0
    warmup_iters: int = 0
    warmup_start_factor: float = 1e-6
    pct_start: float = 0.1
    div_factor: float = 10.0
    final_div_factor: float = 10.0


@dataclass
class LossConfig:
    """Mask2Former criterion settings. ``points: fixed`` uses the same sample points for every image and
    mask (deterministic and independent of how a batch is split; used by the DDP equivalence test).

    ``mode`` and ``prior_weight`` default to what the model's method row specifies (Vireo full / +DOV-VEH
    / +CMPE: ``full_res_query_mean``; every other row, REIN and DepthForge: ``stock``). Set, they switch
    the model config's ``loss_mode`` / ``text.cmpe_loss_weight``, the one place the trainer reads them
    from, so the checkpoint records the loss that ran."""

    mode: Literal["stock", "full_res_query_mean"] | None = None
    points: Literal["random", "fixed"] = "random"
    num_points: int = 12544
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    prior_weight: float | None = None  # Vireo CMPE prior BCE weight (row default 0.1); not used by REIN/DepthForge


@dataclass
class TrainLoopConfig:
    max_iters: int = 40000
    accumulate: int = 1               # micro-batches per optimiser step
    grad_clip: float | None = None    # max global L2 norm of the trainable gradients
    amp: Literal["none", "bf16"] = "none"   # bf16 autocast on GPU (CPU runs stay fp32)
    precision: Literal["fp32", "fp64"] = "fp32"   # fp64: whole model in float64 (numerical-equivalence tests)
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    val_interval: int = 10000         # 0 = never (except the end when val_at_end)
    val_at_end: bool = True
    ckpt_interval: int = 4000
    keep_last: int = 3
    work_dir: str | None = None       # default work_dirs/<name>
    ddp_find_unused: bool | None = None   # None: only for method 'full' (encoder params without a gradient)
    deterministic: bool = False       # torch.use_deterministic_algorithms (GPU runs; slower)


@dataclass
class LoggingConfig:
    interval: int = 50
    tensorboard: bool = True
    jsonl: bool = True
    progress: bool = True


@dataclass
class PastaConfig:
    """PASTA (``baselines.md`` §5): per source image, before any geometric transform, the FFT amplitude is
    multiplied by ε ~ N(1, σ²) per channel and frequency, σ = (alpha·ρ/ρ_max)^k + beta (``mode: const``:
    σ = beta). ρ is the reference's frequency grid (with its off-by-one); ``exact_frequency_grid: true``
    uses the true |fftfreq| radius. ``prob``: fraction of images augmented (reference: 1)."""

    enabled: bool = False
    alpha: float = 3.0
    beta: float = 0.25
    k: float = 2.0
    mode: Literal["prop", "const"] = "prop"
    prob: float = 1.0
    exact_frequency_grid: bool = False


@dataclass
class AdvStyleConfig:
    """AdvStyle (``baselines.md`` §6): one gradient-ascent step of rate ``lr`` on the per-image channel
    mean/std of the batch (``stats_on``: the normalised network input or the raw 0..255 image), then
    training on the doubled batch [x, x_adv]. ``prob``: fraction of micro-batches that get the step.
    ``lr`` = 1.0 is our choice (the paper's value is not known)."""

    enabled: bool = False
    lr: float = 1.0
    stats_on: Literal["normalized", "raw"] = "normalized"
    prob: float = 1.0


@dataclass
class GtrLtrConfig:
    """GTR-LTR interface (``baselines.md`` §7): NOT reproducible from public sources. The user supplies a
    folder of style images (``style_dir``) and a style-transfer network (``weights``: a ``torch.export``
    ``.pt2`` or TorchScript file, ``net(content, style) -> stylised``, images (1, 3, H, W) in [0, 1]).
    Per image: with ``global_prob`` the whole image is stylised (GTR), else with ``local_prob`` only
    ``num_regions`` random rectangles are (LTR). The CGL consistency loss is not implemented."""

    enabled: bool = False
    style_dir: str | None = None
    weights: str | None = None
    global_prob: float = 0.5
    local_prob: float = 0.5
    num_regions: int = 3
    region_scale: tuple[float, float] = (0.1, 0.5)   # rectangle side as a fraction of the image side
    style_size: int = 512                            # short edge of the style image fed to the network


@dataclass
class AugmentConfig:
    """Augmentation baselines (0 trainable parameters), usable with every method; all off by default.
    PASTA and GTR-LTR act in the data pipeline (GTR-LTR first), AdvStyle in the training step."""

    pasta: PastaConfig = field(default_factory=PastaConfig)
    advstyle: AdvStyleConfig = field(default_factory=AdvStyleConfig)
    gtr_ltr: GtrLtrConfig = field(default_factory=GtrLtrConfig)


@dataclass
class RunConfig:
    name: str
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def work_dir(self) -> Path:
        return Path(self.train.work_dir) if self.train.work_dir else Path("work_dirs") / self.name


# ================================================================================================ typed loading
def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples -> dicts/lists of plain YAML/JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _show(value: Any) -> str:
    text = repr(value)
    return (text[:60] + "...") if len(text) > 63 else text


def _unknown_key(key: str, path: str, known: list[str]) -> ConfigError:
    full = f"{path}.{key}" if path else key
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{(path + '.') if path else ''}{close[0]}'?)" if close else ""
    where = f"'{path}'" if path else "the top level"
    return ConfigError(f"unknown config key '{full}'{hint}; known keys in {where}: {', '.join(known)}")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (dicts -> dataclasses, lists -> tuples)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"config key '{path}' may not be null (expected {_describe(tp)})")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, path)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"config key '{path}': expected {_describe(tp)}, got {_show(value)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise ConfigError(f"config key '{path}': expected one of {', '.join(repr(a) for a in allowed)}, "
                          f"got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping of {tp.__name__} fields, got {_show(value)}")
        return _build_dataclass(tp, value, path)
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}': expected {_describe(tp)}, got {_show(value)}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key '{path}': expected {_describe(tp)}, got {_show(value)}")
            return tuple(_convert(v, a, f"{path}.{i}") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{path}.{i}") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping, got {_show(value)}")
        ktp, vtp = typing.get_args(tp) or (str, Any)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"config key '{path}': keys must be strings, got {_show(k)}")
            out[k] = _convert(v, vtp, f"{path}.{k}")
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema uses only the types above
        raise TypeError(f"unsupported annotation {tp!r} at {path}")
    raise ConfigError(f"config key '{path}': expected {_describe(tp)}, got {_show(value)} "
                      f"({type(value).__name__})")


def _build_dataclass(cls: type, values: dict, path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key(str(key), path, list(fields))
        kwargs[key] = _convert(value, hints[key], f"{path}.{key}" if path else key)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config key '{path + '.' if path else ''}{name}' is required")
    return cls(**kwargs)


# ================================================================================================ overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=2e-4"`` -> (["optim", "lr"], 2e-4); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not of the form dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({e})") from None
    return key.split("."), value


def apply_override(data: dict, parts: list[str], value: Any) -> None:
    """Set ``data[parts[0]][parts[1]]... = value``; numeric parts index lists; missing mappings are created
    (unknown keys are reported by validation with their full dotted name)."""
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[:i + 1])
        if isinstance(node, list):
            node = _list_item(node, part, where)
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override '{'.'.join(parts)}': '{'.'.join(parts[:i])}' is not a mapping")
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        idx = _index(last, ".".join(parts))
        if idx == len(node):
            node.append(value)
        else:
            _list_item(node, last, ".".join(parts))
            node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override '{'.'.join(parts)}': '{'.'.join(parts[:-1])}' is not a mapping")


def _index(part: str, where: str) -> int:
    if not part.lstrip("-").isdigit():
        raise ConfigError(f"override '{where}': '{part}' must be a list index")
    return int(part)


def _list_item(node: list, part: str, where: str) -> Any:
    idx = _index(part, where)
    if not -len(node) <= idx < len(node):
        raise ConfigError(f"override '{where}': index {idx} out of range (list of {len(node)})")
    return node[idx]


# ================================================================================================ entry points
def config_from_dict(data: dict, overrides: list[str] | None = None) -> RunConfig:
    """Validate a plain dict (+ overrides) into a :class:`RunConfig`."""
    if not isinstance(data, dict):
        raise ConfigError(f"a run config must be a mapping at the top level, got {type(data).__name__}")
    data = copy.deepcopy(data)
    for ov in overrides or []:
        apply_override(data, *parse_override(ov))
    cfg = _build_dataclass(RunConfig, data, "")
    from .data.folder import apply_folder_classes
    apply_folder_classes(cfg)   # folder datasets: num_classes / Vireo vocabulary from their classes.yaml
    validate(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply ``key=value`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    try:
        return config_from_dict(data or {}, overrides)
    except ConfigError as e:
        raise type(e)(f"{path}: {e}") from None


# ================================================================================================ validation
def _err(key: str, msg: str) -> ConfigError:
    return ConfigError(f"config key '{key}': {msg}")


def validate(cfg: RunConfig) -> None:
    """Cross-field checks that types alone cannot express."""
    m = cfg.model
    if m.tiny:
        if m.preset is not None:
            raise _err("model.preset", "give either a preset or tiny: true, not both")
    else:
        from .models.presets import PRESETS
        if m.preset is None:
            raise _err("model.preset", f"required for method {m.method!r} (e.g. {m.method}-dinov2-l), "
                                       "or set tiny: true")
        if m.preset not in PRESETS:
            close = difflib.get_close_matches(m.preset, list(PRESETS), n=3)
            raise _err("model.preset", f"unknown preset {m.preset!r}"
                                       + (f"; close: {', '.join(close)}" if close else ""))
        if PRESETS[m.preset]["method"] != m.method:
            raise _err("model.method", f"{m.method!r} does not match preset {m.preset!r} "
                                       f"(method {PRESETS[m.preset]['method']!r})")
    if m.tiny_options and not m.tiny:
        raise _err("model.tiny_options", "only used with tiny: true")
    if m.ablation is not None:
        from .models.presets import DEPTHFORGE_ABLATIONS
        from .models.vireo import VIREO_ABLATIONS
        rows = {"depthforge": DEPTHFORGE_ABLATIONS, "vireo": VIREO_ABLATIONS}.get(m.method)
        if rows is None:
            raise _err("model.ablation", f"ablation rows exist for methods depthforge and vireo, not {m.method!r}")
        if m.ablation not in rows:
            raise _err("model.ablation", f"unknown row {m.ablation!r}; known: {', '.join(rows)}")
    if m.num_classes < 1:
        raise _err("model.num_classes", "must be >= 1")

    from .data.datasets import DATASETS
    known_data = [*DATASETS, SYNTHETIC]
    t = cfg.data.train
    _check_dataset("data.train", t.dataset, t.conditions, t.synthetic, known_data)
    for key in ("batch_size", "crop_size", "max_long"):
        if getattr(t, key) < 1:
            raise _err(f"data.train.{key}", "must be >= 1")
    if t.num_workers < 0:
        raise _err("data.train.num_workers", "must be >= 0")
    if t.scales is not None and (not t.scales or min(t.scales) < 1):
        raise _err("data.train.scales", "must be a non-empty list of positive sizes")
    if t.dataset != SYNTHETIC and t.dataset in DATASETS and DATASETS[t.dataset].num_classes not in (0, m.num_classes):
        raise _err("data.train.dataset", f"{t.dataset} has {DATASETS[t.dataset].num_classes} classes but "
                                         f"model.num_classes is {m.num_classes}")
    for i, v in enumerate(cfg.data.val):
        key = f"data.val.{i}"
        _check_dataset(key, v.dataset, v.conditions, v.synthetic, known_data)
        if v.resize is not None and (len(v.resize) != 2 or min(v.resize) < 1):
            raise _err(f"{key}.resize", "must be [width, height]")
        if v.max_images is not None and v.max_images < 1:
            raise _err(f"{key}.max_images", "must be >= 1")
        if v.dataset in DATASETS and DATASETS[v.dataset].num_classes not in (0, m.num_classes) and v.vocab is None:
            raise _err(f"{key}.dataset", f"{v.dataset} has {DATASETS[v.dataset].num_classes} classes, the model "
                                         f"{m.num_classes}; only open-vocabulary methods (vocab:) can evaluate it")
        if v.vocab is not None and m.method != "vireo":
            raise _err(f"{key}.vocab", f"vocabularies need a text-classifier method (vireo), not {m.method!r}")

    o = cfg.optim
    if o.lr <= 0:
        raise _err("optim.lr", "must be > 0")
    if o.weight_decay < 0 or o.eps <= 0 or not all(0 <= b < 1 for b in o.betas):
        raise _err("optim", "needs weight_decay >= 0, eps > 0 and betas in [0, 1)")
    s = cfg.schedule
    if s.type == "warmup_poly" and s.warmup_iters < 1:
        raise _err("schedule.warmup_iters", "warmup_poly needs warmup_iters >= 1")
    if s.type != "warmup_poly" and s.warmup_iters:
        raise _err("schedule.warmup_iters", f"only used by type warmup_poly (type is {s.type!r})")
    if s.warmup_iters >= cfg.train.max_iters and s.type == "warmup_poly":
        raise _err("schedule.warmup_iters", "must be smaller than train.max_iters")
    if not 0 < s.pct_start < 1 or s.div_factor <= 0 or s.final_div_factor <= 0:
        raise _err("schedule", "needs 0 < pct_start < 1 and positive div factors")
    lo = cfg.loss
    if lo.num_points < 1:
        raise _err("loss.num_points", "must be >= 1")
    if lo.prior_weight is not None and m.method != "vireo":
        raise _err("loss.prior_weight", f"the CMPE prior loss belongs to vireo, not {m.method!r}")
    tr = cfg.train
    for key in ("max_iters", "accumulate", "keep_last"):
        if getattr(tr, key) < 1:
            raise _err(f"train.{key}", "must be >= 1")
    for key in ("val_interval", "ckpt_interval"):
        if getattr(tr, key) < 0:
            raise _err(f"train.{key}", "must be >= 0 (0 = never)")
    if tr.precision == "fp64" and tr.amp != "none":
        raise _err("train.amp", "autocast cannot be combined with precision fp64")
    if tr.grad_clip is not None and tr.grad_clip <= 0:
        raise _err("train.grad_clip", "must be > 0 or null")
    if not (tr.device in ("auto", "cpu", "cuda") or tr.device.startswith("cuda:")):
        raise _err("train.device", f"expected auto, cpu, cuda or cuda:N, got {tr.device!r}")
    if cfg.logging.interval < 1:
        raise _err("logging.interval", "must be >= 1")
    if cfg.data.mean_over is not None and not cfg.data.mean_over:
        raise _err("data.mean_over", "must list at least one domain (or be null)")
    _validate_augment(cfg.augment)
    seg = segmentor_config_from(m, lo)  # model overrides / tiny options: unknown keys and bad values fail here
    if lo.prior_weight is not None and seg.prior_loss_weight == 0.0:
        raise _err("loss.prior_weight", f"model {seg.name!r} has no CMPE prior (ablation row without it)")


def _validate_augment(a: AugmentConfig) -> None:
    """Ranges of the augmentation baselines (files of GTR-LTR are checked when the data pipeline is built)."""
    probs = {"augment.pasta.prob": a.pasta.prob, "augment.advstyle.prob": a.advstyle.prob,
             "augment.gtr_ltr.global_prob": a.gtr_ltr.global_prob, "augment.gtr_ltr.local_prob": a.gtr_ltr.local_prob}
    for key, p in probs.items():
        if not 0.0 <= p <= 1.0:
            raise _err(key, f"must be in [0, 1], got {p}")
    pa = a.pasta
    if pa.alpha < 0 or pa.beta < 0:
        raise _err("augment.pasta", f"alpha and beta must be >= 0, got alpha={pa.alpha}, beta={pa.beta}")
    if pa.k <= 0:
        raise _err("augment.pasta.k", f"must be > 0, got {pa.k}")
    if a.advstyle.lr <= 0:
        raise _err("augment.advstyle.lr", f"must be > 0 (the ascent step size), got {a.advstyle.lr}")
    gl = a.gtr_ltr
    if gl.enabled:
        for key in ("style_dir", "weights"):
            if not getattr(gl, key):
                what = ("a folder of style (texture/painting) images" if key == "style_dir" else
                        "a style-transfer network file (torch.export .pt2 or TorchScript)")
                raise _err(f"augment.gtr_ltr.{key}", f"required when gtr_ltr is enabled: {what} that you supply "
                                                     "(GTR-LTR cannot be reproduced from public sources)")
    if gl.global_prob + gl.local_prob > 1.0 + 1e-9:
        raise _err("augment.gtr_ltr", f"global_prob + local_prob must be <= 1, got {gl.global_prob + gl.local_prob}")
    if gl.num_regions < 1 or gl.style_size < 1:
        raise _err("augment.gtr_ltr", "num_regions and style_size must be >= 1")
    lo, hi = gl.region_scale
    if not 0 < lo <= hi <= 1:
        raise _err("augment.gtr_ltr.region_scale", f"must satisfy 0 < min <= max <= 1, got {list(gl.region_scale)}")


def _check_dataset(key: str, name: str, conditions, synthetic, known: list[str]) -> None:
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        raise _err(f"{key}.dataset", f"unknown dataset {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                   + f"; known: {', '.join(known)}")
    if synthetic is not None and name != SYNTHETIC:
        raise _err(f"{key}.synthetic", "only used with dataset: synthetic")
    if conditions:
        from .data.datasets import DATASETS
        info = DATASETS.get(name)
        bad = [c for c in conditions if info is None or c not in info.conditions]
        if bad:
            raise _err(f"{key}.conditions", f"unknown condition(s) {bad} for {name}"
                       + (f"; known: {', '.join(info.conditions)}" if info and info.conditions else ""))


# ================================================================================================ model
def _merge_overrides(base: dict, overrides: dict, path: str) -> dict:
    out = dict(base)
    for k, v in overrides.items():
        key = f"{path}.{k}"
        if k not in base:
            raise _unknown_key(k, path, list(base))
        if isinstance(v, dict) and isinstance(base[k], dict):
            out[k] = _merge_overrides(base[k], v, key)
        elif isinstance(v, dict) and base[k] is None:
            raise _err(key, "cannot override fields of a component this model does not have")
        else:
            out[k] = v
    return out


def segmentor_config_from(model: ModelConfig, loss: LossConfig | None = None):
    """The :class:`~dgss.models.segmentor.SegmentorConfig` a model section describes; an explicit
    ``loss.mode`` / ``loss.prior_weight`` is written into it (the model config is the one place the
    training loss is read from)."""
    from .backbones.zoo import ENCODERS
    from .models.presets import DEPTHFORGE_ABLATIONS, PRESETS, depthforge_config, preset_config
    from .models.segmentor import SegmentorConfig
    if model.tiny:
        from .testing import tiny_segmentor_config
        kw = dict(model.tiny_options)
        if model.ablation is not None:
            kw["ablation"] = model.ablation
        try:
            cfg = tiny_segmentor_config(model.method, num_classes=model.num_classes, **kw)
        except TypeError as e:
            raise _err("model.tiny_options", str(e)) from None
        if cfg.text is not None and cfg.text.classifier == "text" and model.vocab is not None:
            from .data.vocab import load_vocabulary   # the training vocabulary, recorded in checkpoints
            names = load_vocabulary(model.vocab).names
            cfg = dataclasses.replace(cfg, class_names=names, text=dataclasses.replace(cfg.text, vocab=names))
    elif model.method == "vireo":
        from .data.vocab import load_vocabulary
        from .models.vireo import vireo_config
        p = PRESETS[model.preset]
        cfg = vireo_config(ENCODERS[p["encoder"]], ENCODERS[p["depth"]],
                           vocab=load_vocabulary(model.vocab or "cityscapes"), ablation=model.ablation or "full",
                           name=model.preset + (f"-{model.ablation}" if model.ablation else ""))
    elif model.method == "depthforge" and model.ablation is not None:
        p = PRESETS[model.preset]
        cfg = depthforge_config(ENCODERS[p["encoder"]], ENCODERS[p["depth"]], num_classes=model.num_classes,
                                name=f"{model.preset}-{model.ablation}", **DEPTHFORGE_ABLATIONS[model.ablation])
    else:
        cfg = preset_config(model.preset, num_classes=model.num_classes)
    if model.overrides:
        merged = _merge_overrides(cfg.to_dict(), model.overrides, "model.overrides")
        try:
            cfg = SegmentorConfig.from_dict(merged)
        except (TypeError, ValueError) as e:
            raise _err("model.overrides", str(e)) from None
    if loss is not None and loss.mode is not None:
        cfg = dataclasses.replace(cfg, loss_mode=loss.mode)
    if loss is not None and loss.prior_weight is not None and cfg.text is not None:
        cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, cmpe_loss_weight=loss.prior_weight))
    return cfg

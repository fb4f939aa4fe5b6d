"""The typed sections of a run config (:class:`RunConfig` and its parts); see :mod:`dgss.config`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples -> dicts/lists of plain YAML/JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


METHODS = ("rein", "freeze", "full", "depthforge", "vireo", "lora", "adaptformer", "vpt", "fada", "soma")
SYNTHETIC = "synthetic"
# Named evaluation protocols: per-dataset test boxes [w, h] that replace the default protocol's (docs/data-protocol.md
# resizes, "dg"). "soma": SoMA's evaluation (Cityscapes val at full resolution and Mapillary val fitted
# into 2048x1024, docs/methods/soma.md); every other dataset as "dg".
EVAL_PROTOCOLS: dict[str, dict[str, tuple[int, int]]] = {
    "dg": {},
    "soma": {"cityscapes": (2048, 1024), "mapillary": (2048, 1024)},
}


@dataclass
class ModelConfig:
    """Which segmentor to build.

    ``preset``: a name of ``dgss.models.presets.PRESETS`` (``rein-dinov2-l``, ``depthforge-dinov2-l``, ...);
    ``tiny: true`` builds ``dgss.models.tiny.tiny_segmentor_config(method, **tiny_options)`` instead (tests, demos);
    ``ablation``: a DepthForge row of ``DEPTHFORGE_ABLATIONS`` (``rein``, ``drd``, ``da-ao``, ``full``, ...);
    ``overrides``: nested ``SegmentorConfig`` fields applied last (e.g. ``{adapter: {rank: null}}``,
    ``{encoder: {img_size: 1024}, crop_size: 1024, slide_stride: 683}``).
    """

    method: Literal[
        "rein", "freeze", "full", "depthforge", "vireo", "lora", "adaptformer", "vpt", "fada", "soma", "catseg"
    ] = "rein"
    preset: str | None = None
    num_classes: int = 19
    ablation: str | None = None
    tiny: bool = False
    tiny_options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    vocab: str | None = None  # training vocabulary of text-classifier methods (Vireo: cityscapes)


@dataclass
class WeightsConfig:
    """Frozen-encoder weights: a local file or ``hf-hub:org/repo[/file]``; None = the zoo's default source.

    ``random: true`` keeps random frozen weights on purpose (tiny/demo runs only; the run says so).
    ``init_from``: a dgss checkpoint whose trained (adapter + head) weights initialise the run.
    """

    encoder: str | None = None
    depth_encoder: str | None = None
    text_encoder: str | None = None  # Vireo's CLIP text tower
    random: bool = False
    init_from: str | None = None


@dataclass
class SyntheticConfig:
    """In-memory procedural dataset (``dataset: synthetic``): coloured class regions, some ignore pixels."""

    num_images: int = 16
    height: int = 64
    width: int = 64
    num_classes: int | None = None  # classes drawn (first N of the model's); default min(model's, 8)
    seed: int = 0
    domain: str = SYNTHETIC


@dataclass
class TrainDataConfig:
    """Source dataset and the training pipeline (``docs/data-protocol.md``). ``batch_size`` is per process."""

    dataset: str = "gta5"
    split: str = "all"
    conditions: list[str] | None = None
    root: str | None = None  # default: <data.root>/<the dataset's folder>
    batch_size: int = 4
    num_workers: int = 4
    crop_size: int = 512
    scales: list[int] | None = None  # short-edge choices; default int(crop_size * 0.1 * x), x = 5..20
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
    vocab: str | None = None  # evaluation vocabulary (open-vocabulary targets, Vireo)
    max_images: int | None = None  # evaluate an evenly spaced subset (quick periodic validation)
    resize: list[int] | None = None  # test box [w, h]; default: the protocol's resize of the dataset
    keep_ratio: bool = True
    synthetic: SyntheticConfig | None = None


@dataclass
class DataConfig:
    root: str = "data"
    train: TrainDataConfig = field(default_factory=TrainDataConfig)
    val: list[ValDataConfig] = field(default_factory=list)
    mean_over: list[str] | None = None  # domain tags averaged into val/mean_mIoU (default: all)
    protocol: Literal["dg", "soma"] = "dg"  # test boxes of EVAL_PROTOCOLS (a target's own resize wins)


@dataclass
class ParamRule:
    lr_mult: float = 1.0
    decay_mult: float = 1.0


def _default_param_rules() -> dict[str, ParamRule]:
    # docs/data-protocol.md: substring rules on the full parameter name, the longest matching key wins.
    # The reference's "reins.scale" / "depthforge.scale" / "vireo.scale" is "adapter.scale" in dgss
    # (FADA: "learnable_tokens" covers its four token tensors). VPT prompts: no decay, as REIN tokens.
    embed = ParamRule(lr_mult=1.0, decay_mult=0.0)
    return {
        "norm": ParamRule(decay_mult=0.0),
        "query_embed": embed,
        "level_embed": embed,
        "learnable_tokens": embed,
        "adapter.scale": embed,
        "prompt_embeddings": embed,
    }


@dataclass
class WeightDecayScheduleConfig:
    """Per-iteration weight decay of every group (base = ``weight_decay`` × the group's ``decay_mult``):
    ``constant``, or ``cosine`` to ``eta_min`` over ``train.max_iters``. ``include_zero_groups``: groups
    without decay are annealed too, rising from 0 to ``eta_min`` (SoMA's reference behaviour)."""

    type: Literal["constant", "cosine"] = "constant"
    eta_min: float = 0.0
    include_zero_groups: bool = False


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
    weight_decay_schedule: WeightDecayScheduleConfig = field(default_factory=WeightDecayScheduleConfig)


@dataclass
class EMAConfig:
    """Exponential moving average of the trainable weights (``dgss.engine.ema``): before ``begin_iter``
    finished iterations the average copies the weights, then ema <- (1 - momentum)·ema + momentum·θ.
    Validation and saved weights use the average; resume keeps both exactly."""

    enabled: bool = False
    momentum: float = 2e-4
    begin_iter: int = 0


@dataclass
class ScheduleConfig:
    """Per-iteration learning rate (``docs/data-protocol.md``).

    ``poly``: lr·(1 − t/T)^power (+ eta_min); ``warmup_poly``: linear factor warmup_start_factor -> 1 over
    ``warmup_iters``, then poly over the rest; ``onecycle``: lr/div_factor -> lr (cosine) over the first
    ``pct_start``·T, then cosine to lr/div_factor/final_div_factor; ``constant``; ``cosine``: from lr to
    eta_min over T, no warm-up (CAT-Seg).
    """

    type: Literal["poly", "warmup_poly", "onecycle", "constant", "cosine"] = "poly"
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
    accumulate: int = 1  # micro-batches per optimiser step
    grad_clip: float | None = None  # max global L2 norm of the trainable gradients
    amp: Literal["none", "bf16"] = "none"  # bf16 autocast on GPU (CPU runs stay fp32)
    precision: Literal["fp32", "fp64"] = "fp32"  # fp64: whole model in float64 (numerical-equivalence tests)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    val_interval: int = 10000  # 0 = never (except the end when val_at_end)
    val_at_end: bool = True
    ckpt_interval: int = 4000
    keep_last: int = 3
    work_dir: str | None = None  # default work_dirs/<name>
    ddp_find_unused: bool | None = None  # None: only for method 'full' (encoder params without a gradient)
    deterministic: bool = False  # torch.use_deterministic_algorithms (GPU runs; slower)


@dataclass
class LoggingConfig:
    interval: int = 50
    tensorboard: bool = True
    jsonl: bool = True
    progress: bool = True


@dataclass
class PastaConfig:
    """PASTA (``docs/methods/pasta.md``): per source image, before any geometric transform, the FFT amplitude is
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
    """AdvStyle (``docs/methods/advstyle.md``): one gradient-ascent step of rate ``lr`` on the per-image channel
    mean/std of the batch (``stats_on``: the normalised network input or the raw 0..255 image), then
    training on the doubled batch [x, x_adv]. ``prob``: fraction of micro-batches that get the step.
    ``lr`` = 1.0 is our choice (the paper's value is not known)."""

    enabled: bool = False
    lr: float = 1.0
    stats_on: Literal["normalized", "raw"] = "normalized"
    prob: float = 1.0


@dataclass
class GtrLtrConfig:
    """GTR-LTR interface (``docs/methods/gtr-ltr.md``): NOT reproducible from public sources. The user supplies a
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
    region_scale: tuple[float, float] = (0.1, 0.5)  # rectangle side as a fraction of the image side
    style_size: int = 512  # short edge of the style image fed to the network


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
    ema: EMAConfig = field(default_factory=EMAConfig)

    def to_dict(self) -> dict:
        return to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def work_dir(self) -> Path:
        return Path(self.train.work_dir) if self.train.work_dir else Path("work_dirs") / self.name

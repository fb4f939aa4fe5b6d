"""Iteration-based training as the papers run it (``docs/data-protocol.md``).

:func:`run_training` builds everything from a :class:`~dgss.config.RunConfig` and runs :class:`Trainer`:

* model from the config (preset / tiny / ablation / overrides), frozen weights loaded (or explicitly
  random), ``check_frozen_weights()`` guard, optional ``init_from`` trained weights;
* AdamW over the trainable parameters with the papers' groups; poly / warmup+poly / OneCycle schedule;
* Mask2Former criterion (random points from a per-rank generator whose state is checkpointed, or fixed
  points), gradient accumulation, gradient clipping, bf16 autocast on GPU;
* DDP over the trainable parameters when launched by torchrun; sharded, all-reduced validation;
* checkpoints every ``ckpt_interval`` iterations (and at the end), exact resume, JSON lines +
  TensorBoard + progress bar on rank 0;
* optional EMA of the trainable weights (``cfg.ema``; validation and saved weights use it, the raw
  weights live in the train state) and weight-decay schedule (``optim.weight_decay_schedule``);
* weight-level adapters derived from the frozen weights (SoMA) are initialised from the loaded encoder
  when a run starts without a checkpoint, and a model whose adapter never was refuses to train;
* augmentation baselines (``cfg.augment``): PASTA / GTR-LTR in the sample stream (per-sample generators),
  AdvStyle as an extra style step per micro-batch that doubles the batch (``dgss.engine.advstyle``).

Every iteration ``t`` (0-based) runs ``accumulate`` micro-batches, then one optimiser step with the
learning rate of ``t``; the log, validation and checkpoint use the number of finished iterations ``t + 1``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import SYNTHETIC, RunConfig, segmentor_config_from
from ..config.schema import EVAL_PROTOCOLS
from ..data.datasets import sample_seed
from ..errors import ConfigError, TrainingError
from ..losses import Mask2FormerCriterion, Mask2FormerCriterionConfig, SegmentationLoss
from ..losses.matcher import HungarianMatcher
from . import checkpointing as ck
from .advstyle import AdvStyle
from .distributed import (
    DistContext,
    all_gather_object,
    all_reduce_mean,
    barrier,
    no_sync,
    resolve_device,
    unwrap,
    wrap_ddp,
)
from .ema import EMA
from .logging import ProgressDisplay, RunLogger
from .optim import build_optimizer, describe_groups
from .schedulers import LRSchedule, Scheduler, WeightDecaySchedule
from .train_data import InfiniteStreamSampler, StreamDataset, SyntheticSegDataset, collate, synthetic_from_config

if TYPE_CHECKING:
    from ..data.datasets import SegDataset
    from ..models.segmentor import Segmentor

ValidateFn = Callable[[torch.nn.Module], dict]
"""validate(model) -> {"<domain>/mIoU": %, ..., "mean_mIoU": %}; called on every rank (collective)."""


# ================================================================================================ seeding
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ================================================================================================ criterion
class _FixedPointMatcher(HungarianMatcher):
    def __init__(self, points: torch.Tensor, **kw):
        super().__init__(**kw)
        self.points = points

    def sample_points(self, device: torch.device) -> torch.Tensor:
        return self.points.to(device)[None]


class FixedPointCriterion(Mask2FormerCriterion):
    """Mask2Former criterion whose matcher and loss use one fixed set of uniform points for every image and
    mask: deterministic, and independent of how a batch is split over ranks (DDP equivalence tests).
    In ``stock`` mode this replaces importance sampling by uniform points (a test setting, not the recipe)."""

    def __init__(self, cfg: Mask2FormerCriterionConfig, seed: int = 0):
        super().__init__(cfg)
        g = torch.Generator().manual_seed(seed)
        self.points = torch.rand(cfg.num_points, 2, generator=g)
        self.matcher = _FixedPointMatcher(
            self.points,
            cost_class=cfg.cost_class,
            cost_mask=cfg.cost_mask,
            cost_dice=cfg.cost_dice,
            num_points=cfg.num_points,
        )

    def sample_points(self, mask_logits: torch.Tensor) -> torch.Tensor:
        return self.points.to(mask_logits.device)[None].expand(mask_logits.shape[0], -1, -1)


def build_criterion(
    cfg: RunConfig, model_cfg, num_classes: int, device: torch.device, rank: int = 0
) -> Mask2FormerCriterion:
    """The set criterion: weights and points from the run config, the loss mode from the model config
    (``model_cfg.loss_mode``, decided by the method row; the only place it is read from)."""
    lo = cfg.loss
    ccfg = Mask2FormerCriterionConfig(
        num_classes=num_classes,
        mode=model_cfg.loss_mode,
        class_weight=lo.class_weight,
        mask_weight=lo.mask_weight,
        dice_weight=lo.dice_weight,
        no_object_weight=lo.no_object_weight,
        num_points=lo.num_points,
    )
    if lo.points == "fixed":
        return FixedPointCriterion(ccfg, seed=cfg.seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(sample_seed(cfg.seed, rank, 0x10551))
    return Mask2FormerCriterion(ccfg, generator=gen)


# ================================================================================================ model / data
def build_model(cfg: RunConfig, *, load_weights: bool = True, initialize_adapter: bool = True):
    """The segmentor of ``cfg.model`` with its frozen weights (``cfg.weights``) loaded or marked random.

    Adapters derived from the frozen weights (SoMA) are initialised from them (seed ``cfg.seed``) unless
    ``init_from`` fills them or ``initialize_adapter`` is False (a resumed run loads them from its checkpoint)."""
    from ..models.build import build_model as _build
    from ..models.build import load_frozen_weights

    model = _build(segmentor_config_from(cfg.model, cfg.loss))
    if not load_weights:
        return model
    w = cfg.weights
    if cfg.model.method == "catseg":  # both CLIP towers from one OpenAI file (weights.encoder), or random
        model.load_clip_weights(w.encoder, random=w.random)
    else:
        load_frozen_weights(model, {"encoder": w.encoder, "depth_encoder": w.depth_encoder}, random=w.random)
    model.check_frozen_weights()
    if cfg.model.method != "catseg" and model.cfg.text is not None:
        from ..backbones.clip_text import build_text_encoder

        text_encoder = build_text_encoder(model.cfg.text.clip, w.text_encoder, random_seed=0 if w.random else None)
        attach_text_encoder(model, text_encoder)
        from ..models.vireo import use_vocabulary

        use_vocabulary(model, cfg.model.vocab or "cityscapes", text_encoder=text_encoder)
    if w.init_from:
        from ..models.checkpoint import load_trained_state, read_checkpoint

        tensors, _ = read_checkpoint(w.init_from)
        load_trained_state(model, tensors, origin=w.init_from)
    elif initialize_adapter:
        model.initialize_adapter(seed=cfg.seed)
    return model


def _use_vocabulary(model, vocab) -> None:
    """Point an open-vocabulary model at ``vocab``: CAT-Seg encodes text itself, Vireo uses text tables."""
    if hasattr(model, "encode_text"):
        model.set_vocabulary(vocab)
        return
    from ..models.vireo import use_vocabulary

    use_vocabulary(model, vocab, text_encoder=getattr(model, "text_encoder", None))


def attach_text_encoder(model, encoder) -> None:
    """Keep the text tower next to the model (not a submodule: never trained, never saved)."""
    object.__setattr__(model, "text_encoder", encoder)


def _resolve_root(data_root: str, root: str | None) -> str:
    if root is None:
        return data_root
    p = Path(root)
    return str(p if p.is_absolute() or p.exists() else Path(data_root) / p)


def build_train_dataset(cfg: RunConfig, model) -> StreamDataset:
    """The stream dataset of ``cfg.data.train`` (real data through ``TrainPipeline``, or synthetic)."""
    from ..data.augment import build_image_augment

    t = cfg.data.train
    augment = build_image_augment(cfg.augment)
    if t.dataset == SYNTHETIC:
        synthetic = synthetic_from_config(
            t.synthetic, model.num_classes, default_size=t.crop_size, default_seed=cfg.seed
        )
        return StreamDataset(synthetic, cfg.seed, augment=augment)
    from ..data.datasets import SegDataset
    from ..data.transforms import TrainPipeline

    base = SegDataset.from_root(t.dataset, _resolve_root(cfg.data.root, t.root), t.split, t.conditions)
    scales = tuple(t.scales) if t.scales else tuple(int(t.crop_size * x * 0.1) for x in range(5, 21))
    pipe = TrainPipeline(
        crop_size=(t.crop_size, t.crop_size),
        scales=scales,
        max_long=t.max_long,
        cat_max_ratio=t.cat_max_ratio,
        flip_prob=t.flip_prob,
        photometric=t.photometric,
        ignore_index=base.info.ignore_index,
        mean=tuple(model.cfg.mean),
        std=tuple(model.cfg.std),
    )
    return StreamDataset(base, cfg.seed, transform=pipe, augment=augment)


# ================================================================================================ validation
class Validator:
    """Sharded evaluation of the configured targets; confusion matrices are all-reduced over ranks.

    Returns mIoU in % per domain (``"<domain>/mIoU"``) and ``"mean_mIoU"`` over ``data.mean_over``.
    """

    def __init__(self, cfg: RunConfig, model, ctx: DistContext):
        self.cfg, self.ctx = cfg, ctx
        self.targets = []
        for v in cfg.data.val:
            ds: SyntheticSegDataset | SegDataset
            if v.dataset == SYNTHETIC:
                ds = synthetic_from_config(
                    v.synthetic, model.num_classes, default_size=model.cfg.crop_size, default_seed=cfg.seed + 1
                )
            else:
                from ..data.datasets import SegDataset

                split = v.split
                ds = SegDataset.from_root(v.dataset, _resolve_root(cfg.data.root, v.root), split, v.conditions)
            self.targets.append((v, ds))
        self.class_names = list(model.cfg.class_names) or None
        if cfg.data.mean_over:
            known: set[str] = set()
            for _, ds in self.targets:
                known |= {ds.domain} if isinstance(ds, SyntheticSegDataset) else set(ds.domains)
            missing = [d for d in cfg.data.mean_over if d not in known]
            if missing:
                raise ConfigError(
                    f"config key 'data.mean_over': domain(s) {missing} are not among the validation "
                    f"domains {sorted(known)}"
                )

    def _subset(self, n: int, max_images: int | None) -> list[int]:
        idx = list(range(n))
        if max_images is not None and n > max_images:
            idx = [int(i * n / max_images) for i in range(max_images)]
        return idx[self.ctx.rank :: self.ctx.world_size]

    @torch.no_grad()
    def __call__(self, model) -> dict:
        from ..metrics import DomainMetrics

        model = unwrap(model)
        was_training = model.training
        model.eval()
        device = self.ctx.device
        amp = self.cfg.train.amp == "bf16" and device.type == "cuda"

        dtype = next(model.parameters()).dtype

        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                return model.slide_inference(x.to(device, dtype=dtype)).float()

        all_metrics = []
        train_vocab = model.vocab if getattr(model.cfg, "text", None) is not None else None
        try:
            for v, ds in self.targets:
                if v.vocab is not None:  # open-vocabulary target: its own vocabulary in encoder and head
                    _use_vocabulary(model, v.vocab)
                idx = self._subset(len(ds), v.max_images)
                if isinstance(ds, SyntheticSegDataset):
                    metrics = DomainMetrics(model.num_classes, ds.ignore_index, self.class_names)
                    for i in idx:
                        item = ds[i]
                        logits = predict(model.normalize(item["image"][None].to(device, dtype=dtype)))
                        metrics.update(item["domain"], logits[0].argmax(0).cpu(), item["label"])
                else:
                    from ..data.datasets import SegDataset
                    from ..data.transforms import EvalResize
                    from .evaluator import evaluate

                    info = ds.info
                    metrics = DomainMetrics(info.num_classes, info.ignore_index, list(info.class_names) or None)
                    shard = SegDataset([ds.samples[i] for i in idx], info)
                    box = v.resize or EVAL_PROTOCOLS[self.cfg.data.protocol].get(info.name)
                    resize = EvalResize(cast("tuple[int, int]", tuple(box)), v.keep_ratio) if box else None
                    evaluate(
                        predict,
                        shard,
                        metrics=metrics,
                        resize=resize,
                        device=device,
                        seed=self.cfg.seed,
                        num_workers=min(self.cfg.data.train.num_workers, 4),
                    )
                metrics.all_reduce()
                all_metrics.append(metrics)
        finally:
            if train_vocab and model.vocab != train_vocab:
                _use_vocabulary(model, list(train_vocab))
            model.train(was_training)
        out = {}
        for metrics in all_metrics:
            for d in metrics.matrices:
                out[f"{d}/mIoU"] = 100.0 * metrics.result(d).miou
        domains = [k[: -len("/mIoU")] for k in out]
        over = [d for d in (self.cfg.data.mean_over or domains) if d in domains]
        if over:
            out["mean_mIoU"] = sum(out[f"{d}/mIoU"] for d in over) / len(over)
        return out


# ================================================================================================ trainer
class Trainer:
    """The iteration loop over an infinite sample stream (see the module docstring).

    Args:
        cfg: the run config (optim, schedule, loss, train, logging, seed are read from it).
        model: a :class:`~dgss.models.segmentor.Segmentor` with its frozen weights in place.
        train_dataset: a :class:`~dgss.engine.train_data.StreamDataset` or any map-style dataset of
            ``{"image" (3,H,W) float, "label" (H,W) long}`` (images in [0, 255] unless the dataset has
            ``normalized = True``).
        validate: called as ``validate(model)`` every ``val_interval`` iterations (on every rank).
        ctx: distributed context (default: single process on ``cfg.train.device``).
        work_dir: default ``cfg.work_dir``.
    """

    def __init__(
        self,
        cfg: RunConfig,
        model,
        train_dataset,
        *,
        validate: ValidateFn | None = None,
        ctx: DistContext | None = None,
        work_dir: str | Path | None = None,
        criterion: Mask2FormerCriterion | None = None,
        progress: bool | None = None,
    ):
        self.cfg = cfg
        self.ctx = ctx or DistContext(device=resolve_device(cfg.train.device))
        self.work_dir = Path(work_dir) if work_dir is not None else cfg.work_dir
        self.dtype = torch.float64 if cfg.train.precision == "fp64" else torch.float32
        self.model = model.to(self.ctx.device, dtype=self.dtype)
        image_augments = [k for k in ("gtr_ltr", "pasta") if getattr(cfg.augment, k).enabled]
        if not isinstance(train_dataset, StreamDataset):
            from ..data.augment import build_image_augment

            train_dataset = StreamDataset(train_dataset, cfg.seed, augment=build_image_augment(cfg.augment))
        elif image_augments and train_dataset.augment is None:
            raise TrainingError(
                f"cfg.augment enables {' and '.join(image_augments)} but the given StreamDataset has "
                "no augment: build it with dgss.engine.trainer.build_train_dataset (or pass augment=)"
            )
        self.dataset = train_dataset
        self.validate = validate
        model_cfg = cast("Segmentor", unwrap(model)).cfg
        own_loss = getattr(unwrap(model), "training_loss", None)  # model families with their own loss (CAT-Seg)
        if own_loss is not None:
            self.criterion, self.loss = criterion, own_loss()
        else:
            self.criterion = criterion or build_criterion(
                cfg, model_cfg, model.num_classes, self.ctx.device, self.ctx.rank
            )
            self.loss = SegmentationLoss(self.criterion, model.num_classes, prior_weight=model_cfg.prior_loss_weight)
        adv = cfg.augment.advstyle
        self.advstyle = AdvStyle.from_config(adv, unwrap(self.model)) if adv.enabled else None
        self.show_progress = cfg.logging.progress if progress is None else progress
        self.optimizer = build_optimizer(self.model, cfg.optim)
        wd = cfg.optim.weight_decay_schedule
        self.scheduler = Scheduler(
            self.optimizer,
            LRSchedule.from_config(cfg.schedule, cfg.optim.lr, cfg.train.max_iters),
            WeightDecaySchedule(wd.type, cfg.train.max_iters, wd.eta_min, wd.include_zero_groups),
        )
        self.ema = EMA(unwrap(self.model), cfg.ema.momentum, cfg.ema.begin_iter) if cfg.ema.enabled else None
        self.iteration = 0
        self.samples_consumed = 0
        self.last_val: dict = {}
        self.history: list[dict] = []

    # ------------------------------------------------------------------------------------------ state
    @property
    def global_batch(self) -> int:
        return self.cfg.data.train.batch_size * self.ctx.world_size

    def _generator(self) -> torch.Generator | None:
        return getattr(self.criterion, "generator", None)

    def train_state(self) -> dict:
        """Everything but the weights that an exact resume needs (collective under DDP)."""
        rngs = all_gather_object(ck.rng_state(self._generator()), self.ctx)
        return {
            "samples_consumed": int(self.samples_consumed),
            "global_batch": int(self.global_batch),
            "world_size": int(self.ctx.world_size),
            "seed": int(self.cfg.seed),
            "max_iters": int(self.cfg.train.max_iters),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rngs,
            "last_val": dict(self.last_val),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def save(self, run_config: dict | None = None) -> None:
        state = self.train_state()  # raw weights (EMA runs) are taken here, before the EMA is applied
        if self.ctx.is_main:
            with self.ema.applied() if self.ema is not None else nullcontext():  # saved weights: the EMA
                files = ck.save_training_checkpoint(
                    self.work_dir,
                    unwrap(self.model),
                    self.iteration,
                    state,
                    run_config=run_config if run_config is not None else self.cfg.to_dict(),
                    keep_last=self.cfg.train.keep_last,
                )
            self.logger.write("checkpoint", self.iteration, weights=files.weights.name, state=files.state.name)
        barrier(self.ctx)

    def resume(self, files: ck.CheckpointFiles) -> None:
        state, _ = ck.load_training_checkpoint(files, unwrap(self.model))
        if state["global_batch"] != self.global_batch:
            raise ck.ResumeError(
                f"the checkpoint was trained with a global batch of {state['global_batch']}, "
                f"this run has {self.global_batch} (batch_size x processes)"
            )
        if ("ema" in state) != (self.ema is not None):
            raise ck.ResumeError(
                f"{files.state} was trained with EMA {'on' if 'ema' in state else 'off'}, this run has it "
                f"{'on' if self.ema is not None else 'off'}: set ema.enabled to match"
            )
        if self.ema is not None:  # the weights file holds the EMA; the raw weights come from the state
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = int(state["iteration"])
        self.samples_consumed = int(state["samples_consumed"])
        self.last_val = dict(state.get("last_val") or {})
        rngs = state["rng"]
        if len(rngs) == self.ctx.world_size:
            ck.set_rng_state(rngs[self.ctx.rank], self._generator())
        else:  # another process count: fresh, deterministic streams per rank
            seed_everything(sample_seed(self.cfg.seed, self.ctx.rank, self.iteration))
            gen = self._generator()
            if gen is not None:
                gen.manual_seed(sample_seed(self.cfg.seed, self.ctx.rank, self.iteration + 1))
        if state["max_iters"] != self.cfg.train.max_iters and self.ctx.is_main:
            import warnings

            warnings.warn(
                f"resuming a run planned for {state['max_iters']} iterations with max_iters="
                f"{self.cfg.train.max_iters}: the schedule changes from here on",
                stacklevel=2,
            )

    # ------------------------------------------------------------------------------------------ loop
    def _loader(self) -> DataLoader:
        t = self.cfg.data.train
        sampler = InfiniteStreamSampler(
            len(self.dataset),
            seed=self.cfg.seed,
            batch_size=t.batch_size,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            start=self.samples_consumed,
        )
        kw: dict[str, Any] = {}
        if t.num_workers > 0:
            kw = dict(persistent_workers=True, prefetch_factor=2)
        return DataLoader(
            self.dataset,
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=t.num_workers,
            collate_fn=collate,
            pin_memory=self.ctx.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed),
            **kw,
        )

    def _check_frozen_eval(self, model) -> None:
        for name, module in model.frozen_modules().items():
            module.eval()
            if any(m.training for m in module.modules()):
                raise TrainingError(f"frozen module {name} is in training mode")

    def fit(self, resume: str | Path | bool | None = None, *, run_config: dict | None = None) -> dict:
        """Train to ``cfg.train.max_iters`` (resuming from a checkpoint if asked); returns a summary."""
        cfg, ctx = self.cfg, self.ctx
        tr = cfg.train
        raw = cast("Segmentor", unwrap(self.model))
        resumed_from = None
        if resume:
            files = ck.resolve_resume(resume, self.work_dir)
            self.resume(files)
            resumed_from = str(files.weights)
        elif ck.list_checkpoints(self.work_dir):
            raise TrainingError(
                f"{self.work_dir} already holds checkpoints of a run: resume it with --resume, "
                "or choose another work directory (--work-dir / train.work_dir)"
            )
        if ctx.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            ck.remove_stale_temp_files(self.work_dir)
            (self.work_dir / "config.yaml").write_text(cfg.to_yaml())
        self.logger = RunLogger(
            self.work_dir,
            enabled=ctx.is_main,
            jsonl=cfg.logging.jsonl,
            tensorboard=cfg.logging.tensorboard,
            resume_iter=self.iteration if resumed_from else None,
        )
        amp = tr.amp == "bf16" and ctx.device.type == "cuda"
        if amp and getattr(raw.cfg, "frozen_bf16", False):  # bit-identical under autocast (Segmentor doc)
            raw.store_frozen_bf16()
        ddp_model = wrap_ddp(
            self.model,
            ctx,
            find_unused=(tr.ddp_find_unused if tr.ddp_find_unused is not None else raw.cfg.method == "full"),
        )
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if tr.deterministic:
            import os

            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        normalized = bool(getattr(self.dataset, "normalized", False))
        progress = ProgressDisplay(
            tr.max_iters, self.iteration, enabled=ctx.is_main, bar=self.show_progress, interval=cfg.logging.interval
        )
        if resumed_from:
            self.logger.write("resume", self.iteration, resumed_from=resumed_from)
            progress.print(f"resumed from {resumed_from} at iteration {self.iteration}")
        else:
            self.logger.write(
                "start",
                0,
                world_size=ctx.world_size,
                global_batch=self.global_batch,
                groups=describe_groups(self.optimizer),
            )
        if tr.amp == "bf16" and not amp and ctx.is_main:
            progress.print("note: train.amp=bf16 applies on GPU only; this CPU run stays in fp32")
        raw.check_adapter_initialized()
        ddp_model.train()
        self._check_frozen_eval(raw)
        loader_iter = iter(self._loader()) if self.iteration < tr.max_iters else None
        window: list[float] = []
        try:
            while self.iteration < tr.max_iters:
                t_start = time.perf_counter()
                lr = self.scheduler.set_iteration(self.iteration)
                loss_sum = torch.zeros((), device=ctx.device, dtype=self.dtype)
                terms: dict[str, torch.Tensor] = {}
                data_time = 0.0
                style_losses: list[float] = []
                for micro in range(tr.accumulate):
                    td = time.perf_counter()
                    assert loader_iter is not None  # built whenever the loop runs
                    batch = next(loader_iter)
                    data_time += time.perf_counter() - td
                    images = batch["image"].to(ctx.device, dtype=self.dtype, non_blocking=True)
                    labels = batch["label"].to(ctx.device, non_blocking=True).long()
                    x = images if normalized else raw.normalize(images)
                    if self.advstyle is not None and self.advstyle.fires(
                        cfg.seed, self.iteration * tr.accumulate + micro
                    ):
                        # style step on the unwrapped model: no parameter gradient, no DDP hooks
                        x_adv, style_loss = self.advstyle.perturb(
                            raw,
                            self.loss,
                            x,
                            labels,
                            autocast=(lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else nullcontext,
                        )
                        x, labels = torch.cat([x, x_adv]), torch.cat([labels, labels])
                        style_losses.append(style_loss)
                    with no_sync(ddp_model, micro < tr.accumulate - 1):
                        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
                            outputs = ddp_model(x)
                        losses = self.loss(outputs, labels)
                        loss = sum(losses.values())
                        (loss / tr.accumulate).backward()
                    loss_sum += loss.detach()
                    for k in ("loss_cls", "loss_mask", "loss_dice", "loss_prior"):  # summed over the decoder outputs
                        vals = [v.detach() for name, v in losses.items() if name == k or name.endswith("." + k)]
                        if vals:
                            terms[k] = terms.get(k, 0) + torch.stack(vals).sum()
                self.samples_consumed += tr.accumulate * self.global_batch
                reduced = all_reduce_mean(torch.stack([loss_sum, *terms.values()]) / tr.accumulate, ctx)
                loss_value = float(reduced[0])
                if not math.isfinite(loss_value):
                    raise TrainingError(
                        f"non-finite loss {loss_value} at iteration {self.iteration + 1}; "
                        f"terms {dict(zip(terms, reduced[1:].tolist(), strict=False))}. The last checkpoint is "
                        "intact: lower the learning rate or set train.grad_clip and resume"
                    )
                grad_norm = None
                if tr.grad_clip is not None:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, tr.grad_clip))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.iteration += 1
                it = self.iteration
                if self.ema is not None:
                    self.ema.update(it)
                dt = time.perf_counter() - t_start
                window = (window + [dt])[-20:]
                progress.update(it, loss_value, lr)
                if it % cfg.logging.interval == 0 or it == tr.max_iters or it == 1:
                    rec = {
                        "loss": loss_value,
                        "lr": lr,
                        "time_per_iter": dt,
                        "data_time": data_time,
                        **{k: float(v) for k, v in zip(terms, reduced[1:].tolist(), strict=False)},
                    }
                    if grad_norm is not None:
                        rec["grad_norm"] = grad_norm
                    if style_losses:  # loss of the style step before the ascent (this rank's micro-batches)
                        rec["advstyle_loss"] = sum(style_losses) / len(style_losses)
                    if ctx.device.type == "cuda":
                        rec["max_mem_gb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
                    self.logger.scalars("train", it, rec)
                    self.history.append({"iter": it, **rec})
                do_val = self.validate is not None and (
                    (tr.val_interval and it % tr.val_interval == 0) or (it == tr.max_iters and tr.val_at_end)
                )
                if do_val:
                    assert self.validate is not None  # do_val implies it
                    raw.eval()
                    with torch.no_grad(), self.ema.applied() if self.ema is not None else nullcontext():
                        self.last_val = self.validate(raw)
                    ddp_model.train()
                    self._check_frozen_eval(raw)
                    self.logger.scalars("val", it, self.last_val)
                    progress.print(f"val @ {it}: " + ", ".join(f"{k} {v:.2f}" for k, v in self.last_val.items()))
                if (tr.ckpt_interval and it % tr.ckpt_interval == 0) or it == tr.max_iters:
                    self.save(run_config)
                self.logger.flush()
        finally:
            progress.close()
            self.logger.close()
        return {
            "iteration": self.iteration,
            "loss": self.history[-1]["loss"] if self.history else None,
            "val": self.last_val,
            "work_dir": str(self.work_dir),
        }


# ================================================================================================ entry point
def run_training(
    cfg: RunConfig,
    *,
    resume: str | Path | bool | None = None,
    ctx: DistContext | None = None,
    work_dir: str | Path | None = None,
    progress: bool | None = None,
) -> dict:
    """Build model, data, validation and trainer from ``cfg`` and train (see the module docstring)."""
    ctx = ctx or DistContext(device=resolve_device(cfg.train.device))
    seed_everything(cfg.seed)  # identical initialisation of the trainable weights on every rank
    model = build_model(cfg, initialize_adapter=not resume)
    seed_everything(sample_seed(cfg.seed, ctx.rank, 1) if ctx.distributed else cfg.seed)
    dataset = build_train_dataset(cfg, model)
    validate = Validator(cfg, model, ctx) if cfg.data.val else None
    trainer = Trainer(cfg, model, dataset, validate=validate, ctx=ctx, work_dir=work_dir, progress=progress)
    if ctx.is_main:
        from rich.console import Console

        con = Console(stderr=True)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        con.print(
            f"[bold]{cfg.name}[/]: {model.cfg.name} ({n_train:,} trainable of {n_all:,} parameters), "
            f"{len(dataset):,} training images, global batch {trainer.global_batch} "
            f"({ctx.world_size} process{'es' if ctx.world_size > 1 else ''}, {ctx.device}), "
            f"work dir {trainer.work_dir}",
            highlight=False,
            soft_wrap=True,
        )
        if any((m.frozen_source or {}).get("random") for m in model.frozen_modules().values()):
            con.print(
                "[yellow]note: the frozen encoder(s) hold RANDOM weights (weights.random: true); "
                "results are meaningless beyond smoke tests[/]",
                soft_wrap=True,
            )
    return trainer.fit(resume)

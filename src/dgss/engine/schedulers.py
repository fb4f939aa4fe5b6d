"""Iteration-based learning-rate schedules (``docs/data-protocol.md``), as closed-form functions of the iteration.

Iteration ``t`` (0-based) is the optimiser step about to run; its learning rate is ``lr_at(t)``. Being
closed-form, a schedule's whole state is the iteration, so resuming is exact.

* ``poly`` (REIN, Vireo): ``(lr − eta_min)·(1 − t/T)^power + eta_min``;
* ``warmup_poly`` (REIN 1024 release): factor ``s + (1 − s)·t/W`` for ``t < W`` (linear warm-up from
  ``s`` = ``warmup_start_factor``), then poly over the remaining ``T − W`` iterations;
* ``onecycle`` (DepthForge): the two-phase cosine one-cycle policy of ``torch.optim.lr_scheduler.OneCycleLR``
  (lr only): ``lr/div`` -> ``lr`` over the first ``pct_start·T`` steps, then -> ``lr/(div·final_div)``;
* ``constant``.

``Scheduler`` applies the factor to every optimiser group (``group["lr"] = base·lr_mult·factor``).

Weight decay (``WeightDecaySchedule``, SoMA's recipe): ``constant``, or ``cosine`` from each group's own
base value ``wd0`` (``optim.weight_decay`` × ``decay_mult``) to ``eta_min`` over ``total_iters``::

    wd(t) = eta_min + (wd0 − eta_min)·(1 + cos(π·min(t, T)/T))/2

Groups with wd0 = 0 (norms, queries) keep 0 unless ``include_zero_groups`` (the reference's quirk: its
cosine scheduler anneals every group, so they rise from 0 to ``eta_min``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate curve over ``total_iters`` iterations for a peak/base rate ``base_lr``."""

    type: str
    base_lr: float
    total_iters: int
    power: float = 0.9
    eta_min: float = 0.0
    warmup_iters: int = 0
    warmup_start_factor: float = 1e-6
    pct_start: float = 0.1
    div_factor: float = 10.0
    final_div_factor: float = 10.0

    def __post_init__(self):
        if self.type not in ("poly", "warmup_poly", "onecycle", "constant", "cosine"):
            raise ValueError(f"unknown schedule type {self.type!r}")
        if self.total_iters < 1:
            raise ValueError("total_iters must be >= 1")

    @classmethod
    def from_config(cls, cfg, base_lr: float, total_iters: int) -> LRSchedule:
        """From a :class:`dgss.config.ScheduleConfig` (the same fields, without the run's lr and length)."""
        return cls(base_lr=base_lr, total_iters=total_iters, **dataclasses.asdict(cfg))

    def _poly(self, t: int, begin: int) -> float:
        span = self.total_iters - begin
        frac = min(max(t - begin, 0), span) / span
        return (self.base_lr - self.eta_min) * (1.0 - frac) ** self.power + self.eta_min

    def lr_at(self, t: int) -> float:
        """Learning rate of iteration ``t`` (0-based); iterations past the end keep the last value."""
        if self.type == "constant":
            return self.base_lr
        if self.type == "poly":
            return self._poly(t, 0)
        if self.type == "cosine":
            frac = min(t, self.total_iters) / self.total_iters
            return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + math.cos(math.pi * frac)) / 2.0
        if self.type == "warmup_poly":
            if t < self.warmup_iters:
                s = self.warmup_start_factor
                return self.base_lr * (s + (1.0 - s) * t / self.warmup_iters)
            return self._poly(t, self.warmup_iters)
        # onecycle (torch's formula, two phases, cosine annealing)
        initial = self.base_lr / self.div_factor
        final = initial / self.final_div_factor
        t = min(t, self.total_iters - 1)
        up_end = float(self.pct_start * self.total_iters) - 1
        down_end = float(self.total_iters - 1)
        if t <= up_end:
            pct = t / up_end if up_end > 0 else 1.0
            return _cos_anneal(initial, self.base_lr, pct)
        pct = (t - up_end) / (down_end - up_end) if down_end > up_end else 1.0
        return _cos_anneal(self.base_lr, final, pct)

    def factor(self, t: int) -> float:
        """``lr_at(t) / base_lr``."""
        return self.lr_at(t) / self.base_lr


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


@dataclass(frozen=True)
class WeightDecaySchedule:
    """Per-group weight decay over ``total_iters`` (see the module docstring)."""

    type: str = "constant"
    total_iters: int = 1
    eta_min: float = 0.0
    include_zero_groups: bool = False

    def __post_init__(self):
        if self.type not in ("constant", "cosine"):
            raise ValueError(f"unknown weight-decay schedule type {self.type!r}")
        if self.total_iters < 1:
            raise ValueError("total_iters must be >= 1")

    def wd_at(self, t: int, base: float) -> float:
        """Weight decay of iteration ``t`` (0-based) for a group whose base value is ``base``."""
        if self.type == "constant" or (base == 0.0 and not self.include_zero_groups):
            return base
        frac = min(max(t, 0), self.total_iters) / self.total_iters
        return self.eta_min + (base - self.eta_min) * (1.0 + math.cos(math.pi * frac)) / 2.0


class Scheduler:
    """Sets the learning rate (and weight decay) of every optimiser group for iteration ``t``; state =
    last iteration (each group's base weight decay is kept in the group as ``base_weight_decay``)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, schedule: LRSchedule, wd_schedule: WeightDecaySchedule | None = None
    ):
        self.optimizer = optimizer
        self.schedule = schedule
        self.wd_schedule = wd_schedule
        self.last_iter = -1
        for g in optimizer.param_groups:
            g.setdefault("lr_mult", 1.0)
            g.setdefault("base_weight_decay", g["weight_decay"])

    def set_iteration(self, t: int) -> float:
        """Apply the rate of iteration ``t``; returns the base rate (before group multipliers)."""
        lr = self.schedule.lr_at(t)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g["lr_mult"]
            if self.wd_schedule is not None:
                g["weight_decay"] = self.wd_schedule.wd_at(t, g["base_weight_decay"])
        self.last_iter = t
        return lr

    def state_dict(self) -> dict:
        return {
            "last_iter": self.last_iter,
            "type": self.schedule.type,
            "base_lr": self.schedule.base_lr,
            "total_iters": self.schedule.total_iters,
        }

    def load_state_dict(self, state: dict) -> None:
        self.last_iter = int(state["last_iter"])

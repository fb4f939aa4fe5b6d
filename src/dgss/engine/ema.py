"""Exponential moving average of the trainable weights (``docs/methods/soma.md``, mmengine's EMA hook).

After every optimiser step (``finished`` = number of finished iterations)::

    finished < begin_iter:  ema <- θ                                  (a copy, every step)
    first averaged step:     ema <- θ                                  (the average starts from a copy)
    afterwards:              ema <- (1 − m)·ema + m·θ                 (m = momentum, 2e-4 in SoMA)

Only parameters with ``requires_grad`` are averaged; buffers are the model's own (synced). Evaluation
and saved weights use the EMA (:meth:`EMA.applied`); the raw weights stay in the training state, so a
resume restores both exactly (:meth:`state_dict` / :meth:`load_state_dict`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """The averaged copy of ``model``'s trainable parameters (same names as ``model.named_parameters()``)."""

    def __init__(self, model: nn.Module, momentum: float = 2e-4, begin_iter: int = 0):
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.begin_iter = int(begin_iter)
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().clone() for n, p in self.params.items()}
        self.steps = 0  # averaged steps taken so far

    @torch.no_grad()
    def update(self, finished: int) -> None:
        """Call after the optimiser step that finished iteration ``finished`` (1-based count)."""
        if finished < self.begin_iter:
            for n, p in self.params.items():
                self.shadow[n].copy_(p)
            return
        if self.steps == 0:
            for n, p in self.params.items():
                self.shadow[n].copy_(p)
        else:
            for n, p in self.params.items():
                self.shadow[n].lerp_(p.detach(), self.momentum)
        self.steps += 1

    @contextmanager
    def applied(self):
        """Within the block the model's trainable parameters hold the EMA; the raw values come back exactly."""
        raw = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(self.shadow[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(raw[n])

    def state_dict(self) -> dict:
        """What the training state keeps: the raw weights (the checkpoint's weights file holds the EMA)."""
        return {
            "raw": {n: p.detach().cpu().clone() for n, p in self.params.items()},
            "steps": int(self.steps),
            "momentum": self.momentum,
            "begin_iter": self.begin_iter,
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Resume: the model currently holds the EMA (loaded from the weights file); restore the raw weights."""
        missing = sorted(set(self.params) - set(state["raw"]))
        if missing:
            raise KeyError(f"EMA state lacks raw weights for {missing[:4]}")
        for n, p in self.params.items():
            self.shadow[n].copy_(p)
            p.copy_(state["raw"][n].to(p.device, p.dtype))
        self.steps = int(state["steps"])

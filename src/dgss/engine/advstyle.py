"""AdvStyle: adversarial style augmentation in the training step (``docs/methods/advstyle.md``), 0 trainable parameters.

On the batch x that enters the model (after the data pipeline and normalisation)::

    μ, σ     = mean_{H,W}(s), std_{H,W}(s) + 1e-6   per image and channel, s = x (stats_on "normalized")
                                                     or the raw 0..255 image (stats_on "raw"); unbiased std
    ŝ        = (s − μ) / σ                           (detached)
    L_a      = seg_loss(model(σ_a·ŝ + μ_a), y)        μ_a, σ_a = detached copies of μ, σ that need a gradient
    μ_a     += lr · ∂L_a/∂μ_a ;  σ_a += lr · ∂L_a/∂σ_a  ONE step of gradient ASCENT
    x_adv    = σ_a·ŝ + μ_a                            (detached; normalised again for stats_on "raw")

then the optimiser step trains on the doubled batch [x, x_adv] with labels [y, y].

The gradient is taken with ``torch.autograd.grad`` with respect to (μ_a, σ_a) only: the style step gives no
parameter a gradient (``.grad`` stays untouched) and changes no weight, but it flows through the frozen
encoder to the input (in the Freeze setting too). It runs on the unwrapped model (never through DDP's
gradient hooks); the criterion's point generator and the global RNG it may use are checkpointed, and the
``prob`` coin is a pure function of (seed, micro-step), so a resumed run stays exact.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

from ..data.datasets import sample_seed

EPS = 1e-6
_COIN_STREAM = 0xAD57


def style_stats(s: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and (unbiased) std + eps over H×W: two (B, C, 1, 1) tensors."""
    return s.mean(dim=(2, 3), keepdim=True), s.std(dim=(2, 3), keepdim=True) + eps


class AdvStyle:
    """One adversarial style step (see the module docstring).

    Args:
        lr: ascent step size γ (``augment.advstyle.lr``).
        stats_on: ``"normalized"`` (statistics of the network input) or ``"raw"`` (of the 0..255 image,
            needs the model's ``mean``/``std``).
        prob: fraction of micro-batches that get the step (a coin per micro-step, the same on every rank).
        mean, std: the model's normalisation (broadcastable to (B, 3, H, W)); used by ``stats_on="raw"``.
    """

    def __init__(
        self,
        lr: float = 1.0,
        stats_on: str = "normalized",
        prob: float = 1.0,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        eps: float = EPS,
    ):
        if stats_on not in ("normalized", "raw"):
            raise ValueError(f"AdvStyle stats_on must be 'normalized' or 'raw', got {stats_on!r}")
        if stats_on == "raw" and (mean is None or std is None):
            raise ValueError("AdvStyle stats_on='raw' needs the model's mean and std")
        self.lr, self.stats_on, self.prob, self.mean, self.std, self.eps = lr, stats_on, prob, mean, std, eps

    @classmethod
    def from_config(cls, cfg, model) -> AdvStyle:
        return cls(lr=cfg.lr, stats_on=cfg.stats_on, prob=cfg.prob, mean=model.mean, std=model.std)

    def fires(self, seed: int, step: int) -> bool:
        """Whether micro-step ``step`` (global count, iteration × accumulate + micro) gets the style step."""
        if self.prob >= 1.0:
            return True
        if self.prob <= 0.0:
            return False
        g = torch.Generator().manual_seed(sample_seed(seed, _COIN_STREAM, step))
        return float(torch.rand((), generator=g)) < self.prob

    def perturb(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[dict, torch.Tensor], dict],
        x: torch.Tensor,
        labels: torch.Tensor,
        autocast: Callable[[], AbstractContextManager] = nullcontext,
    ) -> tuple[torch.Tensor, float]:
        """Normalised batch ``x`` (B, 3, H, W) -> (x_adv (B, 3, H, W) detached, style-step loss L_a)."""
        x = x.detach()
        raw = self.stats_on == "raw"
        if raw:
            assert self.mean is not None and self.std is not None  # __init__ requires them for "raw"
            mean, std = self.mean.to(x), self.std.to(x)
            s = x * std + mean
        else:
            s = x
        mu, sigma = style_stats(s, self.eps)
        s_hat = (s - mu) / sigma
        mu_a, sigma_a = mu.clone().requires_grad_(True), sigma.clone().requires_grad_(True)
        with torch.enable_grad():
            styled = sigma_a * s_hat + mu_a
            with autocast():
                outputs = model((styled - mean) / std if raw else styled)
            loss = sum(loss_fn(outputs, labels).values())
            g_mu, g_sigma = torch.autograd.grad(loss, [mu_a, sigma_a])
        adv = (sigma + self.lr * g_sigma) * s_hat + (mu + self.lr * g_mu)
        if raw:
            adv = (adv - mean) / std
        return adv.detach(), float(loss.detach())

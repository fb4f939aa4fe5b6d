"""PASTA: proportional amplitude-spectrum augmentation (``docs/methods/pasta.md``), 0 trainable parameters.

Per image x (3, H, W) in [0, 1]::

    F  = FFT2(x) per channel                    (unnormalised forward transform)
    σ  = (α · ρ / ρ_max)^k + β                   (mode "prop"; mode "const": σ = β), same for the 3 channels
    ε  ~ N(1, σ²) per channel and frequency      (no Hermitian symmetry; ε may be negative)
    x' = clip(Re(IFFT2(|F| ε · e^{i angle F})), 0, 1)  ->  uint8 by ×255 and truncation

``|F| ε e^{i angle F}`` is computed as ``F · ε`` (the same number without the polar round trip).

ρ is the frequency radius **of the reference** by default: it builds a centred offset list per axis
(n odd: −⌊n/2⌋..⌊n/2⌋; n even: −(n/2−1)..−1, 0, 0, 1..n/2−1) and applies numpy's ``fftshift`` (not
``ifftshift``) to it. So the magnitude at FFT index u of an axis of length n is

* n even: u for u < n/2, n − 1 − u for u ≥ n/2 (true value n − u);
* n odd: |((u − ⌊n/2⌋) mod n) − ⌊n/2⌋|, e.g. 1 at DC and 0 at the last bin.

``exact_frequency_grid=True`` uses the true radius min(u, n − u) per axis instead.

All randomness comes from the given ``torch.Generator`` (in dgss the per-sample generator of the
training stream), so a seeded generator reproduces the output exactly: z = ``torch.randn((3, H, W),
generator, dtype)`` and ε = 1 + σ·z. The FFTs run in ``dtype`` (float32 by default: 3× faster than float64 on a
full-resolution GTA5 image; the uint8 result differs from a float64 computation by at most one level on
rare pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def axis_frequency(n: int, exact: bool = False) -> torch.Tensor:
    """|frequency| (in index units) at each FFT index of an axis of length ``n`` (float64, shape (n,))."""
    if n < 1:
        raise ValueError(f"PASTA: an image axis has length {n}")
    u = torch.arange(n, dtype=torch.float64)
    if exact:
        return torch.minimum(u, n - u)
    h = n // 2
    if n % 2 == 0:
        return torch.where(u < h, u, n - 1 - u)
    return ((u - h).remainder(n) - h).abs()


def frequency_radius(height: int, width: int, exact: bool = False) -> torch.Tensor:
    """ρ (H, W): sqrt(f_H[u]² + f_W[v]²) with the per-axis magnitudes of :func:`axis_frequency`."""
    fh, fw = axis_frequency(height, exact), axis_frequency(width, exact)
    return (fh[:, None] ** 2 + fw[None, :] ** 2).sqrt()


def pasta_sigma(
    height: int,
    width: int,
    *,
    alpha: float = 3.0,
    beta: float = 0.25,
    k: float = 2.0,
    mode: str = "prop",
    exact: bool = False,
) -> torch.Tensor:
    """The per-frequency standard deviation σ (H, W) of the multiplicative amplitude noise."""
    if mode == "const":
        return torch.full((height, width), float(beta), dtype=torch.float64)
    if mode != "prop":
        raise ValueError(f"PASTA mode must be 'prop' or 'const', got {mode!r}")
    rho = frequency_radius(height, width, exact)
    rmax = float(rho.max())
    ratio = rho / rmax if rmax > 0 else torch.zeros_like(rho)
    return (alpha * ratio) ** k + beta


@dataclass
class Pasta:
    """Callable ``(image (3, H, W) in 0..255 (uint8 or float), generator) -> uint8 (3, H, W)``."""

    alpha: float = 3.0
    beta: float = 0.25
    k: float = 2.0
    mode: str = "prop"
    prob: float = 1.0
    exact_frequency_grid: bool = False
    dtype: torch.dtype = torch.float32

    @classmethod
    def from_config(cls, cfg) -> Pasta:
        return cls(
            alpha=cfg.alpha,
            beta=cfg.beta,
            k=cfg.k,
            mode=cfg.mode,
            prob=cfg.prob,
            exact_frequency_grid=cfg.exact_frequency_grid,
        )

    def perturb(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x (C, H, W) float in [0, 1] -> the clipped float result (before quantisation), in ``dtype``."""
        if x.dim() != 3:
            raise ValueError(f"PASTA expects one image (C, H, W), got shape {tuple(x.shape)}")
        c, h, w = x.shape
        sigma = pasta_sigma(
            h, w, alpha=self.alpha, beta=self.beta, k=self.k, mode=self.mode, exact=self.exact_frequency_grid
        )
        spectrum = torch.fft.fft2(x.to(self.dtype))
        eps = 1.0 + sigma.to(self.dtype) * torch.randn((c, h, w), generator=generator, dtype=self.dtype)
        return torch.fft.ifft2(spectrum * eps).real.clamp(0.0, 1.0)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.prob < 1.0 and float(torch.rand((), generator=generator)) >= self.prob:
            return image
        out = self.perturb(image.to(self.dtype) / 255.0, generator)
        return (out * 255.0).to(torch.uint8)  # truncation, as torchvision's ToPILImage (mul(255).byte())

"""Robustness suite: evaluation under synthetic adverse conditions (beyond the papers).

Seven conditions x five severities, like Cityscapes-C. Every severity is a fixed parameter set
(`SEVERITY_PARAMS`, below), and all random placement (rain streaks, snow flakes, fog particles,
flare position, noise) is drawn from a seed, so a number means the same thing in every run.
Built on albumentations 2.x weather/pixel transforms (numpy-2 safe; `imagecorruptions` is not).

Pixel-sized parameters (streak length/width, flare radius, blur sigma) are given for a
1024-pixel-high image and scaled by H/1024, so a severity looks alike at any resolution.
Corruptions are applied to the original image, before the test resize.

| condition | what | parameters per severity 1..5 |
|---|---|---|
| fog | albumentations RandomFog (alpha 0.1) + global haze I*t + 200*(1-t) | fog_coef 0.3..0.9, t 0.8..0.28 |
| rain | RandomRain (slant U(-10,10)) | drizzle/default/heavy/heavy/torrential, length 10..50 px, width 1..2 |
| snow | RandomSnow "bleach" + white flakes (RandomRain, slant U(-5,5)) | snow_point 0.1..0.5, brightness 1.2..2.0, flakes 3..7 px |
| night | brightness shift then gamma (RandomBrightnessContrast, RandomGamma) | -0.05..-0.25, gamma 1.2..2.0 |
| sun_flare | RandomSunFlare (overlay, source in the upper half) | radius 150..550 px, 4..12 circles |
| noise | GaussNoise, per channel | std 0.08, 0.12, 0.18, 0.26, 0.38 (x255; ImageNet-C values) |
| blur | GaussianBlur | sigma 1, 2, 3, 4, 6 px |

(albumentations' RandomSnow "texture" method overflows uint8 on bright pixels, hence "bleach".)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

CONDITIONS: tuple[str, ...] = ("fog", "rain", "snow", "night", "sun_flare", "noise", "blur")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
REFERENCE_HEIGHT = 1024

SEVERITY_PARAMS: dict[str, tuple[dict, ...]] = {
    "fog": tuple(
        {"fog_coef": c, "transmission": t, "airlight": 200}
        for c, t in ((0.3, 0.8), (0.45, 0.65), (0.6, 0.5), (0.75, 0.38), (0.9, 0.28))
    ),
    "rain": tuple(
        {"rain_type": r, "drop_length": n, "drop_width": w, "blur": b, "brightness": k}
        for r, n, w, b, k in (
            ("drizzle", 10, 1, 3, 0.9),
            ("default", 20, 1, 3, 0.85),
            ("heavy", 30, 1, 5, 0.8),
            ("heavy", 40, 2, 5, 0.75),
            ("torrential", 50, 2, 7, 0.7),
        )
    ),
    "snow": tuple(
        {"snow_point": p, "brightness": b, "flakes": r, "flake_length": n, "flake_width": w}
        for p, b, r, n, w in (
            (0.1, 1.2, "drizzle", 3, 2),
            (0.2, 1.35, "drizzle", 4, 3),
            (0.3, 1.5, "default", 5, 3),
            (0.4, 1.75, "heavy", 6, 4),
            (0.5, 2.0, "torrential", 7, 4),
        )
    ),
    "night": tuple(
        {"brightness": -b, "gamma": g} for b, g in ((0.05, 1.2), (0.1, 1.4), (0.15, 1.6), (0.2, 1.8), (0.25, 2.0))
    ),
    "sun_flare": tuple({"radius": r, "circles": n} for r, n in ((150, 4), (250, 6), (350, 8), (450, 10), (550, 12))),
    "noise": tuple({"std": s} for s in (0.08, 0.12, 0.18, 0.26, 0.38)),
    "blur": tuple({"sigma": s} for s in (1.0, 2.0, 3.0, 4.0, 6.0)),
}
"""condition -> 5 parameter dicts (severity 1..5). Fixed: changing them changes the benchmark."""


def _albumentations():
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network
    import albumentations as A

    return A


def _px(value: float, scale: float) -> int:
    return max(1, round(value * scale))


def _haze(transmission: float, airlight: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(img: np.ndarray) -> np.ndarray:
        return np.clip(img.astype(np.float32) * transmission + airlight * (1 - transmission), 0, 255).astype(np.uint8)

    return apply


def _build(condition: str, p: dict, scale: float) -> list:
    """albumentations transforms (or plain callables) for one condition/parameter set."""
    A = _albumentations()
    if condition == "fog":
        return [
            A.RandomFog(fog_coef_range=(p["fog_coef"],) * 2, alpha_coef=0.1, p=1),
            _haze(p["transmission"], p["airlight"]),
        ]
    if condition == "rain":
        return [
            A.RandomRain(
                slant_range=(-10, 10),
                drop_length=_px(p["drop_length"], scale),
                drop_width=_px(p["drop_width"], scale),
                blur_value=p["blur"],
                brightness_coefficient=p["brightness"],
                rain_type=p["rain_type"],
                p=1,
            )
        ]
    if condition == "snow":
        return [
            A.RandomSnow(
                snow_point_range=(p["snow_point"],) * 2, brightness_coeff=p["brightness"], method="bleach", p=1
            ),
            A.RandomRain(
                slant_range=(-5, 5),
                drop_length=_px(p["flake_length"], scale),
                drop_width=_px(p["flake_width"], scale),
                drop_color=(250, 250, 250),
                blur_value=3,
                brightness_coefficient=0.95,
                rain_type=p["flakes"],
                p=1,
            ),
        ]
    if condition == "night":
        return [
            A.RandomBrightnessContrast(brightness_limit=(p["brightness"],) * 2, contrast_limit=(0, 0), p=1),
            A.RandomGamma(gamma_limit=(p["gamma"] * 100,) * 2, p=1),
        ]
    if condition == "sun_flare":
        return [
            A.RandomSunFlare(
                flare_roi=(0, 0, 1, 0.5),
                src_radius=_px(p["radius"], scale),
                num_flare_circles_range=(p["circles"],) * 2,
                method="overlay",
                p=1,
            )
        ]
    if condition == "noise":
        return [A.GaussNoise(std_range=(p["std"],) * 2, per_channel=True, p=1)]
    if condition == "blur":
        s = p["sigma"] * scale
        return [A.GaussianBlur(sigma_limit=(s, s), blur_limit=0, p=1)]
    raise KeyError(condition)


def corrupt(image: np.ndarray, condition: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply `condition` at `severity` (1..5) to an (H,W,3) uint8 RGB image -> (H,W,3) uint8.

    Deterministic for a given (image, condition, severity, seed).
    """
    if condition not in SEVERITY_PARAMS:
        raise KeyError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H,W,3) uint8 image, got {image.dtype} {image.shape}")
    scale = image.shape[0] / REFERENCE_HEIGHT
    out = np.ascontiguousarray(image)
    for i, t in enumerate(_build(condition, SEVERITY_PARAMS[condition][severity - 1], scale)):
        if hasattr(t, "set_random_seed"):
            t.set_random_seed(seed + 7919 * i)
            out = t(image=out)["image"]
        else:
            out = t(out)
    return np.ascontiguousarray(out)


@dataclass
class Corruption:
    """Dataset transform `(image (3,H,W) uint8, label, generator) -> (corrupted image, label)`.

    The per-image seed comes from `generator` (see `SegDataset(seed=...)`), else `seed`.
    """

    condition: str
    severity: int
    seed: int = 0

    def __call__(self, image: torch.Tensor, label: torch.Tensor, generator: torch.Generator | None = None):
        seed = int(torch.randint(0, 2**31 - 1, (), generator=generator)) if generator is not None else self.seed
        out = corrupt(image.permute(1, 2, 0).numpy(), self.condition, self.severity, seed)
        return torch.from_numpy(out).permute(2, 0, 1).contiguous(), label

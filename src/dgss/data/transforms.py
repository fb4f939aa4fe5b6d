"""Training and test pipelines (`docs/data-protocol.md`).

Both pipelines are callables `(image, label, generator) -> (image, label)`:
    in : image (3,H,W) uint8 RGB, label (H,W) int64 trainIds, generator torch.Generator | None
    out: image (3,h,w) float32, ImageNet-normalised; label (h,w) int64

Image and label always get the same geometric operation (torchvision v2 functionals on
`tv_tensors.Image` / `tv_tensors.Mask`); labels are only ever resized with nearest neighbour.
All randomness is drawn from `generator` (torch's global RNG if None), so a seeded generator
reproduces the output exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 scale
IMAGENET_STD = (58.395, 57.12, 57.375)
TRAIN_SCALES: tuple[int, ...] = tuple(int(512 * x * 0.1) for x in range(5, 21))
"""Short-edge choices of the 512 recipe: 256, 307, ..., 1024."""

cv2.setNumThreads(1)  # cvtColor on one crop is tiny; no thread pools inside DataLoader workers


# --------------------------------------------------------------------------------------------
# random helpers (all drawn from one generator)
# --------------------------------------------------------------------------------------------
def _rand(g: torch.Generator | None) -> float:
    return float(torch.rand((), generator=g))


def _uniform(g: torch.Generator | None, lo: float, hi: float) -> float:
    return lo + (hi - lo) * _rand(g)


def _randint(g: torch.Generator | None, lo: int, hi: int) -> int:
    """Integer in [lo, hi) (numpy `randint` semantics)."""
    return int(torch.randint(lo, hi, (), generator=g))


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------
def short_edge_size(height: int, width: int, short: int, max_long: int) -> tuple[int, int]:
    """(new_h, new_w) with short edge `short`, then long edge capped at `max_long`; int(x + 0.5)."""
    scale = short / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max(new_h, new_w) > max_long:
        s2 = max_long / max(new_h, new_w)
        new_h, new_w = new_h * s2, new_w * s2
    return int(new_h + 0.5), int(new_w + 0.5)


def fit_size(height: int, width: int, box: tuple[int, int]) -> tuple[int, int]:
    """(new_h, new_w) scaled by min(long/long_edge, short/short_edge) of `box` (mmcv keep-ratio rescale).

    `box` = (w, h) as in the configs, e.g. (1024, 512); only its long and short side matter.
    """
    long_side, short_side = max(box), min(box)
    scale = min(long_side / max(height, width), short_side / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_pair(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize image (bilinear, no antialias - as cv2 in the reference) and label (nearest) to `size`=(h, w)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, label
    image = F.resize(tv_tensors.Image(image), list(size), interpolation=InterpolationMode.BILINEAR, antialias=False)
    label = F.resize(tv_tensors.Mask(label), list(size), interpolation=InterpolationMode.NEAREST)
    return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor)


def cat_max_ratio_ok(label: torch.Tensor, cat_max_ratio: float, ignore_index: int) -> bool:
    """True if the crop has > 1 non-ignore class and the largest covers < `cat_max_ratio` of them."""
    flat = label.reshape(-1)
    flat = flat[flat != ignore_index]
    if flat.numel() == 0:
        return False
    counts = torch.bincount(flat)  # faster than unique() on a 512x512 crop
    counts = counts[counts > 0]
    return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < cat_max_ratio


def random_crop_box(
    label: torch.Tensor, crop: tuple[int, int], cat_max_ratio: float, ignore_index: int, g: torch.Generator | None
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop following mmseg's RandomCrop with `cat_max_ratio`.

    A box is drawn; while it fails `cat_max_ratio_ok` a new one is drawn, checking at most 10
    boxes; after 10 failures the 11th box is kept unchecked (exactly the reference loop).
    Images smaller than the crop give the whole extent along that side.
    """
    h, w = label.shape[-2:]
    ch, cw = min(crop[0], h), min(crop[1], w)

    def draw() -> tuple[int, int, int, int]:
        return _randint(g, 0, h - ch + 1), _randint(g, 0, w - cw + 1), ch, cw

    box = draw()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            t, l, bh, bw = box
            if cat_max_ratio_ok(label[t : t + bh, l : l + bw], cat_max_ratio, ignore_index):
                break
            box = draw()
    return box


# --------------------------------------------------------------------------------------------
# photometric distortion (mmseg PhotoMetricDistortion on uint8, HSV with OpenCV ranges)
# --------------------------------------------------------------------------------------------
def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(
    image: torch.Tensor,
    g: torch.Generator | None,
    brightness_delta: int = 32,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> torch.Tensor:
    """(3,H,W) uint8 RGB -> (3,H,W) uint8: brightness, contrast (before or after), saturation, hue.

    Each step fires with p = 0.5 and clips to [0, 255]; brightness adds U(-32, 32); contrast
    multiplies by U(0.5, 1.5); saturation multiplies S (OpenCV HSV) by U(0.5, 1.5); hue adds an
    integer in [-18, 18) to H modulo 180 (numpy `randint(-18, 18)` as in the reference).
    """
    img = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    if _randint(g, 0, 2):
        img = _convert(img, beta=_uniform(g, -brightness_delta, brightness_delta))
    mode = _randint(g, 0, 2)
    if mode == 1 and _randint(g, 0, 2):
        img = _convert(img, alpha=_uniform(g, *contrast_range))
    if _randint(g, 0, 2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=_uniform(g, *saturation_range))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if _randint(g, 0, 2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + _randint(g, -hue_delta, hue_delta)) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if mode == 0 and _randint(g, 0, 2):
        img = _convert(img, alpha=_uniform(g, *contrast_range))
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()


def normalize(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """(3,H,W) uint8/float in 0..255 -> float32 (x - mean) / std."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (image.float() - m) / s


def pad_pair(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int], ignore_index: int):
    """Pad bottom/right to `size`=(h, w): image with 0 (normalised space), label with `ignore_index`."""
    h, w = image.shape[-2:]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph == 0 and pw == 0:
        return image, label
    image = F.pad(tv_tensors.Image(image), [0, 0, pw, ph], fill=0)
    label = F.pad(tv_tensors.Mask(label), [0, 0, pw, ph], fill=ignore_index)
    return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor)


@dataclass
class TrainPipeline:
    """The 512-crop training pipeline shared by all methods (`docs/data-protocol.md`).

    short-edge resize to s ~ U{scales} (long edge <= max_long) -> random crop `crop_size` with the
    `cat_max_ratio` rule -> horizontal flip (p = flip_prob) -> photometric distortion ->
    normalise -> pad to `crop_size` (image 0, label `ignore_index`).
    Output: image (3,crop,crop) float32, label (crop,crop) int64.
    """

    crop_size: tuple[int, int] = (512, 512)
    scales: tuple[int, ...] = TRAIN_SCALES
    max_long: int = 2048
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    ignore_index: int = 255
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, image: torch.Tensor, label: torch.Tensor, generator: torch.Generator | None = None):
        g = generator
        h, w = image.shape[-2:]
        short = self.scales[_randint(g, 0, len(self.scales))]
        image, label = resize_pair(image, label, short_edge_size(h, w, short, self.max_long))
        t, l, ch, cw = random_crop_box(label, self.crop_size, self.cat_max_ratio, self.ignore_index, g)
        image, label = image[:, t : t + ch, l : l + cw], label[t : t + ch, l : l + cw]
        if _rand(g) < self.flip_prob:
            image = F.horizontal_flip(tv_tensors.Image(image)).as_subclass(torch.Tensor)
            label = F.horizontal_flip(tv_tensors.Mask(label)).as_subclass(torch.Tensor)
        if self.photometric:
            image = photometric_distortion(image.contiguous(), g)
        image = normalize(image, self.mean, self.std)
        return pad_pair(image, label.contiguous(), self.crop_size, self.ignore_index)


@dataclass(frozen=True)
class EvalResize:
    """Test-time resize: `box` = (w, h) of the config; `keep_ratio` fits inside it, else exact (w, h)."""

    box: tuple[int, int]
    keep_ratio: bool = True

    def size(self, height: int, width: int) -> tuple[int, int]:
        """Output (h, w) for an input of `height` x `width`."""
        if self.keep_ratio:
            return fit_size(height, width, self.box)
        return self.box[1], self.box[0]


EVAL_RESIZE: dict[str, EvalResize] = {
    "cityscapes": EvalResize((1024, 512)),
    "bdd100k": EvalResize((1280, 720)),
    "mapillary": EvalResize((1024, 512)),
    "acdc": EvalResize((960, 540)),
    "gta5": EvalResize((1280, 720)),  # dgss choice (no reference config)
    "deliver": EvalResize((1024, 1024), keep_ratio=False),
    "ade150": EvalResize((2048, 512)),  # dgss choice
    "ade847": EvalResize((2048, 512)),  # dgss choice
    "coco_stuff": EvalResize((2560, 640)),  # CAT-Seg's test size: short side 640, long side <= 2560
}
"""Per-dataset test resize of the protocol (`docs/data-protocol.md`)."""


@dataclass
class EvalPipeline:
    """Test transform: resize the image (bilinear) per `resize`, normalise; the label is untouched
    (metrics are computed at label resolution). Output: image (3,h,w) float32, label (H,W) int64."""

    resize: EvalResize
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, image: torch.Tensor, label: torch.Tensor, generator: torch.Generator | None = None):
        h, w = image.shape[-2:]
        size = self.resize.size(h, w)
        if (h, w) != size:
            image = F.resize(
                tv_tensors.Image(image), list(size), interpolation=InterpolationMode.BILINEAR, antialias=False
            ).as_subclass(torch.Tensor)
        return normalize(image, self.mean, self.std), label

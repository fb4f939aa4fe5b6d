"""Pictures: palettes, colourised labels, overlays with legends, depth maps, token-attention maps."""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def cityscapes_palette() -> np.ndarray:
    """(19, 3) uint8: the official Cityscapes colours in trainId order (from cityscapesscripts)."""
    from cityscapesscripts.helpers.labels import trainId2label
    return np.array([trainId2label[i].color for i in range(19)], dtype=np.uint8)


def generated_palette(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 distinct colours (golden-ratio hue steps, alternating lightness)."""
    out = np.zeros((n, 3), np.uint8)
    h = (seed * 0.1) % 1.0
    for i in range(n):
        h = (h + 0.61803398875) % 1.0
        light = (0.45, 0.6, 0.35)[i % 3]
        out[i] = np.round(np.array(colorsys.hls_to_rgb(h, light, 0.75)) * 255)
    return out


def palette_for(class_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Cityscapes colours for the 19 Cityscapes classes, generated colours for any other vocabulary."""
    from .models.presets import CITYSCAPES_CLASSES
    if tuple(class_names) == tuple(CITYSCAPES_CLASSES):
        return cityscapes_palette()
    return generated_palette(len(class_names))


def colorize(label: np.ndarray, palette: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8; ignore / out-of-range ids are black."""
    out = np.zeros(label.shape + (3,), np.uint8)
    valid = (label >= 0) & (label < len(palette)) & (label != ignore_index)
    out[valid] = palette[label[valid]]
    return out


def overlay(image: np.ndarray, label: np.ndarray, palette: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend the colourised label over the RGB image (H, W, 3) uint8."""
    col = colorize(label, palette).astype(np.float32)
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * col, 0, 255).astype(np.uint8)


def add_legend(image: np.ndarray, class_names, palette: np.ndarray, present: np.ndarray | None = None,
               max_rows: int = 24) -> np.ndarray:
    """Append a legend column listing the classes (those present in the prediction first)."""
    idx = list(range(len(class_names)))
    if present is not None:
        idx = [i for i in idx if present[i]] or idx[:1]
    idx = idx[:max_rows]
    H = image.shape[0]
    row_h = max(14, min(22, H // max(len(idx), 1)))
    font = ImageFont.load_default()
    width = 12 + 16 + 8 + 7 * max(len(str(class_names[i])[:28]) for i in idx)
    panel = Image.new("RGB", (width, H), (255, 255, 255))
    d = ImageDraw.Draw(panel)
    for r, i in enumerate(idx):
        y = 6 + r * row_h
        if y + row_h > H:
            break
        d.rectangle([6, y, 6 + 14, y + row_h - 6], fill=tuple(int(c) for c in palette[i]), outline=(0, 0, 0))
        d.text((6 + 20, y), str(class_names[i])[:28], fill=(0, 0, 0), font=font)
    return np.concatenate([image, np.asarray(panel)], axis=1)


def colorize_depth(depth: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """Relative depth (H, W) (larger = nearer, as DAv2) -> (H, W, 3) uint8, min-max normalised."""
    import matplotlib
    d = depth.astype(np.float64)
    lo, hi = np.percentile(d, 1), np.percentile(d, 99)
    d = np.clip((d - lo) / max(hi - lo, 1e-8), 0, 1)
    return (matplotlib.colormaps[cmap](d)[..., :3] * 255).astype(np.uint8)


def colorize_tokens(token_index: np.ndarray, weight: np.ndarray, num_tokens: int) -> np.ndarray:
    """Token-attention picture: hue = the token a patch attends to most, brightness = its weight."""
    pal = generated_palette(num_tokens, seed=3).astype(np.float32)
    w = (weight - weight.min()) / max(float(weight.max() - weight.min()), 1e-8)
    return (pal[token_index] * (0.35 + 0.65 * w[..., None])).astype(np.uint8)


def save_png(array: np.ndarray, path) -> None:
    Image.fromarray(array).save(path)

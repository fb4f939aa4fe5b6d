"""Pictures: palettes, colourised labels, overlays with legends, depth maps, token-attention maps, and
labelled grids / banners / legend strips / IoU charts that explain themselves."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def cityscapes_palette() -> np.ndarray:
    """(19, 3) uint8: the official Cityscapes colours in trainId order (from cityscapesscripts)."""
    from cityscapesscripts.helpers.labels import trainId2label

    return np.array([trainId2label[i].color for i in range(19)], dtype=np.uint8)


def cityscapes_names() -> tuple[str, ...]:
    """The 19 Cityscapes class names in trainId order (from cityscapesscripts, as the palette)."""
    from cityscapesscripts.helpers.labels import trainId2label

    return tuple(trainId2label[i].name for i in range(19))


def generated_palette(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) uint8 distinct colours (golden-ratio hue steps, alternating lightness)."""
    out = np.zeros((n, 3), np.uint8)
    h = (seed * 0.1) % 1.0
    for i in range(n):
        h = (h + 0.61803398875) % 1.0
        light = (0.45, 0.6, 0.35)[i % 3]
        out[i] = np.round(np.array(colorsys.hls_to_rgb(h, light, 0.75)) * 255)
    return out


def is_palette(colours, n: int) -> bool:
    """Whether ``colours`` lists exactly one [r, g, b] of ints in 0..255 for each of ``n`` classes."""
    return (
        isinstance(colours, (list, tuple))
        and len(colours) == n
        and all(
            isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in colours
        )
    )


def palette_for(class_names: list[str] | tuple[str, ...], palette=None) -> np.ndarray:
    """``palette`` (one RGB per class) when given, else Cityscapes colours for the 19 Cityscapes classes
    and generated colours for any other vocabulary. Returns (K, 3) uint8."""
    if palette is not None and len(palette) == len(class_names):
        return np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if tuple(class_names) == cityscapes_names():
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


def add_legend(
    image: np.ndarray, class_names, palette: np.ndarray, present: np.ndarray | None = None, max_rows: int = 24
) -> np.ndarray:
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


def font(size: int = 18):
    """Pillow's built-in scalable font (no font files needed); the small bitmap font on old Pillows."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, fnt) -> float:
    box = draw.textbbox((0, 0), text, font=fnt)
    return box[2] - box[0]


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and _text_width(draw, trial, fnt) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def banner(text: str, width: int, *, size: int = 18, color=(176, 0, 32)) -> np.ndarray:
    """A full-width strip of white text on ``color`` (wrapped to ``width``): warnings pictures carry."""
    fnt = font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(probe, text, fnt, width - 24)
    line_h = size + 6
    img = Image.new("RGB", (width, 12 + line_h * len(lines)), color)
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        d.text((12, 6 + i * line_h), line, fill=(255, 255, 255), font=fnt)
    return np.asarray(img)


def legend_strip(
    class_names, palette: np.ndarray, ids, width: int, *, size: int = 16, title: str = "classes present:"
) -> np.ndarray:
    """Swatches + names of the classes ``ids``, flowed left to right into rows ``width`` wide."""
    fnt = font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items = [(int(k), str(class_names[k])) for k in ids if 0 <= k < len(class_names)]
    rows: list[list[tuple[int, str, float]]] = [[]]
    row_h, x = size + 10, 12 + _text_width(probe, title, fnt) + 14
    start = x
    for k, name in items:
        w = size + 8 + _text_width(probe, name, fnt) + 18
        if x + w > width - 12 and rows[-1]:
            rows.append([])
            x = start
        rows[-1].append((k, name, x))
        x += w
    img = Image.new("RGB", (width, 10 + row_h * len(rows)), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((12, 8), title, fill=(0, 0, 0), font=fnt)
    for r, row in enumerate(rows):
        y = 6 + r * row_h
        for k, name, x0 in row:
            d.rectangle([x0, y + 2, x0 + size, y + 2 + size], fill=tuple(int(c) for c in palette[k]), outline=(0, 0, 0))
            d.text((x0 + size + 6, y + 2), name, fill=(0, 0, 0), font=fnt)
    return np.asarray(img)


def titled_grid(
    tiles: list[list[np.ndarray]],
    *,
    row_labels: list[str] | None = None,
    col_titles: list[str] | None = None,
    header=(),
    footer=(),
    gap: int = 4,
    size: int = 20,
) -> np.ndarray:
    """Tiles (rows of RGB images) on white, with row labels on the left, column titles on top, strips
    above (``header``, e.g. :func:`banner`) and below (``footer``, e.g. :func:`legend_strip`). A strip
    is an array (padded with white to the width) or a function ``width -> array`` drawn at the full width."""
    fnt = font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 16 + max((_text_width(probe, t, fnt) for t in row_labels or []), default=0) + (12 if row_labels else 0)
    top = size + 16 if col_titles else 0
    col_w = [max(row[c].shape[1] for row in tiles) for c in range(len(tiles[0]))]
    row_h = [max(t.shape[0] for t in row) for row in tiles]
    W = left + sum(col_w) + gap * (len(col_w) - 1) + 8
    H = top + sum(row_h) + gap * (len(row_h) - 1) + 8
    grid = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(grid)
    xs = [left + sum(col_w[:c]) + gap * c for c in range(len(col_w))]
    for c, t in enumerate(col_titles or []):
        d.text((xs[c] + (col_w[c] - _text_width(probe, t, fnt)) // 2, 6), t, fill=(0, 0, 0), font=fnt)
    y = top
    for r, row in enumerate(tiles):
        if row_labels:
            d.text((12, y + (row_h[r] - size) // 2), row_labels[r], fill=(0, 0, 0), font=fnt)
        for c, tile in enumerate(row):
            grid.paste(Image.fromarray(tile), (xs[c], y))
        y += row_h[r] + gap
    header = [h(W) if callable(h) else h for h in header]
    footer = [f(W) if callable(f) else f for f in footer]
    W = max([W] + [a.shape[1] for a in (*header, *footer)])

    def pad(a: np.ndarray) -> np.ndarray:
        return (
            a
            if a.shape[1] == W
            else np.concatenate([a, np.full((a.shape[0], W - a.shape[1], 3), 255, np.uint8)], axis=1)
        )

    return np.concatenate([pad(a) for a in (*header, np.asarray(grid), *footer)], axis=0)


def iou_bar_chart(class_names, series: dict[str, list[float]], path, *, title: str, note: str | None = None) -> None:
    """Grouped bars of per-class IoU (%), one bar per series (e.g. clean vs mean of adverse conditions);
    classes that are NaN in every series are left out. ``note`` goes under the title (e.g. random weights)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vals = {k: np.asarray(v, dtype=float) for k, v in series.items()}
    keep = [i for i in range(len(class_names)) if any(not np.isnan(v[i]) for v in vals.values())]
    names = [str(class_names[i]) for i in keep]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(names) + 2), 4.2))
    x = np.arange(len(names))
    width = 0.8 / max(len(vals), 1)
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for j, (label, v) in enumerate(vals.items()):
        bars = ax.bar(
            x + (j - (len(vals) - 1) / 2) * width,
            np.nan_to_num(v[keep]),
            width,
            label=label,
            color=colors[j % len(colors)],
        )
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=11)
    if note:
        ax.text(
            0.5,
            1.0,
            note,
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=8,
            color="#b00020",
            fontweight="bold",
        )
        ax.set_title(title, fontsize=11, pad=16)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_png(array: np.ndarray, path) -> None:
    Image.fromarray(array).save(path)

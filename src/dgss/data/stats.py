"""`dgss data stats folder ROOT`: class frequencies of a folder dataset per split and domain.

For every ``<split>`` or ``<split>/<domain>`` group: the number of images, and per class the share of
labelled (non-ignore) pixels and the number of images the class appears in; printed as a Markdown
table and drawn as a grouped bar chart (PNG, written outside the dataset). Reads only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_write
from .datasets import decode_label
from .folder import FolderClasses, list_folder_samples, load_classes, remap_label, splits


@dataclass
class GroupStats:
    """Pixel counts of one split/domain group: ``pixels`` (K,) per class, ``images_with`` (K,)."""

    images: int
    pixels: np.ndarray
    images_with: np.ndarray
    ignored: int = 0

    @property
    def labelled(self) -> int:
        return int(self.pixels.sum())

    def shares(self) -> np.ndarray:
        """Per-class share of the labelled pixels, in % (K,)."""
        return 100.0 * self.pixels / max(self.labelled, 1)


@dataclass
class FolderStats:
    classes: FolderClasses
    groups: dict[str, GroupStats] = field(default_factory=dict)  # "train" or "val/night" -> stats

    def table(self) -> str:
        """Markdown: one row per class, per group the pixel share (%) and the image count."""
        keys = list(self.groups)
        head = "| class | " + " | ".join(f"{k} % px (imgs)" for k in keys) + " |"
        lines = [head, "|---|" + "---:|" * len(keys)]
        for c, name in enumerate(self.classes.names):
            cells = [f"{g.shares()[c]:.2f} ({int(g.images_with[c])})" for g in self.groups.values()]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("| *images* | " + " | ".join(str(g.images) for g in self.groups.values()) + " |")
        lines.append(
            "| *ignored px %* | "
            + " | ".join(f"{100.0 * g.ignored / max(g.ignored + g.labelled, 1):.2f}" for g in self.groups.values())
            + " |"
        )
        return "\n".join(lines)

    def absent(self) -> list[tuple[str, str]]:
        """(group, class) pairs where a class has no pixel: worth knowing before training."""
        return [(k, n) for k, g in self.groups.items() for c, n in enumerate(self.classes.names) if g.pixels[c] == 0]


def folder_stats(root: str | Path, split_names: Sequence[str] | None = None) -> FolderStats:
    """Count class pixels of every split (default: all) and domain of the folder dataset at ``root``."""
    classes = load_classes(root)
    info = classes.info()
    K = classes.num_classes
    out = FolderStats(classes)
    for split in split_names or splits(root):
        for s in list_folder_samples(root, split, classes=classes):
            key = split if classes.domains is None else f"{split}/{s.domain.split('/', 1)[1]}"
            g = out.groups.setdefault(key, GroupStats(0, np.zeros(K, np.int64), np.zeros(K, np.int64)))
            assert s.label is not None  # list_folder_samples lists labelled samples only
            lab = decode_label(s.label, s.label_format)
            if info.id_map:
                lab = remap_label(lab, info.id_map, info.ignore_index, s.label)
            lab = np.asarray(lab, dtype=np.int64).ravel()
            valid = lab[lab < K]
            counts = np.bincount(valid, minlength=K)[:K]
            g.images += 1
            g.pixels += counts
            g.images_with += counts > 0
            g.ignored += int((lab == classes.ignore_index).sum())
            bad = lab[(lab >= K) & (lab != classes.ignore_index)]
            if bad.size:
                raise DataError(
                    f"label {s.label} has values {np.unique(bad)[:10].tolist()} outside the {K} classes "
                    f"of {classes.source} (ignore = {classes.ignore_index}); run `dgss data check folder {root}`"
                )
    return out


def stats_chart(stats: FolderStats, path: str | Path) -> Path:
    """Grouped horizontal bars: per class, the share of labelled pixels (%) in every group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stats.classes.names)
    K, keys = len(names), list(stats.groups)
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.32 * K * max(1, min(len(keys), 4)) ** 0.5 + 1.5)))
    y = np.arange(K)
    h = 0.8 / max(len(keys), 1)
    for j, k in enumerate(keys):
        ax.barh(
            y + (j - (len(keys) - 1) / 2) * h, stats.groups[k].shares(), h, label=f"{k} ({stats.groups[k].images} img)"
        )
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of labelled pixels (%)")
    ax.set_title(f"class frequencies of {stats.classes.name}", fontsize=11)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), durable=False)
    finally:
        plt.close(fig)

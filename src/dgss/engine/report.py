"""Evaluation reports: printed tables, JSON / CSV / Markdown files and bar charts."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..metrics import MetricsSummary


def domain_table(summary: MetricsSummary) -> str:
    return summary.to_markdown(per_class=False)


def class_table(summary: MetricsSummary) -> str:
    return summary.to_markdown(per_class=True)


def bar_charts(summary: MetricsSummary, out: Path) -> list[Path]:
    """``miou_per_domain.png`` and ``iou_per_class.png`` (one bar group per domain)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    doms = list(summary.domains)
    vals = [100 * summary.domains[d].miou for d in doms] + [100 * summary.mean]
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(vals) + 2), 3.5))
    bars = ax.bar(doms + ["mean"], vals, color=["#4c72b0"] * len(doms) + ["#dd8452"])
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, max(100, max(vals) * 1.1 if vals else 100))
    ax.set_title("mIoU per domain")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(out / "miou_per_domain.png", dpi=120)
    plt.close(fig)
    paths.append(out / "miou_per_domain.png")
    names = summary.class_names
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names) * max(1, len(doms)) ** 0.5 + 2), 4))
    width = 0.8 / max(len(doms), 1)
    x = np.arange(len(names))
    for i, d in enumerate(doms):
        iou = [0.0 if v is None or math.isnan(v) else 100 * v for v in summary.domains[d].iou]
        ax.bar(x + i * width, iou, width, label=d)
    ax.set_xticks(x + width * (len(doms) - 1) / 2, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title("IoU per class")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "iou_per_class.png", dpi=120)
    plt.close(fig)
    paths.append(out / "iou_per_class.png")
    return paths


def write_report(
    summary: MetricsSummary, out: str | Path, *, extra: dict | None = None, charts: bool = True
) -> list[Path]:
    """results.json / results.csv / results.md (+ charts) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = summary.to_dict()
    if extra:
        data.update(extra)
    (out / "results.json").write_text(json.dumps(data, indent=2))
    (out / "results.csv").write_text(summary.to_csv())
    md = [
        "# Evaluation",
        "",
        "## mIoU per domain",
        "",
        domain_table(summary),
        "",
        "## IoU per class",
        "",
        class_table(summary),
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    paths = [out / "results.json", out / "results.csv", out / "results.md"]
    if charts:
        paths += bar_charts(summary, out)
    return paths

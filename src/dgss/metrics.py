"""Semantic-segmentation metrics of the DG protocol (`docs/data-protocol.md`).

For each domain a K x K confusion matrix (rows = ground truth, columns = prediction, int64) is
accumulated over **all** its images, ignoring pixels whose label is the ignore index. Then
IoU_c = TP / (TP + FP + FN) and mIoU = mean over the classes with a non-zero union (NaN-mean) -
mmseg's dataset-level intersection/union accumulation. Per-image averaging is not used.

`DomainMetrics` keeps one matrix per domain tag, can be summed over `torch.distributed` ranks,
and `summary()` gives per-domain mIoU, per-class IoU and the mean over chosen domains.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


def confusion_matrix(
    pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """(K,K) int64 confusion matrix of one prediction; rows = ground truth, cols = prediction.

    pred, label: integer tensors of the same shape (e.g. (H,W)). Pixels with label == ignore_index
    are skipped. Any other label outside 0..K-1, or a prediction outside 0..K-1, raises ValueError.
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(label.shape)}")
    label = label.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = label != ignore_index
    label, pred = label[keep], pred[keep]
    if label.numel():
        if int(label.min()) < 0 or int(label.max()) >= num_classes:
            bad = torch.unique(label[(label < 0) | (label >= num_classes)])[:10].tolist()
            raise ValueError(f"label values {bad} are neither classes 0..{num_classes - 1} nor ignore {ignore_index}")
        if int(pred.min()) < 0 or int(pred.max()) >= num_classes:
            raise ValueError(f"prediction values outside 0..{num_classes - 1}")
    return (
        torch.bincount(label * num_classes + pred, minlength=num_classes * num_classes)
        .reshape(num_classes, num_classes)
        .cpu()
    )


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """(K,) float64 IoU per class from a confusion matrix; NaN where the union is 0."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = tp / union
    iou[union == 0] = float("nan")
    return iou


def mean_iou(cm: torch.Tensor) -> float:
    """mIoU in [0, 1]: mean IoU over classes with a non-zero union (NaN if there is none)."""
    iou = iou_per_class(cm)
    valid = ~torch.isnan(iou)
    return float(iou[valid].mean()) if valid.any() else float("nan")


@dataclass
class DomainResult:
    """Metrics of one domain. `iou` has K entries (NaN = class absent from GT and prediction)."""

    miou: float
    iou: list[float]
    pixels: int  # labelled (non-ignore) pixels scored
    images: int


@dataclass
class MetricsSummary:
    """Per-domain results and the mean mIoU over `mean_over` (all domains if not chosen)."""

    class_names: list[str]
    domains: dict[str, DomainResult]
    mean_over: list[str]
    mean: float

    def to_dict(self, percent: bool = True) -> dict:
        """JSON-ready dict; values in % with two decimals if `percent` (NaN -> None)."""

        def f(x: float):
            if x is None or math.isnan(x):
                return None
            return round(100 * x, 2) if percent else x

        return {
            "mean": f(self.mean),
            "mean_over": list(self.mean_over),
            "domains": {
                d: {
                    "mIoU": f(r.miou),
                    "images": r.images,
                    "pixels": r.pixels,
                    "IoU": {c: f(v) for c, v in zip(self.class_names, r.iou, strict=False)},
                }
                for d, r in self.domains.items()
            },
        }

    def to_markdown(self, per_class: bool = False) -> str:
        """Markdown table: one column per domain plus the mean (mIoU in %, two decimals).

        With `per_class`, one row per class is added below the mIoU row.
        """
        doms = list(self.domains)
        head = ["", *doms, f"mean ({len(self.mean_over)})"]
        rows = [["mIoU", *(_pct(self.domains[d].miou) for d in doms), _pct(self.mean)]]
        if per_class:
            for k, c in enumerate(self.class_names):
                rows.append([c, *(_pct(self.domains[d].iou[k]) for d in doms), ""])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)

    def to_csv(self) -> str:
        """CSV with columns domain, mIoU, then one IoU column per class (all in %)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["domain", "mIoU", *self.class_names])
        for d, r in self.domains.items():
            w.writerow([d, _pct(r.miou), *(_pct(v) for v in r.iou)])
        w.writerow([f"mean({'+'.join(self.mean_over)})", _pct(self.mean), *([""] * len(self.class_names))])
        return buf.getvalue()


def _pct(x: float) -> str:
    return "nan" if x is None or math.isnan(x) else f"{100 * x:.2f}"


@dataclass
class DomainMetrics:
    """Confusion matrices accumulated per domain tag.

    Usage: `m.update("acdc/night", pred (H,W), label (H,W))` per image, then (under DDP)
    `m.all_reduce()`, then `m.summary(mean_over=[...])`.
    """

    num_classes: int
    ignore_index: int = 255
    class_names: list[str] | None = None
    matrices: dict[str, torch.Tensor] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)

    def update(self, domain: str, pred: torch.Tensor, label: torch.Tensor) -> None:
        """Add one image (or a batch with matching shapes) of `domain`."""
        cm = confusion_matrix(pred, label, self.num_classes, self.ignore_index)
        if domain in self.matrices:
            self.matrices[domain] += cm
        else:
            self.matrices[domain] = cm.clone()
        self.images[domain] = self.images.get(domain, 0) + (1 if pred.dim() <= 2 else pred.shape[0])

    def update_confusion(self, domain: str, cm: torch.Tensor, images: int = 1) -> None:
        """Add a precomputed (K,K) confusion matrix."""
        cm = cm.to(torch.int64).cpu()
        self.matrices[domain] = self.matrices[domain] + cm if domain in self.matrices else cm.clone()
        self.images[domain] = self.images.get(domain, 0) + images

    def merge(self, other: DomainMetrics) -> None:
        """Add another accumulator's matrices (same classes)."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge metrics with different numbers of classes")
        for d, cm in other.matrices.items():
            self.update_confusion(d, cm, other.images.get(d, 0))

    def all_reduce(self) -> None:
        """Sum matrices over all ranks (torch.distributed); no-op if not initialised.

        Ranks may have seen different domains: the union of domain names is gathered first.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        names: list[list[str]] = [None] * dist.get_world_size()  # type: ignore[list-item]
        dist.all_gather_object(names, sorted(self.matrices))
        domains = sorted({d for ns in names for d in ns})
        k = self.num_classes
        device = (
            torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        )
        stacked = torch.stack([self.matrices.get(d, torch.zeros(k, k, dtype=torch.int64)) for d in domains]).to(device)
        counts = torch.tensor([self.images.get(d, 0) for d in domains], dtype=torch.int64, device=device)
        dist.all_reduce(stacked)
        dist.all_reduce(counts)
        self.matrices = {d: stacked[i].cpu() for i, d in enumerate(domains)}
        self.images = {d: int(counts[i]) for i, d in enumerate(domains)}

    def result(self, domain: str) -> DomainResult:
        cm = self.matrices[domain]
        return DomainResult(mean_iou(cm), iou_per_class(cm).tolist(), int(cm.sum()), self.images.get(domain, 0))

    def summary(self, mean_over: Sequence[str] | None = None) -> MetricsSummary:
        """Per-domain results in insertion order and the mean mIoU over `mean_over` (default: all).

        Raises KeyError naming the missing domains if `mean_over` lists domains never updated.
        """
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        doms = {d: self.result(d) for d in self.matrices}
        over = list(mean_over) if mean_over is not None else list(doms)
        missing = [d for d in over if d not in doms]
        if missing:
            raise KeyError(f"no results for domain(s) {missing}; have {list(doms)}")
        vals = [doms[d].miou for d in over]
        mean = sum(vals) / len(vals) if vals else float("nan")
        return MetricsSummary(list(names), doms, over, mean)

"""Evaluation loop of the DG protocol (`docs/data-protocol.md`).

Per image: test resize of its dataset (`EVAL_RESIZE`), normalise, `predict_logits` (the segmentor's
sliding-window inference), logits resized bilinearly (align_corners=False) to the label size,
argmax, confusion matrix accumulated under the image's domain tag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data.datasets import SegDataset, Transform
from ..data.transforms import EVAL_RESIZE, EvalPipeline, EvalResize
from ..metrics import DomainMetrics

PredictFn = Callable[[torch.Tensor], torch.Tensor]
"""predict_logits(images (B,3,h,w) float32 normalised) -> scores (B,K,h',w'), any h', w'."""


def upsample_argmax(logits: torch.Tensor, size: tuple[int, int], chunk: int = 64) -> torch.Tensor:
    """(K,h,w) scores -> (H,W) int64 argmax after bilinear resize to `size` (align_corners=False).

    Classes are resized in chunks of `chunk` with a running max, so 847-class outputs at full
    label resolution never materialise (K,H,W); ties resolve to the lowest class like `argmax`.
    """
    k = logits.shape[0]
    if tuple(logits.shape[-2:]) == tuple(size) and k <= chunk:
        return logits.argmax(0)
    best_val = best_idx = None
    for start in range(0, k, chunk):
        part = logits[start : start + chunk].unsqueeze(0).float()
        if tuple(part.shape[-2:]) != tuple(size):
            part = F.interpolate(part, size=size, mode="bilinear", align_corners=False)
        val, idx = part[0].max(0)
        idx = idx + start
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val > best_val
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx, cast(torch.Tensor, best_idx))  # set together with best_val
    return cast(torch.Tensor, best_idx)  # k >= 1: the loop ran


def _collate(batch: list[dict]) -> list[dict]:
    return batch


@dataclass
class _Compose:
    first: Transform
    second: Transform

    def __call__(self, image, label, generator=None):
        image, label = self.first(image, label, generator)
        return self.second(image, label, generator)


@torch.no_grad()
def evaluate(
    predict_logits: PredictFn,
    dataset: SegDataset,
    *,
    metrics: DomainMetrics | None = None,
    resize: EvalResize | None = None,
    pre_transform: Transform | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> DomainMetrics:
    """Evaluate `predict_logits` on `dataset` (raw, untransformed `SegDataset`); returns the metrics.

    Args:
        resize: test resize; default `EVAL_RESIZE[dataset.info.name]`.
        pre_transform: applied to the raw uint8 image/label before the test pipeline (e.g. a
            `robustness.Corruption`); it gets a per-image generator seeded from (`seed`, index).
        metrics: accumulate into this (e.g. to evaluate several datasets into one table);
            a new `DomainMetrics` with the dataset's classes otherwise.
        batch_size: images of equal test size are stacked into one `predict_logits` call.
    Call `metrics.all_reduce()` afterwards when running distributed.
    """
    info = dataset.info
    if metrics is None:
        metrics = DomainMetrics(info.num_classes, info.ignore_index, list(info.class_names) or None)
    if resize is None:
        if info.name not in EVAL_RESIZE:
            raise KeyError(f"no test resize defined for {info.name!r}; pass resize=")
        resize = EVAL_RESIZE[info.name]
    transform: Transform = EvalPipeline(resize)
    if pre_transform is not None:
        transform = _Compose(pre_transform, transform)
    loader: Iterable[Any] = DataLoader(
        dataset.with_transform(transform, seed=seed),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=f"eval {info.name}", unit="batch")
    for batch in loader:
        groups: dict[tuple[int, ...], list[dict]] = {}
        for item in batch:
            groups.setdefault(tuple(item["image"].shape), []).append(item)
        for items in groups.values():
            images = torch.stack([it["image"] for it in items]).to(device)
            logits = predict_logits(images)
            if logits.dim() != 4 or logits.shape[0] != len(items) or logits.shape[1] != info.num_classes:
                raise ValueError(
                    f"predict_logits returned shape {tuple(logits.shape)}; expected "
                    f"({len(items)}, {info.num_classes}, h, w) for {info.name}"
                )
            for it, lg in zip(items, logits, strict=False):
                label = it["label"]
                pred = upsample_argmax(lg, tuple(label.shape))
                metrics.update(it["domain"], pred.cpu(), label)
    return metrics

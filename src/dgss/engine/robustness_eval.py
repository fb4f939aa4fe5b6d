"""Robustness evaluation: mIoU of a model under every synthetic corruption x severity
(:mod:`dgss.data.robustness`), as a table of conditions by severities."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.robustness import CONDITIONS, SEVERITIES, SEVERITY_PARAMS, Corruption
from ..metrics import DomainMetrics, MetricsSummary
from .evaluator import evaluate


@dataclass
class RobustnessReport:
    """mIoU (mean over the dataset's domains, in [0, 1]) per (condition, severity), plus clean."""

    clean: float | None
    miou: dict[tuple[str, int], float]
    summaries: dict[tuple[str, int], MetricsSummary] = field(default_factory=dict, repr=False)

    def condition_mean(self, condition: str) -> float:
        vals = [v for (c, _), v in self.miou.items() if c == condition]
        return sum(vals) / len(vals) if vals else float("nan")

    @property
    def mean(self) -> float:
        """Mean over all evaluated conditions and severities."""
        vals = list(self.miou.values())
        return sum(vals) / len(vals) if vals else float("nan")

    def to_markdown(self) -> str:
        """Rows = conditions, columns = severities + mean; values are mIoU in %."""
        sevs = sorted({s for _, s in self.miou})
        conds = list(dict.fromkeys(c for c, _ in self.miou))

        def f(x: float | None) -> str:
            return "-" if x is None or math.isnan(x) else f"{100 * x:.2f}"

        lines = [
            f"clean mIoU: {f(self.clean)}",
            "",
            "| condition | " + " | ".join(f"S{s}" for s in sevs) + " | mean |",
            "|---|" + "---|" * (len(sevs) + 1),
        ]
        for c in conds:
            lines.append(
                f"| {c} | " + " | ".join(f(self.miou.get((c, s))) for s in sevs) + f" | {f(self.condition_mean(c))} |"
            )
        lines.append(
            "| **all** | "
            + " | ".join(f(float(np.mean([self.miou[(c, s)] for c in conds if (c, s) in self.miou]))) for s in sevs)
            + f" | {f(self.mean)} |"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"clean": self.clean, "mean": self.mean, "miou": {f"{c}/{s}": v for (c, s), v in self.miou.items()}}


def evaluate_robustness(
    predict_logits: Callable[[torch.Tensor], torch.Tensor],
    dataset,
    conditions: Sequence[str] = CONDITIONS,
    severities: Sequence[int] = SEVERITIES,
    *,
    clean: bool = True,
    seed: int = 0,
    **eval_kwargs,
) -> RobustnessReport:
    """Evaluate on `dataset` (a raw `SegDataset`) under every condition x severity.

    Each run uses `dgss.engine.evaluator.evaluate` with a `Corruption` pre-transform; the reported
    number is the mean mIoU over the dataset's domains. `eval_kwargs` go to `evaluate`.
    """

    def run(pre) -> MetricsSummary:
        m = DomainMetrics(dataset.info.num_classes, dataset.info.ignore_index, list(dataset.info.class_names) or None)
        evaluate(predict_logits, dataset, metrics=m, pre_transform=pre, seed=seed, **eval_kwargs)
        return m.summary()

    for c in conditions:
        if c not in SEVERITY_PARAMS:
            raise KeyError(f"unknown condition {c!r}; known: {', '.join(CONDITIONS)}")
    clean_miou = run(None).mean if clean else None
    report = RobustnessReport(clean_miou, {})
    for c in conditions:
        for s in severities:
            summ = run(Corruption(c, s, seed))
            report.miou[(c, s)] = summ.mean
            report.summaries[(c, s)] = summ
    return report

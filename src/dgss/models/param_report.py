"""Per-module parameter counts (total / trainable / frozen), as `dgss params` prints them."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ParamRow:
    module: str
    total: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable


def count(module: nn.Module) -> ParamRow:
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return ParamRow("", total, trainable)


def param_rows(model: nn.Module, groups: dict[str, nn.Module] | None = None,
               subtotals: dict[str, nn.Module] | None = None) -> list[ParamRow]:
    """One row per named group (default: the model's direct children), then ``subtotals`` rows
    (e.g. the whole head) and a ``total`` row.

    Groups must not share parameters; parameters outside every group get an ``(other)`` row.
    """
    groups = groups if groups is not None else dict(model.named_children())
    rows, seen = [], set()
    for name, mod in groups.items():
        c = count(mod)
        rows.append(ParamRow(name, c.total, c.trainable))
        seen.update(id(p) for p in mod.parameters())
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        rows.append(ParamRow("(other)", sum(p.numel() for p in rest),
                             sum(p.numel() for p in rest if p.requires_grad)))
    for name, mod in (subtotals or {}).items():
        c = count(mod)
        rows.append(ParamRow(name, c.total, c.trainable))
    c = count(model)
    rows.append(ParamRow("total", c.total, c.trainable))
    return rows


def format_rows(title: str, rows: list[ParamRow]) -> str:
    """Plain-text table (exact counts with thousands separators and millions)."""
    w = max(len(r.module) for r in rows + [ParamRow("module", 0, 0)])
    head = f"{'module':<{w}}  {'total':>15}  {'trainable':>13}  {'frozen':>15}  {'total (M)':>10}"
    lines = [title, head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.module:<{w}}  {r.total:>15,}  {r.trainable:>13,}  {r.frozen:>15,}  {r.total / 1e6:>10.2f}")
    return "\n".join(lines)

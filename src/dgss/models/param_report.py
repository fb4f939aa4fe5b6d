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


def param_rows(
    model: nn.Module, groups: dict[str, nn.Module] | None = None, subtotals: dict[str, nn.Module] | None = None
) -> list[ParamRow]:
    """One row per named group (default: the model's direct children), then ``subtotals`` rows
    (e.g. the whole head) and a ``total`` row.

    Groups must not share parameters; parameters outside every group get an ``(other)`` row.
    """
    groups = groups if groups is not None else dict(model.named_children())
    seen: set[int]
    rows, seen = [], set()
    for name, mod in groups.items():
        c = count(mod)
        rows.append(ParamRow(name, c.total, c.trainable))
        seen.update(id(p) for p in mod.parameters())
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        rows.append(ParamRow("(other)", sum(p.numel() for p in rest), sum(p.numel() for p in rest if p.requires_grad)))
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


# Backbone-internal trainable parameters as the REIN / DepthForge / Vireo tables print them
# (``docs/methods/index.md``, ``docs/methods/rein.md``): (method, encoder) -> published value.
PUBLISHED_ADAPTER = {
    **{("rein", e): "2.99M" for e in ("dinov2-l", "eva02-l", "clip-l")},
    ("rein", "sam-h"): "4.51M",
    ("lora", "dinov2-l"): "0.79M",
    ("lora", "eva02-l"): "1.18M",
    **{(m, e): v for m, v in (("adaptformer", "3.17M"), ("vpt", "3.69M")) for e in ("dinov2-l", "eva02-l")},
    **{("fada", e): "11.65M" for e in ("dinov2-l", "eva02-l", "clip-l")},
    ("fada", "sam-h"): "16.59M",
}
FADA_DIFFERENCE = (
    "why they differ: the released FADA code (JingjunYi/FADA) builds exactly this count "
    "(2,061,825 on ViT-L, 3,107,841 on SAM-H); no released configuration or plausible variant gives "
    "the 11.65M / 16.59M that DepthForge and Vireo quote (docs/methods/fada.md)"
)


SOMA_REFERENCE_RULE = (
    "why they differ: the released SoMA code marks trainable by name, which also catches DINOv2's mask_token "
    "(never used in the forward, no gradient, never changes); dgss keeps it frozen"
)


def soma_notes(adapter_trainable: int, mask_token: int, buffers: int = 0) -> list[str]:
    """SoMA: dgss's count next to the count by the reference's requires_grad rule (+ the unused mask token)."""
    lines = [f"SoMA trainable in the backbone: dgss {adapter_trainable:,}"]
    if mask_token:
        lines[0] += f"; reference rule {adapter_trainable + mask_token:,} (+{mask_token:,} mask_token)"
        lines.append(SOMA_REFERENCE_RULE)
    if buffers:
        lines.append(f"plus frozen init snapshot buffers init_A/init_B (not parameters): {buffers:,}")
    return lines


def published_notes(cfg, adapter_trainable: int, mask_token: int = 0, buffers: int = 0) -> list[str]:
    """Lines comparing the backbone adapter count of a preset with the papers' published value
    (SoMA: with the reference rule's count; ``mask_token``: elements of the encoder's unused mask token)."""
    if cfg.method == "soma":
        return soma_notes(adapter_trainable, mask_token, buffers)
    key = (cfg.method, cfg.encoder.name)
    if key not in PUBLISHED_ADAPTER or cfg.adapter is None:
        return []
    lines = [
        f"published (paper tables): {PUBLISHED_ADAPTER[key]} trainable in the backbone; "
        f"this build (backbone.adapter): {adapter_trainable:,}"
    ]
    if cfg.method == "fada":
        lines[0] = (
            f"published (DepthForge / Vireo tables): 11.65M (ViT-L) / 16.59M (SAM-H); "
            f"this build (backbone.adapter, released code): {adapter_trainable:,}"
        )
        lines.append(FADA_DIFFERENCE)
    return lines

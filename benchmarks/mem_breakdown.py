"""MemTracker with a breakdown of the peak by module and by kind.

torch's ``MemTracker`` keeps a per-kind snapshot of the peak (parameters, buffers, gradients,
activations, temporaries, optimizer state). This subclass also tags every new storage with the module
that created it (the deepest module active at that moment, cut to a readable group such as
``encoder``, ``depth_encoder``, ``adapter``, ``head.pixel_decoder``; ``loss / outside modules`` for
tensors made outside any module) and keeps running totals per (group, kind), so the composition of
the live memory at the global peak can be printed.
"""

from __future__ import annotations

from collections import defaultdict

from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType, _UpdateType

OUTSIDE = "loss / outside modules"
_STATIC_KINDS = (_MemRefType.PARAM, _MemRefType.BUFFER, _MemRefType.GRAD, _MemRefType.OPT)


class BreakdownMemTracker(MemTracker):
    """``MemTracker`` + live bytes per (module group, kind); ``peak_breakdown`` after the run."""

    def __init__(self, depth: int = 2) -> None:
        super().__init__()
        self.group_depth = depth
        self._live: dict[tuple[str, str], int] = defaultdict(int)
        self.peak_breakdown: dict[tuple[str, str], int] = {}
        self.peak_phase = "forward"

    def _group(self, reftype) -> str:
        if reftype in _STATIC_KINDS:
            return str(reftype.value)
        names = [p for p in self._mod_tracker.parents if p != "Global"]
        if not names:
            return OUTSIDE
        parts = max(names, key=lambda n: n.count(".")).split(".")[1:]  # drop the root class name
        if not parts:
            return OUTSIDE
        head = parts[0]
        if head == "head" and len(parts) > 1:
            return f"head.{parts[1]}"
        return head

    def _update_snap(self, u_type, winfo, old_mem_consumed=None, old_reftype=None) -> None:
        super()._update_snap(u_type, winfo, old_mem_consumed=old_mem_consumed, old_reftype=old_reftype)
        if not hasattr(winfo, "group"):
            winfo.group = self._group(winfo.reftype)
        key = (winfo.group, str(winfo.reftype.value))
        if u_type == _UpdateType.ADD:
            self._live[key] += winfo.mem_consumed
        elif u_type == _UpdateType.DEL:
            self._live[key] -= winfo.mem_consumed
        elif u_type == _UpdateType.REF:
            self._live[(winfo.group, str(old_reftype.value))] -= winfo.mem_consumed
            self._live[key] += winfo.mem_consumed
        elif u_type == _UpdateType.SIZE:
            self._live[key] += winfo.mem_consumed - old_mem_consumed

    def _update_peak_stats(self, peak_state) -> None:
        before = dict(self._peak_mem)
        super()._update_peak_stats(peak_state)
        if self._peak_mem != before:
            self.peak_breakdown = {k: v for k, v in self._live.items() if v}
            self.peak_phase = "backward" if self._mod_tracker.is_bw else "forward"

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for (_, kind), v in self.peak_breakdown.items():
            out[kind] += v
        return dict(out)

    def by_group(self, kinds=("Activation", "Temp")) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for (group, kind), v in self.peak_breakdown.items():
            if kind in kinds:
                out[group] += v
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

"""Run logging (rank 0 only): JSON lines, TensorBoard scalars, a rich progress bar or plain lines.

``<work_dir>/log.jsonl`` gets one JSON object per line::

    {"type": "start", "iter": 0, "time": ..., "config": "...", "world_size": 1, "resumed_from": null}
    {"type": "train", "iter": 50, "loss": 41.27, "lr": 9.99e-05, "grad_norm": 3.1, "time_per_iter": 0.61, ...}
    {"type": "val",   "iter": 10000, "cityscapes/mIoU": 61.3, ..., "mean_mIoU": 60.9}
    {"type": "checkpoint", "iter": 4000, "weights": "iter_004000.safetensors"}

Floats are written with ``repr`` precision, so losses round-trip exactly. A resumed run appends (after a
``{"type": "resume"}`` line); readers keep the last entry per (type, iter). TensorBoard events go to
``<work_dir>/tb`` (``train/*``, ``val/*``); on resume the writer purges events after the resumed iteration.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path


def read_jsonl(path: str | Path, kind: str | None = "train") -> dict[int, dict]:
    """Entries of a ``log.jsonl`` by iteration (the last one wins), optionally of one ``type``."""
    out: dict[int, dict] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if kind is None or rec.get("type") == kind:
            out[int(rec.get("iter", -1))] = rec
    return out


class RunLogger:
    """JSON-lines + TensorBoard writer; a no-op on ranks other than 0."""

    def __init__(
        self,
        work_dir: str | Path,
        *,
        enabled: bool = True,
        jsonl: bool = True,
        tensorboard: bool = True,
        resume_iter: int | None = None,
    ):
        self.enabled = enabled
        self.work_dir = Path(work_dir)
        self._file = None
        self.tb = None
        if not enabled:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if jsonl:
            self.path = self.work_dir / "log.jsonl"
            self._file = open(self.path, "a" if resume_iter is not None else "w", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                warnings.warn(
                    "tensorboard is not installed: no TensorBoard events (pip install tensorboard)", stacklevel=2
                )
            else:
                self.tb = SummaryWriter(log_dir=str(self.work_dir / "tb"), purge_step=resume_iter)

    def write(self, kind: str, iteration: int, **fields) -> None:
        if not self.enabled or self._file is None:
            return
        rec = {"type": kind, "iter": int(iteration), "wall": round(time.time(), 3), **fields}
        self._file.write(json.dumps(rec, default=str) + "\n")

    def scalars(self, kind: str, iteration: int, values: dict[str, float], **extra) -> None:
        """Log numbers to the JSON lines and to TensorBoard as ``<kind>/<name>``."""
        if not self.enabled:
            return
        self.write(kind, iteration, **values, **extra)
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, iteration)

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class ProgressDisplay:
    """A rich progress bar (loss, lr, it/s, ETA) on a terminal; plain lines every ``interval`` otherwise."""

    def __init__(self, total: int, start: int, *, enabled: bool = True, bar: bool = True, interval: int = 50):
        self.enabled, self.total, self.interval = enabled, total, interval
        self.progress = None
        self._t0, self._i0 = time.perf_counter(), start
        self.console = None
        if not enabled:
            return
        from rich.console import Console

        self.console = Console(stderr=True)
        if bar and self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss [cyan]{task.fields[loss]}"),
                TextColumn("lr {task.fields[lr]}"),
                TextColumn("{task.fields[speed]} it/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                refresh_per_second=4,
            )
            self.task = self.progress.add_task("train", total=total, completed=start, loss="-", lr="-", speed="-")
            self.progress.start()

    def speed(self, iteration: int) -> float:
        dt = time.perf_counter() - self._t0
        return (iteration - self._i0) / dt if dt > 0 else float("nan")

    def update(self, iteration: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        speed = self.speed(iteration)
        if self.progress is not None:
            self.progress.update(
                self.task, completed=iteration, loss=f"{loss:.4f}", lr=f"{lr:.2e}", speed=f"{speed:.2f}"
            )
        elif iteration % self.interval == 0 or iteration == self.total:
            eta = (self.total - iteration) / speed if speed > 0 else float("nan")
            self.print(
                f"iter {iteration}/{self.total} | loss {loss:.4f} | lr {lr:.2e} | {speed:.2f} it/s | "
                f"eta {_fmt_time(eta)}"
            )

    def print(self, message: str) -> None:
        if not self.enabled:
            return
        if self.console is not None:
            self.console.print(message, highlight=False, markup=False, soft_wrap=True)
        else:  # pragma: no cover
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

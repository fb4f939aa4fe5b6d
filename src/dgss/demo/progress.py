"""One progress bar with an ETA over the whole `dgss demo` run (scenes, training, evaluation, pictures).

Each stage has a number of steps and a cost per step (seconds, measured on a 2-core CPU), so the bar
moves in proportion to time and its ETA covers what is left of the whole run, not only the stage in
progress. The expected costs are rescaled by the observed speed as the run goes. On a terminal it is a
rich bar; otherwise (CI, logs) one plain line every tenth of the run and at every stage change.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import cast


def _fmt(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


class RunProgress:
    """``stages``: name -> (steps, expected seconds per step), in run order."""

    def __init__(self, stages: dict[str, tuple[int, float]], *, enabled: bool = True, file=None):
        self.stages = {k: (max(int(n), 0), float(c)) for k, (n, c) in stages.items()}
        self.total = sum(n * c for n, c in self.stages.values()) or 1.0
        self.done_cost = 0.0  # expected cost of the steps done
        self.stage: str | None
        self.stage, self.step, self.note = None, 0, ""
        self.t0 = time.perf_counter()
        self.enabled = enabled
        self.file = file or sys.stderr
        self._last_tenth = -1
        self._bar = None
        if enabled and getattr(self.file, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("[bold]demo"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[what]}"),
                TextColumn("{task.fields[times]}"),
                console=Console(file=self.file),
                refresh_per_second=4,
            )
            self._task = self._bar.add_task("demo", total=1000, what="", times="")
            self._bar.start()

    # ------------------------------------------------------------------ bookkeeping
    @property
    def fraction(self) -> float:
        return min(self.done_cost / self.total, 1.0)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def eta(self) -> float:
        """Seconds left: the expected cost of the remaining steps, rescaled by the speed observed so far."""
        if self.done_cost <= 0:
            return self.total - self.done_cost
        return (self.total - self.done_cost) * self.elapsed() / self.done_cost

    def begin(self, stage: str) -> None:
        self.stage, self.step, self.note = stage, 0, ""
        self._show(force=True)

    def advance(self, n: int = 1, note: str = "") -> None:
        steps, cost = self.stages[cast(str, self.stage)]  # advance() follows begin(stage)
        n = min(n, steps - self.step)
        self.step += n
        self.done_cost += n * cost
        self.note = note
        self._show()

    def finish(self) -> None:
        self.done_cost = self.total
        if self._bar is not None:
            self._show(force=True)
            self._bar.stop()
            self._bar = None
        elif self.enabled:
            print(f"demo 100% | done in {_fmt(self.elapsed())}", file=self.file, flush=True)

    def close(self) -> None:
        """Stop the bar (after :meth:`finish`, or when the run failed part-way)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # ------------------------------------------------------------------ display
    def _what(self) -> str:
        steps = self.stages[self.stage][0] if self.stage else 0
        return f"{self.stage} {self.step}/{steps}" + (f" ({self.note})" if self.note else "")

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        times = f"{_fmt(self.elapsed())} elapsed, ETA {_fmt(self.eta())}"
        if self._bar is not None:
            self._bar.update(self._task, completed=round(1000 * self.fraction), what=self._what(), times=times)
            return
        tenth = int(10 * self.fraction)
        if force or tenth > self._last_tenth:
            self._last_tenth = max(tenth, self._last_tenth)
            print(f"demo {100 * self.fraction:3.0f}% | {self._what()} | {times}", file=self.file, flush=True)

    @contextmanager
    def training(self):
        """While inside, the trainer's iterations advance the ``training`` stage (its own bar stays off)."""
        from ..engine import trainer as trainer_module

        base = trainer_module.ProgressDisplay
        run = self

        class Forwarding(base):
            def __init__(self, total, start, **kw):
                super().__init__(total, start, **{**kw, "bar": False})
                self._seen = start

            def update(self, iteration, loss, lr):
                run.advance(iteration - self._seen, note=f"loss {loss:.3f}")
                self._seen = iteration

        trainer_module.ProgressDisplay = Forwarding
        self.begin("training")
        try:
            yield
        finally:
            trainer_module.ProgressDisplay = base

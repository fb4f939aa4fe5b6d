#!/usr/bin/env python
"""Mutation check: plant known single-line mistakes in a temporary copy of the repo, one at a time,
and check that the fast tests catch each of them.

Usage (from the repository root, with the project's venv)::

    .venv/bin/python tools/mutation_check.py                 # the whole catalogue, one mutant at a time
    .venv/bin/python tools/mutation_check.py --list          # show (and validate) the catalogue, run nothing
    .venv/bin/python tools/mutation_check.py --only geo-alpha-on-depth,cmpe-softmax-logits
    .venv/bin/python tools/mutation_check.py --area adapters,heads
    .venv/bin/python tools/mutation_check.py --only rein-no-discard --tests tests/models/test_rein.py
    .venv/bin/python tools/mutation_check.py --jobs 2        # two copies, two pytest processes at once
    .venv/bin/python tools/mutation_check.py --show-output --only ID   # pytest's output when not killed

Other options: ``--timeout S`` per pytest run (600), ``--no-baseline``, ``--allow-missing``,
``--deselect NODEID`` (repeatable, passed to every pytest run). Areas: adapters, heads, losses,
models, data, metrics.

How it works
    * The catalogue is ``tools/mutants.py``: each mutant is an exact edit (file, original text,
      replacement). The original text must occur **exactly once** in its file, and the mutated file
      must still compile; otherwise the check stops before running anything (exit status 2), naming
      the mutant. So the catalogue cannot rot silently when the code changes.
    * ``src/``, ``tests/``, ``pyproject.toml`` (and ``configs/``) are copied into a temporary directory
      (one copy per job; ``../shared`` is linked beside each copy so fixture-based tests still find
      their data). pytest runs there with ``PYTHONPATH=<copy>/src``, so the copy's package is imported
      instead of the editable install: this is verified before the run (``dgss.__file__`` in a
      subprocess and inside a pytest canary test). Bytecode is never written, so a mutated file can
      never be shadowed by a stale ``.pyc``.
    * A baseline run of all selected tests on the unmutated copy must pass first (``--no-baseline``
      skips it).
    * Per mutant: ``pytest -x -q -p no:cacheprovider <its tests>`` with ``HF_HUB_OFFLINE=1``. A failing
      test run = **killed**; a passing one = **SURVIVED**. A run that cannot collect (import error,
      usage error) or exceeds ``--timeout`` is an **ERROR**/**TIMEOUT** (a mutant must keep the module
      importable, so this points at the catalogue, not the tests).
    * One line per mutant: id, file:line, description, status, seconds (and the test that killed it).
      Then ``killed K/N`` and the survivors. Exit status 0 only when every mutant was killed.
    * A test file named in the catalogue that does not exist is an error before anything runs;
      ``--allow-missing`` drops such files from the selections instead (with a warning).
    * The catalogue is validated against the snapshot copy taken at the start, so edits to the
      working tree during a run do not mix into it.
    * The temporary directory is always removed (also on Ctrl-C / SIGTERM).

A full run (75 mutants, 10-25 s each, plus a ~1 min baseline) takes about 17 minutes on two busy
CPU cores with ``--jobs 1``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPY_ITEMS = ("src", "tests", "pyproject.toml")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info")


class CatalogueError(Exception):
    """The catalogue does not match the code (or asks for something impossible)."""


def load_catalogue():
    spec = importlib.util.spec_from_file_location("dgss_mutants", Path(__file__).with_name("mutants.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


@dataclass
class Planted:
    """A validated mutant: where it is and the full mutated text of its file."""

    mutant: object
    line: int
    source: str
    mutated: str
    tests: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.mutant.file}:{self.line}"


def plant(m, repo: Path) -> Planted:
    path = repo / m.file
    if not path.is_file():
        raise CatalogueError(f"mutant {m.id}: file {m.file} does not exist")
    text = path.read_text()
    n = text.count(m.original)
    if n != 1:
        raise CatalogueError(
            f"mutant {m.id}: original text found {n} times in {m.file} (needs exactly 1):\n    {m.original!r}"
        )
    if m.replacement == m.original:
        raise CatalogueError(f"mutant {m.id}: replacement equals the original")
    pos = text.index(m.original)
    line = text.count("\n", 0, pos) + 1
    mutated = text.replace(m.original, m.replacement, 1)
    try:
        compile(mutated, str(path), "exec")
    except SyntaxError as exc:
        raise CatalogueError(f"mutant {m.id}: mutated {m.file} does not compile: {exc}") from None
    return Planted(m, line, text, mutated, list(m.tests))


def test_file(spec: str) -> str:
    return spec.split("::", 1)[0]


# ------------------------------------------------------------------------------------------ copies
class Workspace:
    """One temporary copy of the repo (+ a link to ../shared), where mutants are planted in turn."""

    def __init__(self, base: Path, index: int, source: Path, shared: Path | None = None):
        """Copy ``source`` (the repo, or another workspace's copy) to ``base/w{index}/<repo name>``."""
        self.root = base / f"w{index}"
        self.repo = self.root / REPO.name
        self.repo.mkdir(parents=True)
        for item in COPY_ITEMS:
            src = source / item
            if src.is_dir():
                shutil.copytree(src, self.repo / item, ignore=IGNORE)
            elif src.is_file():
                shutil.copy2(src, self.repo / item)
        if shared is not None and shared.is_dir():  # a link (rmtree removes the link, never its target)
            (self.root / "shared").symlink_to(shared.resolve(), target_is_directory=True)
        self.src = self.repo / "src"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
        env.update(
            PYTHONPATH=str(self.src),
            PYTHONDONTWRITEBYTECODE="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            NO_ALBUMENTATIONS_UPDATE="1",
        )
        return env

    def pytest(self, tests: list[str], timeout: float, extra: tuple[str, ...] = ()) -> tuple[int | None, str]:
        """Run pytest in the copy. Returns (exit code or None on timeout, combined output)."""
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={self.root / 'pytest-tmp'}",
            *extra,
            *tests,
        ]
        with _RUNNING_LOCK:
            if _STOP.is_set():
                raise KeyboardInterrupt
            proc = subprocess.Popen(
                cmd,
                cwd=self.repo,
                env=self.env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            _RUNNING.add(proc)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out
        except subprocess.TimeoutExpired:
            _kill(proc)
            out, _ = proc.communicate()
            return None, out
        except BaseException:
            _kill(proc)
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)

    def verify_import(self, timeout: float) -> None:
        """The copy's package, not the editable install, must be what Python and pytest import."""
        expected = str(self.src / "dgss")
        r = subprocess.run(
            [sys.executable, "-c", "import dgss, dgss.models.segmentor as s; print(dgss.__file__); print(s.__file__)"],
            cwd=self.repo,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        paths = r.stdout.split()
        if r.returncode != 0 or len(paths) != 2 or not all(p.startswith(expected) for p in paths):
            raise RuntimeError(f"the copy is not what Python imports (expected {expected}):\n{r.stdout}{r.stderr}")
        canary = self.repo / "tests" / "test_zz_mutation_canary.py"
        canary.write_text(
            "import dgss\n\n\ndef test_imports_the_copy():\n"
            f"    assert dgss.__file__.startswith({expected!r}), dgss.__file__\n"
        )
        try:
            code, out = self.pytest([str(canary.relative_to(self.repo))], timeout)
        finally:
            canary.unlink()
        if code != 0:
            raise RuntimeError(f"pytest in the copy does not import the copy's package:\n{out[-3000:]}")


_RUNNING: set[subprocess.Popen] = set()  # pytest processes started by this script
_RUNNING_LOCK = threading.Lock()
_STOP = threading.Event()


def _stop_all() -> None:
    """Interrupt: start nothing new and kill the pytest process groups we started."""
    _STOP.set()
    with _RUNNING_LOCK:
        for proc in list(_RUNNING):
            _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    """Kill the pytest process group we started (and only it)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# ------------------------------------------------------------------------------------------ running
@dataclass
class Result:
    planted: Planted
    status: str  # killed | SURVIVED | ERROR | TIMEOUT
    seconds: float
    detail: str = ""
    output: str = ""


_FAIL_RE = re.compile(r"^(FAILED|ERROR) (\S+)", re.M)


def run_mutant(ws: Workspace, p: Planted, timeout: float, extra: tuple[str, ...] = ()) -> Result:
    target = ws.repo / p.mutant.file
    t0 = time.perf_counter()
    target.write_text(p.mutated)
    try:
        code, out = ws.pytest(p.tests, timeout, extra)
    finally:
        target.write_text(p.source)
    dt = time.perf_counter() - t0
    if code is None:
        return Result(p, "TIMEOUT", dt, f"> {timeout:.0f} s", out)
    if code == 0:
        return Result(p, "SURVIVED", dt, "", out)
    m = _FAIL_RE.search(out)
    if code == 1:
        return Result(p, "killed", dt, m.group(2) if m else "", out)
    last = [l for l in out.strip().splitlines() if l.strip()][-1:] or [""]
    return Result(p, "ERROR", dt, f"pytest exit {code}: {last[0][:120]}", out)


def fmt(r: Result) -> str:
    m = r.planted.mutant
    tail = f"  [{r.detail}]" if r.detail else ""
    return f"{m.id:<32} {r.planted.where:<40} {m.description:<60} {r.status:<8} {r.seconds:6.1f}s{tail}"


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", help="comma-separated mutant ids")
    ap.add_argument("--area", help="comma-separated areas (adapters, heads, losses, models, data, metrics)")
    ap.add_argument("--list", action="store_true", help="validate and list the catalogue, run nothing")
    ap.add_argument("--jobs", type=int, default=1, help="parallel pytest processes (default 1)")
    ap.add_argument("--tests", nargs="+", help="run these tests (files / node ids) for every mutant instead")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run (default 600)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated baseline run")
    ap.add_argument(
        "--allow-missing",
        action="store_true",
        help="drop test files that do not exist from the selections (default: error)",
    )
    ap.add_argument(
        "--deselect",
        action="append",
        default=[],
        metavar="NODEID",
        help="pass --deselect NODEID to every pytest run (repeatable)",
    )
    ap.add_argument("--show-output", action="store_true", help="print pytest's output for survivors and errors")
    return ap.parse_args(argv)


def select(catalogue, args) -> list:
    muts = list(catalogue.MUTANTS)
    ids = [m.id for m in muts]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise CatalogueError(f"duplicate mutant ids: {sorted(dup)}")
    if args.only:
        want = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [w for w in want if w not in ids]
        if unknown:
            raise CatalogueError(f"unknown mutant id(s) {unknown}; see --list")
        muts = [m for m in muts if m.id in want]
    if args.area:
        areas = {s.strip() for s in args.area.split(",")}
        muts = [m for m in muts if m.area in areas]
    if not muts:
        raise CatalogueError("no mutant selected")
    return muts


def check_tests(planted: list[Planted], root: Path, args) -> int | None:
    """Missing test files: an error (exit 2) unless --allow-missing drops them. None = go on."""
    missing = sorted({test_file(t) for p in planted for t in p.tests if not (root / test_file(t)).exists()})
    if missing:
        users = {f: [p.mutant.id for p in planted if any(test_file(t) == f for t in p.tests)] for f in missing}
        msg = "\n".join(
            f"    {f}  (used by {len(u)} mutants: {', '.join(u[:4])}{', ...' if len(u) > 4 else ''})"
            for f, u in users.items()
        )
        if not args.allow_missing and not args.list:
            print(
                f"mutation_check: ERROR: test files in the selections do not exist:\n{msg}\n"
                "(write them, fix the catalogue, or pass --allow-missing to drop them)",
                file=sys.stderr,
            )
            return 2
        print(f"mutation_check: WARNING: missing test files{'' if args.list else ' dropped'}:\n{msg}", file=sys.stderr)
        if not args.list:
            for p in planted:
                p.tests = [t for t in p.tests if test_file(t) not in missing]
    empty = [p.mutant.id for p in planted if not p.tests]
    if empty and not args.list:
        print(f"mutation_check: ERROR: no tests left for {empty}", file=sys.stderr)
        return 2
    return None


def plant_all(mutants: list, root: Path, args) -> list[Planted]:
    planted = [plant(m, root) for m in mutants]
    if args.tests:
        for p in planted:
            p.tests = list(args.tests)
    return planted


def run(mutants: list, args, tmp: Path) -> int:
    jobs = max(1, min(args.jobs, len(mutants)))
    extra = tuple(f"--deselect={d}" for d in args.deselect)
    # one snapshot of the repo; the catalogue is checked against it (not against a repo that may be
    # edited meanwhile), and further jobs copy the snapshot
    first = Workspace(tmp, 0, REPO, REPO.parent / "shared")
    planted = plant_all(mutants, first.repo, args)
    code = check_tests(planted, first.repo, args)
    if code is not None:
        return code
    first.verify_import(args.timeout)
    workspaces = [first] + [Workspace(tmp, k, first.repo, REPO.parent / "shared") for k in range(1, jobs)]
    print(
        f"mutation_check: {len(planted)} mutants, {jobs} job(s), copies in {tmp} "
        f"(imports verified: {first.src / 'dgss'})",
        flush=True,
    )
    t_start = time.perf_counter()
    if not args.no_baseline:
        union = list(dict.fromkeys(t for p in planted for t in p.tests))
        code, out = first.pytest(union, args.timeout * 2, extra)
        if code != 0:
            notfound = [l for l in out.splitlines() if l.startswith("ERROR: not found")]
            print("\n".join(notfound) if notfound else out[-5000:])
            print(
                f"mutation_check: ERROR: the baseline (unmutated) run fails (exit {code}); "
                "every mutant would count as killed. Fix the suite or the selections first.",
                file=sys.stderr,
            )
            return 2
        print(
            f"baseline: {len(union)} test selections pass unmutated ({time.perf_counter() - t_start:.1f}s)", flush=True
        )

    def report(r: Result) -> Result:
        print(fmt(r), flush=True)
        if args.show_output and r.status != "killed":
            print(r.output[-4000:], flush=True)
        return r

    results: list[Result] = []
    if jobs == 1:
        results = [report(run_mutant(first, p, args.timeout, extra)) for p in planted]
    else:
        pool: queue.Queue[Workspace] = queue.Queue()
        for ws in workspaces:
            pool.put(ws)
        lock = threading.Lock()

        def work(p: Planted) -> Result:
            ws = pool.get()
            try:
                r = run_mutant(ws, p, args.timeout, extra)
            finally:
                pool.put(ws)
            if _STOP.is_set():  # killed by an interrupt: not a result
                raise KeyboardInterrupt
            with lock:
                return report(r)

        ex = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = [ex.submit(work, p) for p in planted]
            results = [f.result() for f in futures]
        except BaseException:
            _stop_all()
            ex.shutdown(wait=True, cancel_futures=True)
            raise
        ex.shutdown(wait=True)

    total = time.perf_counter() - t_start
    killed = [r for r in results if r.status == "killed"]
    bad = [r for r in results if r.status != "killed"]
    print(f"\nkilled {len(killed)}/{len(results)} in {total:.0f}s")
    if bad:
        print("not killed:")
        for r in bad:
            print(
                f"  {r.status:<8} {r.planted.mutant.id:<32} {r.planted.where:<40} {r.planted.mutant.description}"
                + (f"  [{r.detail}]" if r.detail else "")
            )
    return 0 if not bad else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        mutants = select(load_catalogue(), args)
        if args.list:
            planted = plant_all(mutants, REPO, args)
            check_tests(planted, REPO, args)
            counts: dict[str, int] = {}
            for p in planted:
                counts[p.mutant.area] = counts.get(p.mutant.area, 0) + 1
                print(f"{p.mutant.id:<32} {p.where:<40} {p.mutant.description}")
                print(f"{'':<32}   tests: {' '.join(p.tests)}")
            print(
                f"{len(planted)} mutants, all originals found exactly once: "
                + ", ".join(f"{a} {n}" for a, n in sorted(counts.items()))
            )
            return 0

        def _term(signum, frame):  # SIGTERM -> KeyboardInterrupt: the temporary directory is removed
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, _term)
        try:
            with tempfile.TemporaryDirectory(prefix="dgss-mutation-") as tmp:
                return run(mutants, args, Path(tmp))
        except KeyboardInterrupt:
            _stop_all()
            print("mutation_check: interrupted (temporary copies removed)", file=sys.stderr)
            return 130
        finally:
            signal.signal(signal.SIGTERM, old)
    except CatalogueError as exc:
        print(f"mutation_check: CATALOGUE ERROR: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Run the learning tests over seeds and CPU settings and print the worst margin of each.

A learning test asserts that a model learned something; its margin is how far it cleared its bar (each test
reports it through ``tests/learning.py``). The same seed gives another trajectory when the float kernels
differ, and the kernels depend on the CPU: ATen's vector width, MKL's and oneDNN's code paths, the thread
count. This tool runs ``pytest -m learning`` once per (setting, seed) in a fresh process with:

* ``default``: the host as it is;
* ``avx2``: ``ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2`` (what an AVX2 host runs);
* ``aten-default``: ``ATEN_CPU_CAPABILITY=default`` (ATen's scalar kernels);
* ``threads-1`` / ``threads-2``: one or two torch threads (``DGSS_TEST_THREADS``, which also overrides the
  ``one_thread`` fixture).

``default`` runs each test process as the host gives it: two threads where a test does not ask for one.

Usage::

    python tools/learning_margins.py                      # 5 seeds x 5 settings, every learning test
    python tools/learning_margins.py --seeds 0,1 --settings default,avx2 -k roundtrip
    python tools/learning_margins.py --jobs 2 --log m.jsonl  # two runs at once (their times mean nothing then)
    python tools/learning_margins.py --table margins.jsonl   # the table of an earlier run's log

The table lists, per test and margin, the worst margin over all runs, where it happened, and how many runs
cleared the bar. A run that fails before it reports a margin is listed as an error with its exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "avx2": AVX2,
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "threads-1": {"DGSS_TEST_THREADS": "1"},
    "threads-2": {"DGSS_TEST_THREADS": "2"},
}


def run_one(
    setting: str, seed: int, log: Path, select: str | None, paths: list[str], jobs: int = 1
) -> tuple[int, float]:
    env = {**os.environ, **SETTINGS[setting], "DGSS_TEST_SEED": str(seed), "DGSS_MARGIN_LOG": str(log)}
    if jobs > 1:  # idle OpenMP threads sleep instead of spinning against the other runs (results unchanged)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "learning", *paths]
    if select:
        cmd += ["-k", select]
    t0 = time.perf_counter()
    code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return code, time.perf_counter() - t0


def table(rows: list[dict]) -> str:
    by_test: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_test[r["test"]].append(r)
    out = ["| test | unit | runs | cleared | worst margin | worst at |", "|---|---|---|---|---|---|"]
    for test in sorted(by_test):
        rs = by_test[test]
        worst = min(rs, key=lambda r: r["margin"])
        cleared = sum(r["margin"] > 0 for r in rs)
        out.append(
            f"| {test} | {worst.get('unit', '')} | {len(rs)} | {cleared} | {worst['margin']:.3f} | "
            f"{worst.get('setting', '?')}, seed {worst.get('seed', '?')} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma list of seeds (DGSS_TEST_SEED)")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    p.add_argument("-k", dest="select", help="pytest -k expression to run some learning tests only")
    p.add_argument("--log", type=Path, help="append every margin to this JSON-lines file (default: a temp file)")
    p.add_argument("--jobs", type=int, default=1, help="pytest processes at once (numerics do not depend on load)")
    p.add_argument("--table", type=Path, help="only print the table of an existing log")
    p.add_argument("paths", nargs="*", default=["tests"], help="test paths (default: tests)")
    args = p.parse_args(argv)
    if args.table:
        print(table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return 0
    settings = [s for s in args.settings.split(",") if s]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s) {unknown}; known: {', '.join(SETTINGS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    log = args.log or Path(tempfile.mkstemp(suffix=".jsonl", prefix="margins-")[1])
    failures = []
    runs = [(seed, setting) for seed in seeds for setting in settings]  # seed-major: a partial sweep covers all

    def one(run: tuple[int, str]) -> None:
        seed, setting = run
        part = log.with_suffix(f".{setting}.{seed}.part")
        part.unlink(missing_ok=True)
        code, seconds = run_one(setting, seed, part, args.select, args.paths, args.jobs)
        got = [json.loads(line) for line in part.read_text().splitlines()] if part.exists() else []
        part.unlink(missing_ok=True)
        with lock, log.open("a") as f:
            for r in got:
                f.write(json.dumps({**r, "setting": setting, "seed": seed}) + "\n")
            print(f"{setting:>13} seed {seed}: exit {code}, {len(got)} margins, {seconds:.0f} s", flush=True)
            if code not in (0, 1) or not got:
                failures.append((setting, seed, code))

    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # margins do not depend on load, only timings do
        list(pool.map(one, runs))
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    print(f"\nmargins in {log}\n")
    print(table(rows))
    for setting, seed, code in failures:
        print(f"error: {setting}, seed {seed}: pytest exit {code} without margins")
    return 1 if failures or any(r["margin"] <= 0 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

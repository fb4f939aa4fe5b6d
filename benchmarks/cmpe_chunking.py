"""Vireo's coarse-mask prior for ADE-847 at one 512 window (X: 1024x128x128, 80 templates, 768-d):
peak memory and time with the vocabulary processed in class chunks vs all at once.

Each row runs in its own subprocess so peak RSS belongs to it alone.

    python benchmarks/cmpe_chunking.py [--classes 847] [--chunks none,64,32,8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def child(classes: int, chunk: int | None, size: int) -> dict:
    import torch
    import torch.nn.functional as F
    from _util import peak_rss_mb, rss_mb

    from dgss.heads.cmpe import PriorGenerator

    torch.set_num_threads(2)
    torch.manual_seed(0)
    g = PriorGenerator(class_chunk=chunk).eval()
    x = torch.randn(1, 1024, size, size)
    table = F.normalize(torch.randn(classes + 1, 80, 768), dim=-1)
    base = rss_mb()
    with torch.inference_mode():
        t = time.perf_counter()
        m, prior = g(x, table)
        dt = time.perf_counter() - t
    return {
        "chunk": chunk,
        "time_s": dt,
        "peak_mb": peak_rss_mb() - base,
        "checksum": float(m.double().sum()) + float(prior.double().sum()),
    }


def main() -> None:
    from _util import print_host

    print_host()
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, default=847)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--chunks", default="none,64,32,8")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        chunk = None if a.child == "none" else int(a.child)
        print(json.dumps(child(a.classes, chunk, a.size)))
        return
    from _util import machine, run_child

    rows = []
    for c in a.chunks.split(","):
        rows.append(run_child(__file__, c, "--classes", a.classes, "--size", a.size))
    print(f"# CMPE coarse masks + prior, K={a.classes}, X 1024x{a.size}x{a.size}, 80 templates; {machine()}")
    print("| class chunk | time (s) | peak memory (MB) | same result as unchunked |")
    print("|---|---:|---:|---|")
    ref = rows[0]["checksum"]
    for r in rows:
        same = abs(r["checksum"] - ref) <= 1e-6 * max(1.0, abs(ref))
        print(f"| {r['chunk'] or 'all ' + str(a.classes)} | {r['time_s']:.2f} | {r['peak_mb']:.0f} | {same} |")


if __name__ == "__main__":
    main()

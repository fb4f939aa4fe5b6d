"""Helpers shared by the benchmark scripts: fast random init of real-size models, memory readings."""

from __future__ import annotations

import os
import resource
import time

import torch


def materialize(model: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Turn a meta-device model into a CPU model with small random weights (much faster than the
    modules' own init for ViT-L sized models; timing does not depend on the values)."""
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std, generator=g)
        for _name, b in model.named_buffers():
            if b.is_floating_point():
                b.zero_()
    for m in model.modules():  # buffers recomputed by the modules themselves (e.g. rope, mean/std)
        if hasattr(m, "mean") and hasattr(m, "std") and hasattr(m, "cfg") and hasattr(m.cfg, "mean"):
            m.mean.copy_(torch.tensor(m.cfg.mean).view(1, 3, 1, 1))
            m.std.copy_(torch.tensor(m.cfg.std).view(1, 3, 1, 1))
    return model


def rss_mb() -> float:
    """Current resident set size of this process (MB)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int = 3) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
EMULATION_VARS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU model name and the vector-ISA flags it reports (Linux /proc/cpuinfo; else the platform's name)."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return model, [f for f in ISA_FLAGS if f in flags]


def machine() -> str:
    """The host a benchmark ran on: CPU model, its ISA flags, torch's chosen CPU capability, threads, and
    any ISA emulation variables that are set."""
    model, flags = cpu_model_and_flags()
    emulation = [f"{k}={os.environ[k]}" for k in EMULATION_VARS if k in os.environ]
    return (
        f"{model} ({' '.join(flags) or 'no AVX'}), {os.cpu_count()} cores, torch {torch.__version__} "
        f"(CPU capability {torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"
        + (f", emulating: {' '.join(emulation)}" if emulation else "")
    )


def print_host() -> None:
    """Print ``# host: ...`` (every benchmark starts with it, so each table names its hardware)."""
    print(f"# host: {machine()}", flush=True)


def run_child(script: str, *args) -> dict:
    """Run ``script --child ...`` in a fresh process (so its peak RSS is its own) and return the JSON
    object it prints last; a failing child raises with the end of its stderr."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, script, "--child", *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])

"""Host settings that make CPU inference faster without changing what is computed.

* :func:`tune_allocator`: glibc hands every large tensor (above 128 KiB by default) fresh pages from
  ``mmap`` and returns them on free, so each 100 MB temporary of a 512 window (per-query masks at full
  resolution, the adapter's level maps) is page-faulted and zeroed again, window after window (a clone
  of 100 MB: 28 ms, 5 ms once the heap keeps its pages). Raising the mmap and trim thresholds keeps
  freed pages in the heap. Process-wide and irreversible, so only dgss's own command-line processes
  (``dgss predict``, ``dgss eval``, ``dgss app``) call it; ``DGSS_MALLOC_TUNING=0`` turns it off.
* :func:`onednn_fp32_matmul`: PyTorch computes fp32 ``Linear`` / ``matmul`` with MKL, which takes a
  slow code path on non-Intel CPUs (AMD EPYC here: 204 GFLOP/s); routed to oneDNN the same products run
  at 460 GFLOP/s. PyTorch routes fp32 products to oneDNN only when
  ``torch.backends.mkldnn.matmul.fp32_precision`` is ``"bf16"`` or ``"tf32"``, a setting that on CPUs
  with AMX tiles really rounds the inputs to bf16. dgss therefore turns it on only where a probe shows
  the products stay exact fp32 (:func:`onednn_fp32_is_exact`): outputs then differ from MKL's only by
  the order of the fp32 additions.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
_KEEP_BYTES = 1 << 30  # allocations up to 1 GiB come from (and return to) the heap


def tune_allocator() -> bool:
    """Keep large freed blocks in the process heap (glibc only). Returns whether the setting was applied."""
    if os.environ.get("DGSS_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if not name or not hasattr(os, "confstr"):
        return False
    try:
        if "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or "").lower():
            return False
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * _KEEP_BYTES)
        )
    except (OSError, ValueError, AttributeError):
        return False


def _matmul_flag():
    return getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)


@functools.cache
def onednn_fp32_is_exact() -> bool:
    """Whether fp32 products routed to oneDNN (``fp32_precision="bf16"``) are computed in full fp32 here.

    Probe: ``a = 1 + 2^-12 + 2^-20`` needs 21 mantissa bits; any bf16 rounding of the inputs (AMX, or
    a bf16x3 split) loses the 2^-20 term, so the product ``a·1`` must come back bit-exact. A second
    product of random matrices must match float64 to fp32 accuracy.
    """
    flag = _matmul_flag()
    if flag is None or not hasattr(flag, "fp32_precision") or not torch.backends.mkldnn.is_available():
        return False
    old = flag.fp32_precision
    try:
        flag.fp32_precision = "bf16"
        a = torch.full((1024, 512), 1 + 2.0**-12 + 2.0**-20)
        eye = torch.eye(512)
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(1024, 512, generator=g), torch.randn(512, 512, generator=g)
        with torch.inference_mode():
            exact = bool((a @ eye == a).all()) and bool((torch.nn.functional.linear(a, eye) == a).all())
            ref = x.double() @ w.double()
            rel = ((x @ w).double() - ref).norm() / ref.norm()
        return exact and rel.item() < 1e-6
    except (RuntimeError, ValueError, TypeError):
        return False
    finally:
        flag.fp32_precision = old


@contextmanager
def onednn_fp32_matmul(enabled: bool = True) -> Iterator[bool]:
    """Route fp32 products to oneDNN inside the block when that stays exact fp32 (see module doc);
    yields whether it did. The previous setting is restored on exit."""
    flag = _matmul_flag()
    if not enabled or flag is None or not onednn_fp32_is_exact():
        yield False
        return
    old = flag.fp32_precision
    flag.fp32_precision = "bf16"
    try:
        yield True
    finally:
        flag.fp32_precision = old


__all__ = ["onednn_fp32_is_exact", "onednn_fp32_matmul", "tune_allocator"]

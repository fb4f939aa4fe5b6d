"""Host settings of CPU inference (dgss.engine.host): they change speed, never what is computed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from dgss.engine.backends import resolve_precision
from dgss.engine.host import onednn_fp32_is_exact, onednn_fp32_matmul

pytestmark = pytest.mark.isa  # CPU-dependent kernels: run again under AVX2 emulation by make test


def test_onednn_routing_keeps_fp32_products_and_restores_the_flag():
    flag = torch.backends.mkldnn.matmul
    before = flag.fp32_precision
    g = torch.Generator().manual_seed(0)
    x, lin = torch.randn(1024, 768, generator=g), torch.nn.Linear(768, 512)
    ref = x.double() @ lin.weight.double().T + lin.bias.double()
    with torch.inference_mode(), onednn_fp32_matmul() as routed:
        assert routed == onednn_fp32_is_exact()
        if routed:
            assert flag.fp32_precision == "bf16"
        y = lin(x)
        # 21-bit inputs survive: a bf16 (8-bit) or bf16x3 (16-bit) rounding of the inputs would not
        a = torch.full((512, 768), 1 + 2.0**-12 + 2.0**-20)
        assert torch.equal(torch.nn.functional.linear(a, torch.eye(768)), a)
    assert flag.fp32_precision == before
    rel = ((y.double() - ref).norm() / ref.norm()).item()
    assert rel < 1e-6  # fp32 accuracy (bf16 inputs give about 3e-3 here)


def test_disabled_routing_changes_nothing():
    before = torch.backends.mkldnn.matmul.fp32_precision
    with onednn_fp32_matmul(enabled=False) as routed:
        assert routed is False and torch.backends.mkldnn.matmul.fp32_precision == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings")
@pytest.mark.parametrize("env, applied", [("1", True), ("0", False)])
def test_tune_allocator_in_a_fresh_process(env, applied):
    """Applied on glibc unless DGSS_MALLOC_TUNING=0; a process that tuned it still computes the same."""
    code = (
        "import torch; from dgss.engine.host import tune_allocator; ok = tune_allocator(); "
        "x = torch.arange(30_000_000, dtype=torch.float64); y = x.clone(); del x; z = torch.ones(30_000_000); "
        "print(ok, float(y.sum()), float(z.sum()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DGSS_MALLOC_TUNING": env},
    ).stdout.split()
    assert out == [str(applied), str(float(29_999_999 * 30_000_000 // 2)), "30000000.0"]


def test_auto_precision_is_fp32_on_cpus_and_bf16_on_gpus():
    assert resolve_precision(torch.device("cpu"), "auto") == "fp32"
    assert resolve_precision(torch.device("cuda"), "auto") == "bf16"
    assert resolve_precision(torch.device("cpu"), "auto", "onnxruntime") == "fp32"

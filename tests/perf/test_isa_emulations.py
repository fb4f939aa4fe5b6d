"""The CPU-dependent code paths, each in a fresh process under every ISA emulation a test host can run.

ATen, MKL and oneDNN choose their kernels once per process from the CPU and these variables:

* ``avx2``: ``ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2`` (an AVX2 host);
* ``aten-default``: ``ATEN_CPU_CAPABILITY=default`` (ATen's scalar kernels);
* ``onednn-sse41``: ``ONEDNN_MAX_CPU_ISA=SSE41`` (oneDNN's oldest x86 path).

Under each, the child process checks what dgss promises there:

* the oneDNN fp32 routing probe answers from what the kernels really do: where it allows routing, a 21-bit
  input comes back bit-exact through the routed product and random products match float64 to fp32
  accuracy; where it refuses, ``onednn_fp32_matmul`` leaves the flag untouched;
* ``--precision auto`` resolves to fp32 on the CPU, and bf16 is refused nowhere it is allowed;
* the torch and ONNX Runtime int8 paths stay within their stated tolerance of fp32 (max |diff| 0.15 of the
  per-class scores, labels >= 99 %). ONNX Runtime ignores the variables above and picks its own kernels
  (on CPUs without VNNI its u8 x s8 kernels saturate: see docs/testing.md);
* the allocator tuning applies in a fresh process and can be switched off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="x86 Linux kernels"),
    pytest.mark.e2e,  # spawns a fresh process per emulation
]

EMULATIONS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
}

CHILD = textwrap.dedent(
    r"""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import torch
    from dgss.engine import host
    from dgss.engine.backends import configure_inference, resolve_precision
    from dgss.testing import tiny_segmentor
    from order_one_init import order_one_

    out = {"capability": torch.backends.cpu.get_cpu_capability()}
    torch.set_num_threads(1)
    # 1. the probe's answer against what the routed products really give
    exact = host.onednn_fp32_is_exact()
    flag = host._matmul_flag()
    before = getattr(flag, "fp32_precision", None)
    a = torch.full((256, 128), 1 + 2.0**-12 + 2.0**-20)
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(256, 128, generator=g), torch.randn(128, 64, generator=g)
    with host.onednn_fp32_matmul() as routed, torch.inference_mode():
        bit_exact = bool((a @ torch.eye(128) == a).all())
        ref = x.double() @ w.double()
        rel = (((x @ w).double() - ref).norm() / ref.norm()).item()
        inside = getattr(flag, "fp32_precision", None)
    out.update(probe=exact, routed=routed, bit_exact=bit_exact, rel=rel, flag_inside=inside, flag_before=before,
               flag_after=getattr(flag, "fp32_precision", None))
    # 2. precision choices
    cpu = torch.device("cpu")
    out["auto"] = resolve_precision(cpu, "auto")
    # 3. int8 paths against fp32 on a tiny order-one model
    torch.manual_seed(0)
    model = tiny_segmentor("vireo")
    order_one_(model)
    model.eval()
    xin = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = model.slide_inference(xin)
    import copy, tempfile
    for backend in ("torch", "onnxruntime"):
        m = copy.deepcopy(model)
        ctx = configure_inference(m, device=cpu, backend=backend, precision="int8", onnx_cache=tempfile.mkdtemp())
        with torch.inference_mode(), ctx():
            o = m.slide_inference(xin).float()
        out[f"int8_{backend}"] = [(o - ref).abs().max().item(), (o.argmax(1) == ref.argmax(1)).float().mean().item()]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("isa") / "child.py"
    path.write_text(CHILD)
    return path


@pytest.mark.parametrize("emulation", list(EMULATIONS))
def test_cpu_dependent_paths_keep_their_promises(emulation, script):
    env = {**os.environ, **EMULATIONS[emulation], "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).parent)], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if emulation == "aten-default":
        assert r["capability"] == "DEFAULT"
    # the probe decides from what the kernels do: routing only where the routed products are exact fp32
    assert r["routed"] == r["probe"]
    if r["routed"]:
        assert r["flag_inside"] == "bf16" and r["bit_exact"] and r["rel"] < 1e-6, r
    else:
        assert r["flag_inside"] == r["flag_before"], r
    assert r["flag_after"] == r["flag_before"] and r["rel"] < 1e-6
    assert r["auto"] == "fp32"
    for backend in ("torch", "onnxruntime"):
        diff, same = r[f"int8_{backend}"]
        assert 0 < diff <= 0.15 and same >= 0.99, (backend, diff, same)


@pytest.mark.parametrize("emulation", ["avx2"])
def test_allocator_tuning_under_emulation(emulation):
    code = "from dgss.engine.host import tune_allocator; print(tune_allocator())"
    for switch, expected in (("1", "True"), ("0", "False")):
        env = {**os.environ, **EMULATIONS[emulation], "DGSS_MALLOC_TUNING": switch}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == expected, out.stderr[-2000:]

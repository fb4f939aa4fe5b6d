"""Every inference backend matches fp32 PyTorch within its stated tolerance (tiny DepthForge / Vireo
with order-one weights, a 96x160 image: 2x3 sliding windows of 64 with overlaps and a padded border).

Stated tolerances (max |diff| of the averaged per-class scores, which lie in [0, 1]; labels):
* torch bf16 (autocast over the feature extraction, head fp32) with bf16-stored frozen weights vs the
  same autocast with fp32 weights: bit-identical;
* torch fp32 (dgss's CPU path: fp32 products on oneDNN where exact) vs plain fp32: 1e-5, labels identical;
* onnxruntime fp32 vs torch fp32: 1e-4, labels identical;
* torch bf16 vs fp32: 0.1, labels >= 99%;  int8 (torch and onnxruntime) vs fp32: 0.15, labels >= 99%.
  Worst seen: onnxruntime int8 0.103 (DepthForge) on an AVX2 CPU without VNNI; its integer products are
  exact on every CPU (7-bit weights, checked below), so only fp32 rounding differs between hosts.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from dgss.engine.backends import configure_inference, resolve_precision
from dgss.engine.host import onednn_fp32_matmul
from dgss.errors import BackendError
from dgss.testing import tiny_segmentor

sys.path.insert(0, str(Path(__file__).parent))
from order_one_init import order_one_

pytestmark = pytest.mark.isa  # CPU-dependent kernels: run again under AVX2 emulation by make test

CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["depthforge", "vireo"])
def case(request):
    torch.manual_seed(0)
    model = tiny_segmentor(request.param)
    order_one_(model)
    model.eval()
    x = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = model.slide_inference(x)
    return model, x, ref


def run(model, x, tmp_path, **kw):
    m = copy.deepcopy(model)
    ctx = configure_inference(m, device=CPU, onnx_cache=tmp_path, **kw)
    with torch.inference_mode(), ctx():
        return m, m.slide_inference(x).float()


def agreement(out, ref):
    return (out - ref).abs().max().item(), (out.argmax(1) == ref.argmax(1)).float().mean().item()


def test_bf16_weights_are_bit_identical_to_bf16_autocast(case, tmp_path):
    model, x, ref = case
    m, out = run(model, x, tmp_path, precision="bf16")
    assert m.encoder.vit.blocks[0].attn.qkv.weight.dtype == torch.bfloat16  # stored in bf16
    m32 = copy.deepcopy(model)
    inner = m32.extract_features

    def features_bf16(x):  # the split written out: autocast over the features only, fp32 weights
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return [f.float() for f in inner(x)]

    m32.extract_features = features_bf16
    with torch.inference_mode(), onednn_fp32_matmul():  # the head's fp32 products as the backend runs them
        autocast = m32.slide_inference(x)
    assert torch.equal(out, autocast)
    assert not torch.equal(out, ref)
    diff, same = agreement(out, ref)
    assert 0 < diff <= 0.1 and same >= 0.99


def test_onnxruntime_fp32_matches_torch_fp32(case, tmp_path):
    model, x, ref = case
    _, out = run(model, x, tmp_path, backend="onnxruntime", precision="fp32")
    diff, same = agreement(out, ref)
    assert diff <= 1e-4 and same == 1.0
    assert len(list(tmp_path.glob("*.onnx"))) == 1  # exported once into the cache
    _, again = run(model, x, tmp_path, backend="onnxruntime")  # auto -> fp32, from the cache
    assert torch.equal(again, out) and len(list(tmp_path.glob("*.onnx"))) == 1


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_int8_within_tolerance(case, tmp_path, backend):
    model, x, ref = case
    m, out = run(model, x, tmp_path, backend=backend, precision="int8")
    if backend == "torch":  # the frozen Linear layers really are quantised
        assert type(m.encoder.vit.blocks[0].attn.qkv).__name__ == "Linear" and type(
            m.encoder.vit.blocks[0].attn.qkv
        ).__module__.startswith("torch.ao.nn.quantized")
    else:  # exactly the frozen Linear layers, with 7-bit weights: no int16 pair sum can saturate
        check_onnx_int8_graph(model, next(tmp_path.glob("*-int8w7.onnx")))
    diff, same = agreement(out, ref)
    assert 0 < diff <= 0.15 and same >= 0.99


def check_onnx_int8_graph(model, path):
    """The int8 graph quantises one MatMul per frozen ``nn.Linear`` and nothing else, and its weights lie in
    [-64, 64]: u8 activation (<= 255) x weight pairs then sum to at most 2 * 255 * 64 = 32640 < 2**15, so the
    int16 pair sums of kernels without VNNI (VPMADDUBSW) never saturate and every CPU computes the same
    exact integer products."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    q = [n for n in graph.node if n.op_type == "MatMulInteger"]
    frozen = sum(isinstance(m, torch.nn.Linear) for f in model.frozen_modules().values() for m in f.modules())
    assert frozen > 0 and len(q) == frozen
    for n in q:
        w = inits[n.input[1]]
        assert w.dtype == np.int8 and np.abs(w.astype(np.int32)).max() <= 64, n.name
        assert np.abs(w).max() >= 32  # the range is used (7 bits), not collapsed


def test_bad_combinations_are_refused():
    with pytest.raises(BackendError, match="onnxruntime supports --precision fp32 or int8"):
        resolve_precision(CPU, "bf16", "onnxruntime")
    with pytest.raises(BackendError, match="--backend must be one of"):
        resolve_precision(CPU, "fp32", "tensorrt")
    with pytest.raises(BackendError, match="--precision must be one of"):
        resolve_precision(CPU, "fp16")
    with pytest.raises(BackendError, match="--compile applies to --backend torch only"):
        configure_inference(tiny_segmentor("rein"), backend="onnxruntime", compile=True, device=CPU)


def test_torch_fp32_matches_plain_fp32(case, tmp_path):
    """dgss's fp32 path (fp32 products on oneDNN where exact) changes only the order of fp32 additions."""
    model, x, ref = case
    _, out = run(model, x, tmp_path, precision="fp32")
    diff, same = agreement(out, ref)
    assert diff <= 1e-5 and same == 1.0

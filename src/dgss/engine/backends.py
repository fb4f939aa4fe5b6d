"""Inference backends for the sliding-window forward of a segmentor.

``configure_inference(model, backend, precision, compile)`` prepares the model once and returns the
context every image runs in (``with ctx(): model.slide_inference(x)``):

* ``torch`` + ``fp32``: plain PyTorch;
* ``torch`` + ``bf16`` (``auto`` picks it on GPUs; on CPUs ``auto`` is ``fp32``, which with dgss's
  formulations and oneDNN products runs as fast as this split here and keeps fp32's labels): bf16 autocast over the
  feature extraction (frozen encoders, depth branch, adapter), the head in fp32 (autocast over the
  whole model changed 0.3% of the labels of the trained demo checkpoint, this split 0.07%), with the
  frozen encoders' Linear / Conv weights stored in bf16 (autocast rounds them to those same values
  before every product: identical outputs, no per-window weight casts);
* ``torch`` + ``int8``: dynamic int8 quantisation of the frozen encoders' Linear layers (weights int8
  per channel, activations quantised per batch on the fly); everything else fp32. Opt-in: its agreement
  with fp32 is reported in docs/performance.md, not guaranteed;
* ``onnxruntime`` + ``fp32`` / ``int8``: the window forward exported with ``dgss export`` (cached under
  ``$DGSS_CACHE_DIR/onnx``) and run by ONNX Runtime on the CPU; ``int8`` quantises the exported
  graph's frozen-encoder MatMul weights dynamically to 7 bits (onnxruntime.quantization; exact integer
  products on every CPU, see INT8_REDUCE_RANGE);
* ``compile`` (torch backend): ``torch.compile`` of the window forward (inductor's on-disk cache
  keeps later processes from compiling again).

On CPUs the torch backend's context also routes the fp32 products to oneDNN where that stays exact
fp32 (:func:`dgss.engine.host.onednn_fp32_matmul`: 2.2x MKL's speed on AMD CPUs).

The sliding-window loop, padding and score averaging stay in :meth:`Segmentor.slide_inference`; a
backend only replaces the per-window forward ``predict_windows`` (normalised windows (B, 3, h, w) ->
scores (B, K, h, w)).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path

import torch
from torch import nn

from ..errors import BackendError
from ..files import atomic_write
from ..models.segmentor import Segmentor
from .host import onednn_fp32_matmul

BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16", "int8")


def resolve_precision(device: torch.device, precision: str, backend: str = "torch") -> str:
    """``auto`` -> ``bf16`` on GPUs, ``fp32`` on CPUs (torch backend); checks the combination."""
    if backend not in BACKENDS:
        raise BackendError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision not in PRECISIONS:
        raise BackendError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise BackendError("--backend onnxruntime runs on the CPU: use --device cpu")
        if precision == "bf16":
            raise BackendError("--backend onnxruntime supports --precision fp32 or int8 (bf16: use --backend torch)")
        return "fp32" if precision == "auto" else precision
    if precision == "int8" and device.type != "cpu":
        raise BackendError("--precision int8 (dynamic quantisation) runs on the CPU: use --device cpu")
    if precision == "auto":  # CPUs: dgss fp32 is as fast as the bf16 split and exact (benchmarks/README)
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def quantize_frozen_int8(model: Segmentor) -> int:
    """Replace the frozen encoders' ``nn.Linear`` layers by dynamically quantised int8 ones (in place).
    Returns the number of layers replaced."""
    from torch.ao.quantization import quantize_dynamic

    n = 0
    for module in model.frozen_modules().values():
        n += sum(isinstance(m, nn.Linear) for m in module.modules())
        quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return n


def model_fingerprint(model: Segmentor, window: int) -> str:
    """SHA-256 (16 hex) of the config, window, vocabulary and every tensor of the model."""
    h = hashlib.sha256(repr((model.cfg.to_dict(), window, torch.__version__)).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(repr((tuple(t.shape), t.dtype)).encode())
        if t.numel():
            h.update(
                t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
                if t.dtype != torch.bool
                else t.cpu().numpy().tobytes()
            )
    for name in ("encoder_table", "head_table"):
        t = getattr(model, name, None)
        if t is not None and t.numel():
            h.update(t.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


# ONNX Runtime int8: 7-bit weights (reduce_range), |w| <= 64. CPUs without VNNI multiply u8 x s8 with
# VPMADDUBSW, which saturates a pair's sum at int16 (2 * 255 * 127 > 32767); with 7-bit weights every pair
# fits (2 * 255 * 64 = 32640), so every kernel (AVX2, AVX-512, VNNI) gives the same exact integer products.
INT8_REDUCE_RANGE = True


def frozen_weight_nodes(model: Segmentor, onnx_file: Path) -> list[str]:
    """Names of the MatMul / Gemm nodes of ``onnx_file`` whose weight is a frozen encoder's ``nn.Linear``
    weight (the layers the torch int8 path quantises), found by content: the exporter renames and
    transposes weights, the values stay."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    frozen: set[bytes] = set()
    for module in model.frozen_modules().values():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                w = m.weight.detach().float().cpu()
                for t in (w, w.t()):
                    frozen.add(
                        hashlib.sha256(
                            np.ascontiguousarray(t.numpy()).tobytes() + str(tuple(t.shape)).encode()
                        ).digest()
                    )
    graph = onnx.load(str(onnx_file)).graph
    digests = {}
    for init in graph.initializer:
        a = np.ascontiguousarray(numpy_helper.to_array(init).astype(np.float32))
        digests[init.name] = hashlib.sha256(a.tobytes() + str(a.shape).encode()).digest()
    return [
        n.name
        for n in graph.node
        if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and digests.get(n.input[1]) in frozen
    ]


def onnx_model_file(model: Segmentor, precision: str, window: int, cache: Path | None = None) -> Path:
    """The exported (and for ``int8`` quantised) ONNX file of ``model``, from the cache when present."""
    from ..models.text_tables import cache_dir
    from .export import export_onnx

    root = Path(cache) if cache else cache_dir() / "onnx"
    key = model_fingerprint(model, window)
    fp32 = root / f"{model.cfg.name}-{key}-w{window}.onnx"
    if not fp32.exists():
        export_onnx(model, fp32, window=window)  # temporary file + rename inside
    if precision != "int8":
        return fp32
    q = fp32.with_name(fp32.stem + "-int8w7.onnx")  # frozen Linear weights, 7-bit
    if not q.exists():
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        nodes = frozen_weight_nodes(model, fp32)
        root_logger = logging.getLogger()
        level, root_logger.level = root_logger.level, logging.ERROR  # its advice to pre-process is not actionable here
        try:
            atomic_write(
                q,
                lambda tmp: quantize_dynamic(
                    str(fp32),
                    tmp,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Gemm"],
                    nodes_to_quantize=nodes,
                    reduce_range=INT8_REDUCE_RANGE,
                ),
                durable=False,
                suffix=".tmp.onnx",
            )
        finally:
            root_logger.setLevel(level)
    return q


class OnnxWindows:
    """``predict_windows`` replacement running an exported window graph in ONNX Runtime.

    Windows are padded (bottom / right, zeros: the segmentor's own rule) to the exported window size
    and the scores cropped back, so any window ``slide_inference`` hands over is accepted.
    """

    def __init__(self, path: Path, window: int, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError(
                "--backend onnxruntime needs the onnxruntime package: pip install 'dgss[onnx]'"
            ) from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.window = window

    def __call__(self, x: torch.Tensor, pad_to: tuple[int, int] | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h > self.window or w > self.window:
            raise BackendError(f"window {h}x{w} is larger than the exported {self.window}x{self.window}")
        xp = torch.nn.functional.pad(x.float(), (0, self.window - w, 0, self.window - h))
        out = self.session.run(None, {"image": xp.cpu().numpy()})[0]
        return torch.from_numpy(out)[..., :h, :w].to(x.device)


def configure_inference(
    model: Segmentor,
    *,
    backend: str = "torch",
    precision: str = "auto",
    compile: bool = False,
    device: torch.device | None = None,
    bf16_weights: bool = True,
    onnx_cache: Path | None = None,
) -> Callable[[], AbstractContextManager]:
    """Prepare ``model`` (in place, eval mode) for ``backend`` / ``precision``; returns the context
    factory each image runs in. ``bf16_weights=False`` keeps fp32 weights with bf16 (for callers that
    also run the frozen encoders outside the returned context, e.g. depth maps)."""
    device = device or model.mean.device
    precision = resolve_precision(device, precision, backend)
    model.eval()
    if backend == "onnxruntime":
        if compile:
            raise BackendError("--compile applies to --backend torch only")
        if model.window_graph_problem:
            raise BackendError(
                f"--backend onnxruntime cannot run {model.cfg.name}: {model.window_graph_problem}; use --backend "
                "torch (`dgss export` still writes its window graph)"
            )
        window = model.window_size
        # instance attributes shadow the bound methods on purpose here (mypy forbids assigning methods)
        model.predict_windows = OnnxWindows(onnx_model_file(model, precision, window, onnx_cache), window)  # type: ignore[method-assign]
        return nullcontext
    if precision == "int8" and not quantize_frozen_int8(model):
        raise BackendError(
            f"--precision int8 quantises frozen encoders' Linear layers; {model.cfg.name} has no frozen encoder "
            "module: use --precision fp32"
        )
    if precision == "bf16" and bf16_weights:
        model.store_frozen_bf16()
    if precision == "bf16":
        model.extract_features = bf16_features(model.extract_features, device)  # type: ignore[method-assign]
    if compile:  # inductor picks its own kernels: the oneDNN routing made compiled windows 3x slower here
        model.predict_windows = torch.compile(model.predict_windows, dynamic=False)  # type: ignore[method-assign]
    return partial(onednn_fp32_matmul, device.type == "cpu" and not compile)


def bf16_features(extract_features: Callable, device: torch.device) -> Callable:
    """``extract_features`` under bf16 autocast, its pyramid handed to the head in fp32."""

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            feats = extract_features(x)
        return [f.float() for f in feats]

    return run


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendError",
    "configure_inference",
    "quantize_frozen_int8",
    "resolve_precision",
    "OnnxWindows",
    "onnx_model_file",
]

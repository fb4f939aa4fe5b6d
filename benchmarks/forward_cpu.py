"""Forward time and peak memory at 512x512 on CPU: the frozen encoders and the three methods.

Each row runs in its own subprocess (so peak RSS belongs to that row alone): the model is built on the
meta device, materialised with random weights (timing does not depend on values), then one untimed
warm-up forward reads the peak memory above the loaded model and ``--repeats`` timed forwards follow.

    python benchmarks/forward_cpu.py [--repeats 3] [--rows dinov2-l,dav2-l,freeze-dinov2-l,...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

ROWS = ["dinov2-l", "dav2-l", "freeze-dinov2-l", "rein-dinov2-l", "depthforge-dinov2-l", "vireo-dinov2-l"]


def run_row(name: str, repeats: int, size: int) -> dict:
    import torch
    from _util import materialize, peak_rss_mb, rss_mb, timed

    from dgss.backbones import ENCODERS, build_encoder
    from dgss.models.presets import build_preset

    torch.set_num_threads(2)
    with torch.device("meta"):
        model = build_encoder(name) if name in ENCODERS else build_preset(name)
    model = materialize(model).eval()
    if getattr(model.cfg, "text", None) is not None:  # Vireo: random unit-norm text tables (timing only)
        import torch.nn.functional as F

        K, D = 19, model.cfg.text.text_dim
        model.set_vocabulary(
            tuple(f"class {i}" for i in range(K)),
            F.normalize(torch.randn(K + 1, model.cfg.text.encoder_templates, D), dim=-1),
            F.normalize(torch.randn(K + 1, model.cfg.text.head_templates, D), dim=-1),
        )
    x = torch.randn(1, 3, size, size)
    fn = (lambda: model.forward_features(x)) if name in ENCODERS else (lambda: model.predict_windows(x))
    base = rss_mb()
    with torch.inference_mode():
        fn()
        peak = peak_rss_mb() - base
        times = timed(fn, repeats)
    params = sum(p.numel() for p in model.parameters())
    return {"row": name, "params_m": params / 1e6, "time_s": statistics.median(times), "peak_mb": peak}


def main() -> None:
    from _util import print_host

    print_host()
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(run_row(a.child, a.repeats, a.size)))
        return
    from _util import machine, run_child

    results = []
    for row in a.rows.split(","):
        results.append(run_child(__file__, row, "--repeats", a.repeats, "--size", a.size))
    ref = {r["row"]: r for r in results}
    base = ref.get("freeze-dinov2-l")
    print(f"# forward at {a.size}x{a.size}, batch 1, fp32, inference mode, median of {a.repeats}; {machine()}")
    print("| model | params (M) | time (s) | peak memory above weights (MB) | time / frozen | memory / frozen |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        tr = f"{r['time_s'] / base['time_s']:.2f}x" if base and r["row"] not in ("dinov2-l", "dav2-l") else ""
        mr = f"{r['peak_mb'] / base['peak_mb']:.2f}x" if base and r["row"] not in ("dinov2-l", "dav2-l") else ""
        print(f"| {r['row']} | {r['params_m']:.2f} | {r['time_s']:.2f} | {r['peak_mb']:.0f} | {tr} | {mr} |")
    print()
    for a, b in [
        ("depthforge-dinov2-l", "rein-dinov2-l"),
        ("vireo-dinov2-l", "depthforge-dinov2-l"),
        ("vireo-dinov2-l", "rein-dinov2-l"),
    ]:
        if a in ref and b in ref:
            print(
                f"{a} / {b}: time {ref[a]['time_s'] / ref[b]['time_s']:.2f}x, "
                f"peak memory {ref[a]['peak_mb'] / ref[b]['peak_mb']:.2f}x"
            )


if __name__ == "__main__":
    main()

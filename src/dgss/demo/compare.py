"""`dgss demo --methods rein,freeze,depthforge,...`: the side-by-side comparison run at demo scale.

Every method trains on the same generated scenes (``dgss.data.scenes``, Cityscapes layout, the real
training pipeline) with the same seed, batch, learning rate, schedule and number of iterations, as a
tiny model whose frozen encoders hold RANDOM weights (as ``dgss demo``). Each method runs in its own
process (so its peak memory is its own), is evaluated on the held-out scenes clean and under synthetic
night / fog / rain / snow, and the parent writes

* ``compare.md`` / ``compare.json``: one row per method with the mIoU per condition and the mean over the
  four adverse ones, trainable parameters, seconds per training iteration, peak training memory;
* ``compare.png``: one figure: grouped mIoU bars per condition, and the cost bars (parameters, s/iter).

A method is ``<method>`` (any of ``dgss.config.METHODS`` that has a tiny model) optionally followed by
augmentation baselines: ``freeze+pasta``, ``full+advstyle``, ``rein+pasta+advstyle``, and optionally by
``@<encoder>``, the architecture of the tiny frozen encoder: a family (``rein@dinov3``: DINOv3 blocks with
5 prefix tokens and RoPE; ``dinov2`` is the default) or a zoo name (``rein@dinov3-sp``).

Seconds per iteration: mean wall time of iterations 2..N (the first one warms up). Peak memory: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the peak resident set size of the method's process during
training minus its size just before the model was built (weights, optimiser state and activations).
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import CompareError

AUGMENTS = ("pasta", "advstyle")
# ``@<family>`` -> the zoo encoder whose architecture the tiny model shrinks
ENCODER_FAMILIES = {"dinov2": "dinov2-s", "dinov3": "dinov3-s", "eva02": "eva02-l", "clip": "clip-l", "sam": "sam-h"}
CONDITION_COLUMNS = ("clean", "night", "fog", "rain", "snow")


@dataclass(frozen=True)
class MethodSpec:
    method: str
    augments: tuple[str, ...] = ()
    encoder: str | None = None  # as written after "@" (family or zoo name); None: the tiny default (DINOv2)

    @property
    def label(self) -> str:
        return "+".join((self.method, *self.augments)) + (f"@{self.encoder}" if self.encoder else "")

    @property
    def slug(self) -> str:
        return self.label.replace("+", "_").replace("@", "_")

    @property
    def encoder_name(self) -> str | None:
        """The zoo encoder the tiny model is built from (None: the tiny default)."""
        return ENCODER_FAMILIES.get(self.encoder, self.encoder) if self.encoder else None


def known_encoders() -> tuple[str, ...]:
    """``@`` suffixes: the families, then the zoo names a tiny model can shrink."""
    from ..models.presets import SEG_ENCODERS

    return (*ENCODER_FAMILIES, *SEG_ENCODERS)


def known_methods() -> tuple[str, ...]:
    """The segmentor methods and CAT-Seg (tiny: ``catseg-tiny``, the open-vocabulary competitor)."""
    from ..config import METHODS

    return (*METHODS, "catseg")


def parse_methods(text: str | list[str]) -> list[MethodSpec]:
    """``"rein,freeze+pasta"`` -> specs; unknown methods/augmentations and duplicates fail naming them."""
    items = text if isinstance(text, list) else text.split(",")
    items = [i.strip() for part in items for i in part.split(",") if i.strip()]
    if not items:
        raise CompareError("--methods: give at least one method, e.g. --methods rein,freeze,depthforge")
    specs, seen = [], set()
    for item in items:
        body, at, encoder = item.partition("@")
        encoder = encoder.strip()
        if at and encoder not in known_encoders():
            raise CompareError(
                f"--methods: unknown encoder {encoder!r} in {item!r}; known after '@': {', '.join(known_encoders())}"
            )
        method, *augs = [p.strip() for p in body.split("+")]
        if method not in known_methods():
            raise CompareError(
                f"--methods: unknown method {method!r} in {item!r}; known: {', '.join(known_methods())}"
                f" (optionally +{' +'.join(AUGMENTS)})"
            )
        bad = [a for a in augs if a not in AUGMENTS]
        if bad:
            hint = " (gtr_ltr needs your own style images and network: use a run config)" if "gtr_ltr" in bad else ""
            raise CompareError(
                f"--methods: unknown augmentation {bad[0]!r} in {item!r}; known: {', '.join(AUGMENTS)}{hint}"
            )
        spec = MethodSpec(method, tuple(dict.fromkeys(augs)), encoder or None)
        if spec.label in seen:
            raise CompareError(f"--methods: {spec.label!r} is listed twice")
        seen.add(spec.label)
        specs.append(spec)
    return specs


@dataclass
class CompareOptions:
    """Everything that is identical for all methods of one comparison."""

    iters: int = 600
    train_scenes: int = 96
    val_scenes: int = 12
    lr: float = 1e-3
    severity: int = 3
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 4
    crop: int = 128
    embed_dim: int = 96
    depth: int = 4
    scene_size: tuple[int, int] = (256, 512)  # (H, W) of the generated scenes
    num_points: int = 4096
    threads: int | None = None  # torch threads per method process (None: torch default)


def method_run_config(spec: MethodSpec, work_dir: Path, data_root: Path, opts: CompareOptions) -> dict:
    """The run config of one method: identical data, seed, batch, schedule and iterations for all."""
    crop = opts.crop
    tiny: dict[str, Any] = {"img_size": crop, "embed_dim": opts.embed_dim, "depth": opts.depth}
    if spec.encoder_name:
        tiny["encoder"] = spec.encoder_name
    return {
        "name": f"compare_{spec.slug}",
        "seed": opts.seed,
        "model": {
            "method": spec.method,
            "tiny": True,
            "tiny_options": tiny,
        },
        "weights": {"random": True},
        "data": {
            "root": str(data_root.parent),
            "train": {
                "dataset": "cityscapes",
                "root": str(data_root),
                "split": "train",
                "batch_size": opts.batch_size,
                "num_workers": 0,
                "crop_size": crop,
                "scales": [int(crop * f) for f in (1.0, 1.25, 1.5, 1.75, 2.0)],
            },
            "val": [],
        },
        "optim": {"lr": opts.lr},
        "schedule": {"type": "poly", "power": 0.9},
        "loss": {"num_points": opts.num_points},
        "train": {
            "max_iters": opts.iters,
            "val_interval": 0,
            "val_at_end": False,
            "ckpt_interval": opts.iters,
            "keep_last": 1,
            "device": opts.device,
            "work_dir": str(work_dir),
        },
        "logging": {"interval": 1, "progress": False, "tensorboard": False},
        "augment": {
            "pasta": {"enabled": "pasta" in spec.augments},
            "advstyle": {"enabled": "advstyle" in spec.augments},
        },
    }


# ================================================================================================ one method
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def train_and_evaluate(job: dict) -> dict:
    """Train one method from its run config and evaluate it (runs inside the method's own process)."""
    import torch

    from ..config import config_from_dict
    from ..engine.checkpointing import latest_checkpoint
    from ..engine.logging import read_jsonl
    from ..engine.trainer import run_training
    from ..models.checkpoint import load_checkpoint
    from .run import evaluate_conditions

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    cfg = config_from_dict(job["run_config"])
    work = cfg.work_dir
    shutil.rmtree(work, ignore_errors=True)
    cuda = cfg.train.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mb()
    t0 = time.perf_counter()
    run_training(cfg, progress=False)
    train_s = time.perf_counter() - t0
    if cuda:
        peak, kind = torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base, "CPU peak RSS above start"
    log = read_jsonl(work / "log.jsonl")
    times = [log[i]["time_per_iter"] for i in sorted(log)]
    steady = times[1:] or times
    ckpt = latest_checkpoint(work)
    assert ckpt is not None  # the method's training run just wrote it
    model = load_checkpoint(ckpt.weights, random_frozen=True).eval()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    h, w = job["scene_size"]
    summary, ds = evaluate_conditions(model, Path(job["data_root"]), (w, h), job["severity"], job["seed"])
    miou = {d: (None if math.isnan(r.miou) else round(100 * r.miou, 2)) for d, r in summary.domains.items()}
    return {
        "method": job["label"],
        "model": model.cfg.name,
        "trainable_params": int(trainable),
        "total_params": int(total),
        "sec_per_iter": sum(steady) / len(steady),
        "peak_mem_mb": peak,
        "mem_kind": kind,
        "train_seconds": train_s,
        "final_loss": log[max(log)]["loss"],
        "iterations": len(times),
        "mIoU": miou,
        "mean_adverse": None if math.isnan(summary.mean) else round(100 * summary.mean, 2),
        "val_images": len(ds),
        "work_dir": str(work),
    }


def _run_child(job: dict, job_file: Path) -> dict:
    job_file.write_text(json.dumps(job, indent=1))
    job_file.with_name("result.json").unlink(missing_ok=True)
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    res = subprocess.run(
        [sys.executable, "-m", "dgss.demo.compare", str(job_file)], capture_output=True, text=True, env=env
    )
    result_file = job_file.with_name("result.json")
    if res.returncode or not result_file.is_file():
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-15:])
        (job_file.parent / "error.log").write_text(res.stdout + "\n" + res.stderr)
        raise RuntimeError(
            f"method {job['label']!r} failed (exit {res.returncode}; {job_file.parent / 'error.log'}):\n{tail}"
        )
    return json.loads(result_file.read_text())


# ================================================================================================ table / chart
def table_markdown(rows: list[dict]) -> str:
    head = ["method", *CONDITION_COLUMNS, "mean adverse", "trainable params", "s / iter", "peak mem (MB)"]

    def pct(v):
        return "–" if v is None else f"{v:.2f}"

    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{r['method']}`",
                    *(pct(r["mIoU"].get(c)) for c in CONDITION_COLUMNS),
                    pct(r["mean_adverse"]),
                    f"{r['trainable_params']:,}",
                    f"{r['sec_per_iter']:.3f}",
                    f"{r['peak_mem_mb']:.0f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def bar_chart(rows: list[dict], path: Path, title: str) -> Path:
    """mIoU per condition (one bar per method in each group) + trainable parameters, s/iter, peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = [*CONDITION_COLUMNS, "mean adverse"]
    methods = [r["method"] for r in rows]
    colors = plt.get_cmap("tab10")(np.arange(len(rows)) % 10)
    fig = plt.figure(figsize=(13.0 + 0.4 * max(0, len(rows) - 4), 4.8))
    gs = fig.add_gridspec(1, 4, width_ratios=[3.4, 1, 1, 1], wspace=0.5)
    ax = fig.add_subplot(gs[0, 0])
    width = 0.8 / len(rows)
    x = np.arange(len(groups))
    top = 0.0
    for i, r in enumerate(rows):
        vals = [r["mIoU"].get(g) if g != "mean adverse" else r["mean_adverse"] for g in groups]
        vals = [0.0 if v is None else v for v in vals]
        top = max(top, *vals)
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, vals, width, label=r["method"], color=colors[i])
        if len(rows) <= 4:
            ax.bar_label(bars, fmt="%.1f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x, [g.replace(" ", "\n") for g in groups])
    ax.axvline(len(CONDITION_COLUMNS) - 0.5, color="0.6", lw=0.8, ls="--")
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, max(10.0, top * 1.35))
    ax.set_title("mIoU on held-out generated scenes")
    ax.legend(fontsize=7, loc="upper center", ncol=min(len(rows), 3))
    for col, key, label, fmt in (
        (1, "trainable_params", "trainable parameters", "{:,.0f}"),
        (2, "sec_per_iter", "seconds / iteration", "{:.3f}"),
        (3, "peak_mem_mb", "peak memory (MB)", "{:,.0f}"),
    ):
        a = fig.add_subplot(gs[0, col])
        vals = [r[key] for r in rows]
        bars = a.bar(np.arange(len(rows)), vals, color=colors)
        a.bar_label(bars, labels=[fmt.format(v) for v in vals], fontsize=6, rotation=90, padding=2)
        a.set_xticks(np.arange(len(rows)), methods, rotation=60, ha="right", fontsize=7)
        a.set_ylim(0, max(vals) * 1.45 if max(vals) > 0 else 1)
        a.set_title(label, fontsize=9)
        a.tick_params(axis="y", labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.27, top=0.86)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ================================================================================================ entry point
def run_comparison(
    specs: list[MethodSpec] | str, out: str | Path, opts: CompareOptions | None = None, *, echo=print
) -> dict:
    """Train and evaluate every method (each in its own process); write compare.md/.json/.png in ``out``."""
    from .run import write_scenes

    if isinstance(specs, str) or not all(isinstance(s, MethodSpec) for s in specs):
        specs = parse_methods(cast("str | list[str]", specs))  # names, not specs
    opts = opts or CompareOptions()
    if opts.iters < 1:
        raise CompareError(f"--iters must be >= 1, got {opts.iters}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_root = out / "data" / "cityscapes"
    h, w = opts.scene_size
    write_scenes(data_root, "train", opts.train_scenes, 1, h, w)
    write_scenes(data_root, "val", opts.val_scenes, 2, h, w)
    from ..config import config_from_dict
    from ..errors import ConfigError

    run_cfgs = {}
    for spec in specs:  # every method's config (and its model) is checked before any training starts
        run_cfgs[spec] = method_run_config(spec, out / "runs" / spec.slug / "run", data_root, opts)
        try:
            config_from_dict(run_cfgs[spec])
        except (ConfigError, ValueError) as e:
            raise CompareError(f"method {spec.label!r} cannot be built at this size: {e}") from None
    rows, failed = [], {}
    for i, spec in enumerate(specs):
        work = out / "runs" / spec.slug
        run_cfg = run_cfgs[spec]
        job = {
            "label": spec.label,
            "run_config": run_cfg,
            "data_root": str(data_root),
            "scene_size": [h, w],
            "severity": opts.severity,
            "seed": opts.seed,
            "threads": opts.threads,
        }
        work.mkdir(parents=True, exist_ok=True)
        echo(f"[{i + 1}/{len(specs)}] {spec.label}: training {opts.iters} iterations ...")
        try:
            row = _run_child(job, work / "job.json")
        except RuntimeError as e:  # one broken method does not throw away the others' runs
            failed[spec.label] = str(e)
            echo(f"    FAILED: {e}")
            continue
        echo(
            f"    mIoU clean {row['mIoU'].get('clean')}, mean adverse {row['mean_adverse']}, "
            f"{row['trainable_params']:,} trainable, {row['sec_per_iter']:.3f} s/iter, "
            f"{row['peak_mem_mb']:.0f} MB"
        )
        rows.append(row)
    setting = (
        f"{opts.iters} iterations, batch {opts.batch_size}, lr {opts.lr:g} (poly 0.9), seed {opts.seed}, "
        f"{opts.train_scenes} training scenes, {opts.val_scenes} held-out scenes {w}x{h}, crop {opts.crop}, "
        f"tiny models (width {opts.embed_dim}, {opts.depth} blocks) with RANDOM frozen encoders, "
        f"conditions at severity {opts.severity}, device {opts.device}"
    )
    result = {
        "setting": setting,
        "options": asdict(opts),
        "columns": {
            "mIoU": list(CONDITION_COLUMNS),
            "mean_adverse": "mean of night, fog, rain, snow",
            "sec_per_iter": "mean wall time of iterations 2..N",
            "peak_mem_mb": rows[0]["mem_kind"] if rows else "",
        },
        "rows": rows,
        "failed": failed,
    }
    result = json.loads(json.dumps(result))  # exactly what compare.json holds (tuples -> lists)
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    md = [
        "# dgss demo: side-by-side comparison",
        "",
        "**The frozen encoders hold RANDOM weights**: the numbers compare how the methods train and what "
        "they cost at demo scale under identical conditions, not what they achieve with pretrained encoders.",
        "",
        f"Setting: {setting}.",
        "",
        table_markdown(rows),
        "",
        "mIoU in % on the held-out scenes; mean adverse = mean over night, fog, rain, snow. Trainable = "
        "parameters the optimiser updates (adapter + head; everything for `full`). s / iter = mean wall time "
        "of iterations 2..N, data loading included (in the training process: PASTA's FFTs count). "
        f"Peak memory: {result['columns']['peak_mem_mb']}.",
        "",
    ]
    if failed:
        md += ["Failed (see runs/<method>/): " + ", ".join(f"`{k}`" for k in failed), ""]
    md += ["![comparison](compare.png)", ""]
    (out / "compare.md").write_text("\n".join(md))
    if rows:
        bar_chart(rows, out / "compare.png", f"dgss demo comparison ({opts.iters} it., random frozen encoders)")
    return result


def _child_main(job_file: str) -> int:
    job_path = Path(job_file)
    result = train_and_evaluate(json.loads(job_path.read_text()))
    job_path.with_name("result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))

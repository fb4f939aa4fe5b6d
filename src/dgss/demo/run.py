"""`dgss demo`: train a small DepthForge on generated street scenes, test it under adverse conditions.

Without weights (the default, no downloads): a tiny DepthForge whose frozen encoders hold RANDOM
weights trains for a few minutes on CPU on scenes dgss generates itself (``dgss.data.scenes``), then
is evaluated on held-out scenes, clean and under synthetic night / fog / rain / snow, and writes a
report with a per-domain mIoU table, overlays and depth maps to ``./demo_out/``.

With ``--weights encoder=FILE depth_encoder=FILE`` (files or ``hf-hub:`` ids) the same command uses
the real DepthForge-DINOv2-L with Depth Anything V2-L, and ``--images`` segments your own pictures
(and draws their real DAv2 depth maps).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import viz
from ..data.datasets import SegDataset
from ..data.robustness import Corruption, corrupt
from ..data.scenes import make_scene
from ..engine.evaluator import evaluate
from ..metrics import DomainMetrics
from .progress import RunProgress

CONDITIONS = ("night", "fog", "rain", "snow")
TRAIN_SEED, VAL_SEED = 1, 2
# seconds per step on a 2-core CPU (measured), for the ETA of the whole run: scene, training iteration,
# evaluated image, picture (one prediction), report
STEP_COST = {"scenes": 0.04, "training": 0.2, "evaluation": 0.3, "pictures": 0.3, "report": 1.0}


def scene_seed(split_seed: int, index: int) -> int:
    """The generator seed of scene ``index`` of a split (train: TRAIN_SEED, held-out: VAL_SEED)."""
    return split_seed * 100_003 + index


def write_scenes(root: Path, split: str, n: int, seed: int, height: int, width: int, progress=None) -> None:
    """Generated scenes in the official Cityscapes layout (trainId labels), so the real readers load them.
    ``progress()`` is called after each scene."""
    for i in range(n):
        stem = f"synth_{seed:03d}{i:05d}_000019"
        img = root / "leftImg8bit" / split / "synth" / f"{stem}_leftImg8bit.png"
        lab = root / "gtFine" / split / "synth" / f"{stem}_gtFine_labelTrainIds.png"
        if not (img.is_file() and lab.is_file()):
            s = make_scene(scene_seed(seed, i), height, width)
            for path, array in ((img, s.image), (lab, s.label)):  # temp + rename: a kill leaves no half PNG
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                Image.fromarray(array).save(tmp, format="PNG")
                os.replace(tmp, path)
        if progress is not None:
            progress()


RUN_FILES = (
    "iter_*.safetensors",
    "iter_*.train_state.pt",
    "iter_*.unreadable",
    ".iter_*.tmp",
    "log.jsonl",
    "config.yaml",
    "tb",
    ".dgss-owned",
)  # what a training run writes into its work dir


def foreign_run_files(run_dir: Path) -> list[str]:
    """Names in the demo's run folder that a training run does not write (all of them if the folder is
    not marked as dgss's): the demo refuses to start rather than delete them."""
    import fnmatch

    if not run_dir.exists():
        return []
    if not run_dir.is_dir():
        return [run_dir.name]
    from ..checks import owned_by_dgss

    names = sorted(p.name for p in run_dir.iterdir())
    if not owned_by_dgss(run_dir):
        return names
    tb = run_dir / "tb"
    bad = [n for n in names if not any(fnmatch.fnmatch(n, pat) for pat in RUN_FILES)]
    if tb.is_dir():
        bad += [f"tb/{p.name}" for p in tb.iterdir() if not p.name.startswith("events.out.tfevents.")]
    return bad


def remove_run_files(run_dir: Path) -> None:
    """Delete what a previous demo's training run wrote in ``run_dir`` (checked by `foreign_run_files`)."""
    if not run_dir.is_dir():
        return
    foreign = foreign_run_files(run_dir)
    if foreign:
        from ..errors import OutputPathError

        raise OutputPathError(
            f"{run_dir} holds files dgss demo did not write ({', '.join(foreign[:3])}); "
            "move them away or choose another --out"
        )
    for p in run_dir.iterdir():
        if p.is_dir():
            shutil.rmtree(p)  # tb/: event files only
        elif p.name != ".dgss-owned":
            p.unlink()


def run_config(out: Path, data_root: Path, args) -> dict:
    real = bool(args.weights)
    crop = 512 if real else 128
    model = (
        {"method": "depthforge", "preset": "depthforge-dinov2-l"}
        if real
        else {"method": "depthforge", "tiny": True, "tiny_options": {"img_size": crop, "embed_dim": 96, "depth": 4}}
    )
    weights = dict(args.weights) if real else {"random": True}
    return {
        "name": "demo_depthforge",
        "seed": args.seed,
        "model": model,
        "weights": weights,
        "data": {
            "root": str(data_root.parent),
            "train": {
                "dataset": "cityscapes",
                "root": str(data_root),
                "split": "train",
                "batch_size": 4,
                "num_workers": 0,
                "crop_size": crop,
                "scales": [int(crop * f) for f in (1.0, 1.25, 1.5, 1.75, 2.0)],
            },
            "val": [],
        },
        "optim": {"lr": args.lr},
        "schedule": {"type": "poly", "power": 0.9},
        "loss": {"num_points": 4096 if not real else 12544},
        "train": {
            "max_iters": args.iters,
            "val_interval": 0,
            "val_at_end": False,
            "ckpt_interval": args.iters,
            "keep_last": 1,
            "device": args.device,
            "work_dir": str(out / "run"),
        },
        "logging": {"interval": max(1, args.iters // 20), "progress": True},
    }


def evaluate_conditions(model, data_root: Path, size: tuple[int, int], severity: int, seed: int, progress=None):
    """Per-domain metrics: clean held-out scenes and the same scenes under each adverse condition.
    ``progress(condition)`` is called after each image."""
    from ..data.transforms import EvalResize

    ds = SegDataset.from_root("cityscapes", data_root, "val")
    combined = DomainMetrics(19, 255, list(ds.info.class_names))
    for cond in (None,) + CONDITIONS:
        m = DomainMetrics(19, 255, list(ds.info.class_names))
        pre = Corruption(cond, severity, seed) if cond else None

        def predict(x, cond=cond):
            scores = model.slide_inference(x)
            if progress is not None:
                progress(cond or "clean")
            return scores

        evaluate(predict, ds, metrics=m, resize=EvalResize(size), pre_transform=pre, device=model.mean.device)
        for _, cm in m.matrices.items():
            combined.update_confusion(cond or "clean", cm, images=len(ds))
    return combined.summary(mean_over=list(CONDITIONS)), ds


def pictures(
    model, ds: SegDataset, out: Path, severity: int, seed: int, n: int = 3, *, true_depth=None, progress=None
) -> list[Path]:
    """Per scene, two self-explaining pictures: ``scene<i>_conditions.png`` (rows clean / night / fog /
    rain / snow; columns input | prediction | ground truth; legend of the classes present) and
    ``scene<i>_depth.png`` (input | the generator's true depth | Depth Anything V2's output). With random
    frozen encoders each picture says so in a red banner. ``true_depth(i)`` gives scene i's distance map
    (None: the depth picture shows DAv2 only); ``progress()`` is called after each prediction."""
    from ..engine.predict import depth_model_for, predict_depth, predict_image

    pal = viz.cityscapes_palette()
    names = list(ds.info.class_names)
    dav2 = depth_model_for(model, None)
    random = any((m.frozen_source or {}).get("random") for m in model.frozen_modules().values())
    paths = []
    for i in range(min(n, len(ds))):
        image, lab = ds.load(i)
        rgb = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        label = lab.numpy()
        rows, present = [], set(np.unique(label[label != 255]).tolist())
        for cond in (None,) + CONDITIONS:
            img = np.ascontiguousarray(corrupt(rgb, cond, severity, seed)) if cond else rgb
            pred = predict_image(model, img).label
            present |= set(np.unique(pred).tolist())
            rows.append([img, viz.overlay(img, pred, pal, 0.7), viz.colorize(label, pal)])
            if progress is not None:
                progress()
        header = (
            [
                lambda w: viz.banner(
                    "Frozen encoders hold RANDOM weights (no downloads): these predictions show "
                    "the pipeline and the drop under adverse conditions, not what DepthForge "
                    "achieves with pretrained encoders.",
                    w,
                )
            ]
            if random
            else []
        )
        grid = viz.titled_grid(
            rows,
            row_labels=["clean", *CONDITIONS],
            col_titles=["input", "prediction", "ground truth"],
            header=header,
            footer=[lambda w, present=present: viz.legend_strip(names, pal, sorted(present), w)],
        )
        p = out / f"scene{i}_conditions.png"
        viz.save_png(grid, p)
        paths.append(p)
        depth = predict_depth(dav2, model, rgb)
        tiles, titles = [rgb], ["input"]
        if true_depth is not None and (d := true_depth(i)) is not None:
            tiles.append(viz.colorize_depth(1.0 / np.maximum(d, 1e-3)))
            titles.append("true depth (scene generator)")
        tiles.append(viz.colorize_depth(depth))
        titles.append("Depth Anything V2 output")
        header = (
            [
                lambda w: viz.banner(
                    "Depth Anything V2 holds RANDOM weights: its output is not meaningful (the "
                    "true depth beside it is what a trained DAv2 should approach).",
                    w,
                )
            ]
            if random
            else []
        )
        footer = [
            lambda w: viz.banner(
                "colours: bright = near, dark = far (each map scaled to its own range)", w, size=14, color=(90, 90, 90)
            )
        ]
        p = out / f"scene{i}_depth.png"
        viz.save_png(viz.titled_grid([tiles], col_titles=titles, header=header, footer=footer), p)
        paths.append(p)
        if progress is not None:
            progress()
    return paths


def clean_vs_adverse(summary) -> tuple[list[float], list[float]]:
    """Per-class IoU (%) on clean scenes and its mean over the adverse conditions where the class occurs
    (NaN: never occurs)."""
    clean = [100 * v for v in summary.domains["clean"].iou]
    adverse = []
    for k in range(len(summary.class_names)):
        vals = [summary.domains[c].iou[k] for c in CONDITIONS if not np.isnan(summary.domains[c].iou[k])]
        adverse.append(100 * float(np.mean(vals)) if vals else float("nan"))
    return clean, adverse


def iou_chart(summary, out: Path, random: bool) -> Path:
    """Bar chart of per-class IoU: clean against the mean over the adverse conditions."""
    clean, adverse = clean_vs_adverse(summary)
    p = out / "iou_clean_vs_adverse.png"
    viz.iou_bar_chart(
        summary.class_names,
        {"clean": clean, "mean of night / fog / rain / snow": adverse},
        p,
        title="Per-class IoU on held-out generated scenes",
        note="frozen encoders hold RANDOM weights: the pipeline, not the method" if random else None,
    )
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from ..checks import claim_output_dir
    from ..config import config_from_dict
    from ..engine.checkpointing import latest_checkpoint
    from ..engine.trainer import run_training
    from ..errors import OutputPathError
    from ..models.checkpoint import load_checkpoint

    # dgss only removes what it wrote: --out must be new, empty or an earlier demo's folder (marked)
    out = claim_output_dir(args.out, "--out", what="dgss demo")
    run_dir = out / "run"
    foreign = foreign_run_files(run_dir)
    if foreign:
        raise OutputPathError(
            f"--out {out}: {run_dir} holds files dgss demo did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); move them away or choose another --out"
        )
    data_root = out / "data" / "cityscapes"
    H, W = (256, 512)
    # The tiny model's tensors are too small for a second thread to pay off, and on a CPU shared with
    # other work, two spinning OpenMP threads cost ~13x the CPU time (measured: 0.22 s vs 2.96 s CPU per
    # training iteration); the real DINOv2-L run keeps torch's default.
    threads = getattr(args, "threads", None) or (None if args.weights else 1)
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    n_pics = min(3, args.val_scenes)
    prog = RunProgress(
        {
            "scenes": (args.train_scenes + args.val_scenes, STEP_COST["scenes"]),
            "training": (args.iters, STEP_COST["training"]),
            "evaluation": ((1 + len(CONDITIONS)) * args.val_scenes, STEP_COST["evaluation"]),
            "pictures": (n_pics * (len(CONDITIONS) + 2), STEP_COST["pictures"]),
            "report": (1 + bool(args.images), STEP_COST["report"]),
        }
    )
    try:
        prog.begin("scenes")
        write_scenes(data_root, "train", args.train_scenes, TRAIN_SEED, H, W, progress=prog.advance)
        write_scenes(data_root, "val", args.val_scenes, VAL_SEED, H, W, progress=prog.advance)
        cfg = config_from_dict(run_config(out, data_root, args))
        remove_run_files(run_dir)  # the previous demo's training run (only files it wrote): a fresh run
        claim_output_dir(run_dir, "--out", what="dgss demo")
        with prog.training():
            run_training(cfg)
        ckpt = latest_checkpoint(out / "run")
        assert ckpt is not None  # the training run just wrote its checkpoints
        model = load_checkpoint(
            ckpt.weights, random_frozen=not args.weights, frozen_weights=dict(args.weights) if args.weights else None
        ).eval()
        t_train = time.time() - t0
        prog.begin("evaluation")
        summary, ds = evaluate_conditions(
            model, data_root, (W, H), args.severity, args.seed, progress=lambda cond: prog.advance(note=cond)
        )

        def true_depth(i: int):
            """The generator's distance map of held-out scene i (None if the files are not that scene)."""
            scene = make_scene(scene_seed(VAL_SEED, i), H, W)
            return scene.depth if np.array_equal(scene.label, ds.load(i)[1].numpy()) else None

        prog.begin("pictures")
        pics = pictures(model, ds, out, args.severity, args.seed, n_pics, true_depth=true_depth, progress=prog.advance)
        prog.begin("report")
        random = not args.weights
        chart = iou_chart(summary, out, random)
        prog.advance()
        user = []
        if args.images:
            from ..engine.predict import depth_model_for, iter_inputs, predict_depth, predict_image, write_outputs

            dav2 = depth_model_for(model, None)
            for name, rgb in iter_inputs(args.images):
                pred = predict_image(model, rgb)
                write_outputs(
                    out / "your_images", name, rgb, pred, model.class_names, depth=predict_depth(dav2, model, rgb)
                )
                user.append(name)
            prog.advance()
        prog.finish()
    finally:
        prog.close()
    t_total = time.time() - t0
    report = ["# dgss demo: DepthForge on generated street scenes", ""]
    if random:
        report += [
            "**The frozen encoders (DINOv2-style ViT and Depth Anything V2 encoder) hold RANDOM weights** "
            "(no downloads were made). Only the adapter tokens and the head were trained, for "
            f"{args.iters} iterations on {args.train_scenes} generated scenes. The numbers show that the "
            "pipeline trains and how its accuracy drops under adverse conditions; they say nothing about "
            "what DepthForge achieves with pretrained encoders. The depth maps come from a random "
            "Depth Anything V2 and are not meaningful. Run `dgss demo --weights encoder=... "
            "depth_encoder=...` to use real weights.",
            "",
        ]
    report += [
        f"Model: {model.cfg.name}; trained in {t_train:.0f} s on {args.device} (whole demo {t_total:.0f} s). "
        f"Held-out scenes: {len(ds)}; conditions from `dgss.data.robustness` at severity {args.severity}.",
        "",
        "## mIoU per domain (%)",
        "",
        summary.to_markdown(),
        "",
        "Mean over the adverse conditions (night, fog, rain, snow) is the last column.",
        "",
        "## Per-class IoU (%)",
        "",
        summary.to_markdown(per_class=True),
        "",
        f"![per-class IoU, clean vs adverse]({chart.name})",
        "",
        "## Pictures",
        "",
        "Each picture carries its own labels: rows clean, night, fog, rain, snow; columns input, prediction "
        "overlay, ground truth; a legend of the classes present. The depth pictures put the scene "
        "generator's true depth beside Depth Anything V2's output.",
        "",
    ]
    report += [f"![{p.stem}]({p.name})" for p in pics]
    if user:
        report += ["", "## Your images", ""] + [f"- `your_images/{n}_overlay.png`, `{n}_depth.png`" for n in user]
    (out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(report[: report.index("## Per-class IoU (%)")]))
    print(f"\nreport: {out / 'report.md'}")
    return 0

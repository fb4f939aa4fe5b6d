"""``dgss train <config.yaml> [key=value ...]``: iteration-based training from a run config.

Examples::

    dgss train configs/rein/gta2citys_rein_dinov2-l.yaml
    dgss train configs/rein/gta2citys_rein_dinov2-l.yaml optim.lr=2e-4 data.root=/datasets --work-dir runs/a
    dgss train configs/tiny/rein_synthetic.yaml train.max_iters=50 --resume          # latest checkpoint
    dgss train configs/tiny/rein_synthetic.yaml --resume latest-valid   # newest readable one, if the last is damaged
    dgss train configs/depthforge/gta2citys_depthforge_dinov2-l.yaml --dry-run         # validate + meta build
    torchrun --nproc-per-node 4 -m dgss train configs/rein/citys2acdc_rein_dinov2-l.yaml data.train.batch_size=1
"""

from __future__ import annotations

import argparse


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML run config (iteration-based, resumable, DDP via torchrun)",
        description="Train from a YAML run config. Overrides: dotted key=value pairs, values parsed as YAML "
        "(optim.lr=2e-4, train.max_iters=1000, data.val=[]), given right after the config (before any "
        "--option). Multi-GPU: torchrun --nproc-per-node N -m dgss train ... (batch_size is per process).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    p.add_argument("config", help="run config (YAML), e.g. configs/rein/gta2citys_rein_dinov2-l.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CKPT",
        help="continue a run: the latest checkpoint of the work dir (refused if it is unreadable), "
        "'latest-valid' (the newest readable checkpoint, skipping damaged ones), or the given "
        "iter_*.safetensors / iter_*.train_state.pt / work dir",
    )
    p.add_argument("--work-dir", default=None, help="output directory (default: train.work_dir or work_dirs/<name>)")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of the progress bar")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config, build the model on the meta device, print the parameter groups; "
        "no data, no weights, no training",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config (YAML) and exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)
    return p


def _data_summary(cfg) -> str:
    t = cfg.data.train
    vals = (
        ", ".join(
            f"{v.dataset}/{v.split}" + (f"[{','.join(v.conditions)}]" if v.conditions else "") for v in cfg.data.val
        )
        or "none"
    )
    src = t.dataset if t.dataset == "synthetic" else f"{t.dataset}/{t.split}"
    return (
        f"  train {src}, batch {t.batch_size} per process; val: {vals}; mean over "
        f"{', '.join(cfg.data.mean_over) if cfg.data.mean_over else 'all domains'}; work dir {cfg.work_dir}"
    )


def dry_run(cfg) -> int:
    import torch

    from ..config import segmentor_config_from
    from ..engine.optim import build_optimizer, describe_groups
    from ..engine.schedulers import LRSchedule
    from ..models.build import build_model

    sched = LRSchedule.from_config(cfg.schedule, cfg.optim.lr, cfg.train.max_iters)
    T = cfg.train.max_iters
    lrs = ", ".join(f"t={t}: {sched.lr_at(t):.3g}" for t in sorted({0, T // 10, T // 2, T - 1}))
    seg_cfg = segmentor_config_from(cfg.model, cfg.loss)
    with torch.device("meta"):
        model = build_model(seg_cfg)
        opt = build_optimizer(model, cfg.optim)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    print(f"{cfg.name}: model {seg_cfg.name} ({seg_cfg.method}), {n_train:,} trainable / {n_all:,} parameters")
    for line in describe_groups(opt):
        print(f"  {line}")
    print(f"  schedule {cfg.schedule.type} over {T} iterations ({lrs})")
    print(_data_summary(cfg))
    return 0


def run(args: argparse.Namespace) -> int:
    """Errors (ConfigError, DataError, ResumeError, ...) are printed by dgss.cli.main: one line, exit 2."""
    from ..checks import check_output_dir
    from ..config import load_config
    from ..errors import CLIError

    try:
        cfg = load_config(args.config, args.overrides)
    except UnicodeDecodeError:
        raise CLIError(
            f"{args.config}: not a text file (a YAML run config expected, e.g. configs/tiny/rein_synthetic.yaml)"
        ) from None
    if args.work_dir:
        cfg.train.work_dir = args.work_dir
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    if args.dry_run:
        return dry_run(cfg)
    check_output_dir(cfg.work_dir, "--work-dir")  # before the model is built and any data read
    if args.resume:  # an unusable checkpoint fails before any work, too
        from ..engine.checkpointing import resolve_resume

        resolve_resume(args.resume, cfg.work_dir)
    if str(cfg.train.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CLIError(
                f"train.device is {cfg.train.device!r} but CUDA is not available here; "
                "set train.device=cpu after the config"
            )

    from ..engine.distributed import cleanup, init_distributed
    from ..engine.trainer import run_training

    ctx = init_distributed(cfg.train.device)
    try:
        summary = run_training(cfg, resume=args.resume, ctx=ctx, progress=False if args.no_progress else None)
    finally:
        cleanup(ctx)
    if ctx.is_main:
        val = summary.get("val") or {}
        msg = f"done: {summary['iteration']} iterations, checkpoints in {summary['work_dir']}"
        if "mean_mIoU" in val:
            msg += f", mean mIoU {val['mean_mIoU']:.2f}"
        print(msg)
    return 0

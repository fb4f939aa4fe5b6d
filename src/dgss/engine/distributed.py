"""torch.distributed helpers: process-group setup from ``torchrun`` variables, DDP wrapping of the
trainable parameters only, reductions and rank-0 gating.

``torchrun --nproc-per-node N -m dgss train cfg.yaml`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`init_distributed` then starts the group (NCCL on GPUs, gloo on CPU). Without these variables
everything runs as a single process and every helper is a no-op.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda:<local rank> when CUDA is available, else cpu; ``cuda`` -> cuda:<local rank>."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device(spec)


def init_distributed(device: str = "auto", timeout_s: int = 1800) -> DistContext:
    """Start the process group when launched by torchrun (``WORLD_SIZE`` > 1); returns the context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistContext(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, backend=backend)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_mean(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of ``t`` over ranks (a copy; ``t`` is untouched)."""
    t = t.detach().clone()
    if ctx.distributed:
        dist.all_reduce(t)
        t /= ctx.world_size
    return t


def all_gather_object(obj, ctx: DistContext) -> list:
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, ctx: DistContext):
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def frozen_names(model: nn.Module) -> list[str]:
    """Names of the parameters without ``requires_grad`` and of all buffers (never synchronised)."""
    names = [n for n, p in model.named_parameters() if not p.requires_grad]
    names += [n for n, _ in model.named_buffers()]
    return names


def wrap_ddp(model: nn.Module, ctx: DistContext, *, find_unused: bool = False) -> nn.Module:
    """DistributedDataParallel over the trainable parameters only.

    Frozen parameters and buffers are excluded from DDP entirely (no initial broadcast, no buckets):
    every rank loads the same frozen weights from their files (or builds the same random ones from the
    shared seed). Trainable parameters are broadcast from rank 0 once, gradients are averaged.
    """
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    DDP._set_params_and_buffers_to_ignore_for_model(model, frozen_names(model))
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # all buffers are ignored above, so none is broadcast (neither at init nor per forward)
    return DDP(model, device_ids=ids, output_device=ids[0] if ids else None, find_unused_parameters=find_unused)


def unwrap(model: nn.Module) -> nn.Module:
    return (
        model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model
    )


def no_sync(model: nn.Module, skip: bool):
    """``model.no_sync()`` for DDP micro-batches that only accumulate gradients."""
    if skip and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return nullcontext()

"""Training checkpoints: slim weights + a small resumable train state, atomic, keep-last-K.

A checkpoint at iteration ``k`` is two files in the work directory:

* ``iter_{k:06d}.safetensors``: the trained (adapter + head) weights and the model config, written by
  :func:`dgss.models.checkpoint.save_checkpoint` (frozen encoders are never saved; their sources and
  SHA-256 are recorded). Loadable on its own with :func:`dgss.models.checkpoint.load_checkpoint`.
* ``iter_{k:06d}.train_state.pt``: optimiser, scheduler, RNG states (per rank), the criterion's point
  generator (per rank) and the data position. Only tensors and plain Python types, so
  ``torch.load(path, weights_only=True)`` reads it.

Both are written atomically (temporary file, fsync, rename); the train state is written last, so a
checkpoint counts as complete exactly when its train state exists (a crash between the two writes leaves
an orphan weights file, which is ignored and later pruned).

Resume never guesses: if the newest pair is unreadable (empty, truncated, mismatched), ``--resume`` names
the file and why, and lists the readable older pairs; ``--resume latest-valid`` continues from the newest
readable pair, sets the damaged ones aside (``*.unreadable``) and says so in one line.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch

from ..errors import ResumeError
from ..files import atomic_write
from ..models.checkpoint import load_trained_state, read_checkpoint, save_checkpoint

STATE_FORMAT = "dgss-train-state/1"
_STATE_RE = re.compile(r"^iter_(\d+)\.train_state\.pt$")
_WEIGHTS_RE = re.compile(r"^iter_(\d+)\.safetensors$")


@dataclass(frozen=True)
class CheckpointFiles:
    iteration: int
    weights: Path
    state: Path


def checkpoint_files(work_dir: str | Path, iteration: int) -> CheckpointFiles:
    work_dir = Path(work_dir)
    stem = f"iter_{iteration:06d}"
    return CheckpointFiles(iteration, work_dir / f"{stem}.safetensors", work_dir / f"{stem}.train_state.pt")


def list_checkpoints(work_dir: str | Path) -> list[CheckpointFiles]:
    """Complete checkpoints (weights + train state) in ``work_dir``, oldest first."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return []
    out = []
    for p in work_dir.iterdir():
        m = _STATE_RE.match(p.name)
        if m:
            files = checkpoint_files(work_dir, int(m.group(1)))
            if files.weights.is_file():
                out.append(files)
    return sorted(out, key=lambda f: f.iteration)


def latest_checkpoint(work_dir: str | Path) -> CheckpointFiles | None:
    ckpts = list_checkpoints(work_dir)
    return ckpts[-1] if ckpts else None


LATEST_VALID = "latest-valid"
DAMAGED_SUFFIX = ".unreadable"


def checkpoint_problem(files: CheckpointFiles) -> str | None:
    """Why the pair ``files`` cannot be resumed from (None: both files read and belong together):
    a missing or empty file, a truncated or corrupt one, or weights and state of different iterations."""
    from safetensors import safe_open

    for f in (files.weights, files.state):
        if not f.is_file():
            return f"{f.name} is missing"
        if f.stat().st_size == 0:
            return f"{f.name} is empty (0 bytes)"
    try:
        with safe_open(str(files.weights), "pt") as sf:
            meta = sf.metadata() or {}
            for k in sf.keys():
                sf.get_tensor(k)
    except Exception as e:  # safetensors raises several types for damaged files
        return f"{files.weights.name} is unreadable ({_first_line(e)})"
    try:
        state = torch.load(str(files.state), map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, ...
        return f"{files.state.name} is unreadable, truncated or corrupt ({_first_line(e)})"
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        return f"{files.state.name} is not a dgss train state"
    its = {files.iteration, int(state.get("iteration", -1)), int(meta.get("iteration", -1))}
    if len(its) != 1:
        return (
            f"{files.weights.name} (iteration {meta.get('iteration')}) and {files.state.name} (iteration "
            f"{state.get('iteration')}) are a mismatched pair"
        )
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def _usable_older(ckpts: list[CheckpointFiles]) -> list[CheckpointFiles]:
    """The readable pairs among ``ckpts``, newest first."""
    return [f for f in reversed(ckpts) if checkpoint_problem(f) is None]


def resolve_resume(spec: str | Path | bool, work_dir: str | Path) -> CheckpointFiles:
    """Which checkpoint ``--resume`` continues from.

    ``True``/``"auto"``: the newest complete checkpoint of ``work_dir``; if it is unreadable (empty,
    truncated, mismatched pair), :class:`ResumeError` names it and why, and lists the readable older
    ones. ``"latest-valid"``: the newest readable checkpoint; damaged newer ones are renamed aside
    (``*.unreadable``, kept for inspection) and one line on stderr says so. A path: that checkpoint
    (its ``.safetensors``, its ``.train_state.pt`` or a work directory)."""
    import sys

    if spec == LATEST_VALID:
        ckpts = list_checkpoints(work_dir)
        skipped: list[tuple[CheckpointFiles, str]] = []
        for files in reversed(ckpts):
            problem = checkpoint_problem(files)
            if problem is None:
                if skipped and _is_main_process():
                    for f, _ in skipped:
                        _set_aside(f)
                    why = "; ".join(f"{f.state.name}: {p}" for f, p in skipped)
                    print(
                        f"dgss train: resume: skipping {len(skipped)} unreadable checkpoint(s) ({why}; renamed to "
                        f"*{DAMAGED_SUFFIX}); continuing from {files.weights.name} (iteration {files.iteration})",
                        file=sys.stderr,
                        flush=True,
                    )
                return files
            skipped.append((files, problem))
        raise ResumeError(
            f"nothing to resume: no readable checkpoint in {work_dir}"
            + (f" ({'; '.join(p for _, p in skipped)})" if skipped else "")
            + "; start a new run in another --work-dir"
        )
    if spec is True or spec == "auto":
        ckpts = list_checkpoints(work_dir)
        if not ckpts:
            raise ResumeError(
                f"nothing to resume: no complete checkpoint (iter_*.train_state.pt with its .safetensors) in {work_dir}"
            )
        newest = ckpts[-1]
        problem = checkpoint_problem(newest)
        if problem is not None:
            older = _usable_older(ckpts[:-1])
            listed = (
                (
                    f"readable older checkpoints: {', '.join(str(f.weights) for f in older)}; continue from the "
                    f"newest of them with --resume {LATEST_VALID}, or name one with --resume FILE"
                )
                if older
                else "no readable older checkpoint; start a new run in another --work-dir"
            )
            raise ResumeError(f"cannot resume from the newest checkpoint {newest.state}: {problem}; {listed}")
        return newest
    p = Path(cast("str | Path", spec))  # True / "auto" were handled above
    if p.is_dir():
        return resolve_resume(True, p)
    m = _STATE_RE.match(p.name) or _WEIGHTS_RE.match(p.name)
    if not m:
        raise ResumeError(
            f"--resume {p}: expected a work directory, iter_*.safetensors, iter_*.train_state.pt or {LATEST_VALID}"
        )
    files = checkpoint_files(p.parent, int(m.group(1)))
    for path in (files.weights, files.state):
        if not path.is_file():
            raise ResumeError(f"cannot resume from {p}: {path} is missing (incomplete checkpoint)")
    problem = checkpoint_problem(files)
    if problem is not None:
        older = _usable_older([f for f in list_checkpoints(p.parent) if f.iteration < files.iteration])
        raise ResumeError(
            f"cannot resume from {p}: {problem}"
            + (f"; readable older checkpoints: {', '.join(str(f.weights) for f in older)}" if older else "")
        )
    return files


def _set_aside(files: CheckpointFiles) -> None:
    """Rename a damaged pair to ``*.unreadable`` so it is neither resumed from nor pruned nor overwritten."""
    for f in (files.state, files.weights):
        try:
            f.replace(f.with_name(f.name + DAMAGED_SUFFIX))
        except FileNotFoundError:
            pass


def _is_main_process() -> bool:
    """Rank 0 of a torchrun job (or no job): the process that renames files and prints."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


# ---------------------------------------------------------------------------------------------- RNG
def rng_state(generator: torch.Generator | None = None) -> dict:
    """Global torch/CUDA/numpy/python RNG states (+ an optional generator) as weights-only-safe types."""
    # the legacy tuple form (np.random.get_state's default)
    np_state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [int(py_state[0]), [int(x) for x in py_state[1]], py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    if generator is not None:
        state["generator"] = generator.get_state().cpu()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"].to(generator.get_state().device))


# ---------------------------------------------------------------------------------------------- save / load
def save_training_checkpoint(
    work_dir: str | Path,
    model,
    iteration: int,
    train_state: dict,
    *,
    run_config: dict | None = None,
    keep_last: int | None = None,
) -> CheckpointFiles:
    """Write the weights, then the train state (both atomic); prune to the last ``keep_last``."""
    files = checkpoint_files(work_dir, iteration)
    extra = {"run_config": json.dumps(run_config)} if run_config is not None else {}
    record = getattr(getattr(model, "adapter", None), "init_record", None)
    if record is not None:  # SoMA: init mode, SVD dtype/device, frozen-weight SHA-256
        extra["adapter_init"] = json.dumps(record)
    save_checkpoint(model, files.weights, iteration=iteration, extra=extra)
    state = {"format": STATE_FORMAT, "iteration": int(iteration), "weights_file": files.weights.name, **train_state}
    atomic_write(files.state, lambda tmp: torch.save(state, tmp))
    if keep_last is not None:
        prune_checkpoints(work_dir, keep_last)
    return files


def prune_checkpoints(work_dir: str | Path, keep_last: int) -> list[int]:
    """Delete all complete checkpoints but the newest ``keep_last`` (train state first, then weights),
    and orphan weights files older than the newest complete checkpoint. Returns deleted iterations."""
    ckpts = list_checkpoints(work_dir)
    deleted = []
    for f in ckpts[:-keep_last] if keep_last > 0 else ckpts:
        f.state.unlink(missing_ok=True)
        f.weights.unlink(missing_ok=True)
        deleted.append(f.iteration)
    if ckpts:
        newest = ckpts[-1].iteration
        for p in Path(work_dir).iterdir():
            m = _WEIGHTS_RE.match(p.name)
            if m and int(m.group(1)) < newest and not checkpoint_files(work_dir, int(m.group(1))).state.exists():
                p.unlink(missing_ok=True)
    return deleted


def remove_stale_temp_files(work_dir: str | Path) -> None:
    """Temporary files of writes that were killed mid-way (``.<name>.*.tmp``)."""
    work_dir = Path(work_dir)
    if work_dir.is_dir():
        for p in work_dir.glob(".iter_*.tmp"):
            p.unlink(missing_ok=True)


def load_train_state(path: str | Path) -> dict:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # empty (EOFError), truncated (zip central directory), ...
        raise ResumeError(
            f"{path}: unreadable train state ({_first_line(e)}); resume from an older checkpoint "
            f"with --resume {LATEST_VALID}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ResumeError(f"{path}: not a dgss train state (format {STATE_FORMAT!r} expected)")
    return state


def load_training_checkpoint(files: CheckpointFiles, model) -> tuple[dict, dict]:
    """Load the trained weights into ``model`` (same model config required); returns (train state, meta)."""
    tensors, meta = read_checkpoint(files.weights)
    want = json.loads(json.dumps(model.cfg.to_dict()))
    if meta["config"] != want:
        diff = sorted(k for k in set(want) | set(meta["config"]) if want.get(k) != meta["config"].get(k))
        raise ResumeError(f"{files.weights} was trained with another model config (differs in: {', '.join(diff)})")
    load_trained_state(model, tensors, origin=str(files.weights))
    state = load_train_state(files.state)
    if state["iteration"] != meta["iteration"]:
        raise ResumeError(
            f"{files.state} (iteration {state['iteration']}) does not belong to {files.weights} "
            f"(iteration {meta['iteration']})"
        )
    return state, meta

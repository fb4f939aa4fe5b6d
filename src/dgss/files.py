"""Writing files so that a kill never leaves a half-written one: a temporary file beside the target,
then a rename onto it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], object], *, durable: bool = True, suffix: str = ".tmp"
) -> Path:
    """Call ``write(tmp_path)`` for a hidden temporary file beside ``path``, then rename it onto ``path``.

    ``durable`` also fsyncs the file and its folder (checkpoints, models); many small outputs (scenes,
    charts) skip it. ``suffix`` ends the temporary name, for writers that infer the format from it. On
    any failure the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

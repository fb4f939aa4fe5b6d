"""Helpers of the subprocess tests: run `dgss train` the way users do, with a fixed thread count."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "src" / "dgss" / "configs" / "tiny" / "rein_synthetic.yaml"


def env() -> dict:
    e = dict(os.environ)
    # one intra-op thread in every process: identical kernels (and reduction orders) in all runs compared,
    # and no oversubscription of the 2 shared cores
    e.update(
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1"
    )
    return e


def train_cmd(work_dir: Path, *overrides: str, config: Path = TINY, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "dgss", "train", str(config), *overrides, "--work-dir", str(work_dir), "--no-progress"]
    return cmd + (["--resume"] if resume else [])


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

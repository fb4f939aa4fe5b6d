"""The wheel a user installs holds what the docs promise: the packaged run configs, the vocabularies, the
``py.typed`` marker and the ``dgss`` command.

The wheel is built from this checkout and installed, without dependencies, into a fresh virtual environment
outside the repository; that environment borrows the already installed dependencies (torch, timm, ...)
through a ``.pth`` line, so nothing is downloaded and no file of the source tree is on its path. There,
``dgss configs list``, ``dgss configs show`` and ``dgss params`` must work.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("dgss-*.whl")
    return whl


def test_the_wheel_holds_configs_vocabularies_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {n for n in names if n.startswith("dgss/configs/") and n.endswith(".yaml")}
    shipped = {
        f"dgss/configs/{p.relative_to(ROOT / 'src/dgss/configs').as_posix()}"
        for p in (ROOT / "src/dgss/configs").rglob("*.yaml")
    }
    assert shipped and configs == shipped
    assert "dgss/py.typed" in names
    assert any(n.startswith("dgss/assets/vocabularies/") for n in names)
    assert not any(n.startswith(("tests/", "configs/")) for n in names)


def test_the_installed_wheel_lists_shows_and_counts_outside_the_repository(wheel, tmp_path):
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # the dependencies already installed here, appended after the fresh site-packages (never the source tree)
    deps = Path(sysconfig.get_paths()["purelib"])
    (site / "borrowed_dependencies.pth").write_text(f"{deps}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["HF_HUB_OFFLINE"] = "1"

    def dgss(*args: str) -> str:
        out = subprocess.run([str(py), "-m", "dgss", *args], cwd=work, env=env, capture_output=True, text=True)
        assert out.returncode == 0, (args, out.stderr[-3000:])
        return out.stdout

    where = subprocess.check_output([str(py), "-c", "import dgss; print(dgss.__file__)"], cwd=work, env=env, text=True)
    assert Path(where.strip()).is_relative_to(site), where  # the wheel's copy, not the checkout
    listing = dgss("configs", "list", "rein")
    assert "rein/gta2citys_rein_dinov2-l" in listing and "depthforge/" not in listing
    shown = dgss("configs", "show", "gta2citys_rein_dinov2-l")
    assert shown == (ROOT / "src/dgss/configs/rein/gta2citys_rein_dinov2-l.yaml").read_text()
    assert "2,990,081" in dgss("params", "rein-dinov2-l")

"""Shared checks of the command line: range-checked argparse types, writable outputs, owned folders.

Range-checked types reject a bad value while the arguments are parsed (before any model is built),
with the allowed range in the message. Output checks run before long work starts, so a run never
computes for hours and then fails to save. Folders dgss writes into carry an ownership marker
(:data:`OWNER_MARKER`); dgss only ever removes files from folders that hold it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .errors import OutputPathError

OWNER_MARKER = ".dgss-owned"


# ---------------------------------------------------------------------------------------------- argparse types
def int_in(lo: int | None = None, hi: int | None = None):
    """An argparse ``type`` accepting integers in ``[lo, hi]`` (either bound may be open)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is out of range: {_range_text(lo, hi)}")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False):
    """An argparse ``type`` accepting finite floats in ``[lo, hi]`` (``open_lo``: ``lo`` itself excluded)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if (lo is not None and (value < lo or (open_lo and value == lo))) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value:g} is out of range: {_range_text(lo, hi, open_lo=open_lo)}")
        return value

    parse.__name__ = "number"
    return parse


def nonempty_text(text: str) -> str:
    """An argparse ``type`` refusing empty or blank strings (e.g. ``--classes ""``)."""
    if not text.strip() or not text.strip(" ,;"):
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _range_text(lo, hi, open_lo: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"allowed {lo}..{hi}"
    if lo is not None:
        return f"must be {'>' if open_lo else '>='} {lo}"
    return f"must be <= {hi}"


positive_int = int_in(1)
nonnegative_int = int_in(0)


# ---------------------------------------------------------------------------------------------- outputs
def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Make sure ``path`` is (or can become) a writable folder; raise :class:`OutputPathError` if not.
    Creates nothing; ``flag`` names the option in the message (e.g. ``--out``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file, not a folder; choose another {flag}")
    anchor = _existing_ancestor(path)
    if anchor != path and not anchor.is_dir():
        raise OutputPathError(
            f"{flag} {path}: {anchor} is a file, so no folder can be made under it; choose another {flag}"
        )
    if not _can_create_in(anchor):
        raise OutputPathError(
            f"{flag} {path}: {anchor} is not writable (permission denied or a read-only file "
            f"system); choose another {flag}"
        )
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried for real: ``os.access`` says yes to root even on
    read-only places). The probe is an anonymous temporary file: it leaves nothing behind."""
    import tempfile

    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Make sure the file ``path`` can be written (its folder exists or can be made, it is not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a folder; give a file name")
    check_output_dir(path.parent if str(path.parent) else Path("."), flag)
    return path


def claim_output_dir(path: str | os.PathLike, flag: str, *, what: str = "dgss") -> Path:
    """Create or reuse the folder ``path`` for dgss's own output: a missing or empty folder is marked as
    dgss's (:data:`OWNER_MARKER`); a non-empty folder without the marker is refused (it holds someone
    else's files, which dgss must never delete or overwrite)."""
    path = check_output_dir(path, flag)
    if path.is_dir() and not (path / OWNER_MARKER).is_file() and any(path.iterdir()):
        raise OutputPathError(
            f"{flag} {path}: the folder is not empty and was not written by {what}; "
            f"choose a new or empty folder for {flag}"
        )
    path.mkdir(parents=True, exist_ok=True)
    marker = path / OWNER_MARKER
    if not marker.is_file():
        marker.write_text(f"written by {what}: dgss may replace what it wrote here\n")
    return path


def owned_by_dgss(path: str | os.PathLike) -> bool:
    """Whether the folder ``path`` carries dgss's ownership marker."""
    return (Path(path) / OWNER_MARKER).is_file()


# ---------------------------------------------------------------------------------------------- owned output folders
STAGING_PREFIX = ".dgss-partial-"


def open_output_folder(path: str | os.PathLike, flag: str, *, own_patterns: tuple[str, ...] = ()) -> Path:
    """Check the folder ``path`` for files dgss names itself (e.g. ``<image>_label.png``); creates nothing
    (:class:`StagedWrites` creates and marks it at the first write).

    A folder dgss did not mark may hold other files (they are never touched), but not files matching
    ``own_patterns`` (dgss would overwrite them): that is refused. Removes staging folders left in a
    dgss folder by a killed earlier run (they are dgss's, by name and marker)."""
    import fnmatch
    import shutil

    path = check_output_dir(path, flag)
    if path.is_dir() and not owned_by_dgss(path):
        clash = sorted(p.name for p in path.iterdir() if any(fnmatch.fnmatch(p.name, pat) for pat in own_patterns))
        if clash:
            raise OutputPathError(
                f"{flag} {path}: holds files dgss did not write but would overwrite "
                f"({', '.join(clash[:3])}{', ...' if len(clash) > 3 else ''}); choose a new or "
                f"empty folder for {flag}"
            )
    if path.is_dir() and owned_by_dgss(path):
        for stale in path.glob(f"{STAGING_PREFIX}*"):
            if stale.is_dir() and owned_by_dgss(stale):
                shutil.rmtree(stale)
    return path


class StagedWrites:
    """Write a group of files into a hidden staging folder, then rename each into ``folder``: a kill
    never leaves a half-written file under its final name (``with StagedWrites(out) as tmp: ...``)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __enter__(self) -> Path:
        import tempfile

        self.folder.mkdir(parents=True, exist_ok=True)
        if not owned_by_dgss(self.folder):
            (self.folder / OWNER_MARKER).write_text(
                "written by dgss: dgss may replace the files it names itself here\n"
            )
        self.tmp = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder))
        (self.tmp / OWNER_MARKER).write_text("staging folder of dgss\n")
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        import shutil

        try:
            if exc_type is None:
                for f in sorted(self.tmp.rglob("*")):
                    if f.is_file() and f.name != OWNER_MARKER:
                        dst = self.folder / f.relative_to(self.tmp)
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(f, dst)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

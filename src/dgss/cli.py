"""`dgss` command line: params, train, eval, predict, convert, export, data, demo, app (docs/guide.md; the
reference docs/cli.md is generated from :func:`build_parser`).

The error contract of every verb: an expected failure (a :class:`~dgss.errors.DgssError`, an unusable
path, a bad option value) prints ``dgss <verb>: error: <what, where, what to do>`` on stderr and exits
with status 2, without a traceback (``--debug`` or ``DGSS_DEBUG=1`` shows it). Any other exception is
a bug: its traceback is printed, then one line saying so, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback

from .errors import DgssError

# OS errors a user causes with a path: reported as one line like DgssError
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)
# ... and the environment's: a read-only file system, a full disk or quota, a name too long
PATH_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP, errno.EACCES, errno.EPERM}


def is_expected(e: BaseException) -> bool:
    """An error the user can fix (one line, exit 2), as opposed to a bug in dgss (traceback)."""
    return isinstance(e, (DgssError, *PATH_ERRORS)) or (isinstance(e, OSError) and e.errno in PATH_ERRNOS)


class DgssArgumentParser(argparse.ArgumentParser):
    """argparse with dgss's one-line errors: ``dgss <verb>: error: argument --x: ... (see --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = DgssArgumentParser(prog="dgss", description="Domain-generalized semantic segmentation on frozen VFMs.")
    sub = p.add_subparsers(dest="command", required=True)
    for register in _registrars():
        register(sub)
    _add_debug_flag(p)
    return p


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on every verb (and sub-verb) that does not have it yet."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if not any("--debug" in a.option_strings for a in child._actions):
                    child.add_argument(
                        "--debug", action="store_true", help="show the traceback of errors (also: DGSS_DEBUG=1)"
                    )
                _add_debug_flag(child)


SUBCOMMAND_MODULES = (
    "dgss.commands.params",
    "dgss.commands.configs",
    "dgss.commands.train",
    "dgss.commands.eval",
    "dgss.commands.predict",
    "dgss.commands.convert",
    "dgss.commands.export",
    "dgss.commands.data",
    "dgss.commands.demo",
    "dgss.commands.app",
    "dgss.commands.hub",
)


def _registrars():
    """Sub-command groups that live next to their concern: each module has ``register(subparsers)``."""
    import importlib

    regs = []
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # a missing dependency inside the module is a real error
                raise
            continue
        regs.append(module.register)
    return regs


def verb_of(args: argparse.Namespace) -> str:
    """``train``, ``data prepare``, ...: how messages name the command that failed."""
    sub = getattr(args, "data_command", None)
    return f"{args.command} {sub}" if sub else str(args.command)


def error_text(e: BaseException) -> str:
    """The one-line message of an expected error."""
    if isinstance(e, OSError) and not isinstance(e, DgssError) and e.strerror:
        where = f": {e.filename}" if e.filename else ""
        where += f" -> {e.filename2}" if e.filename2 else ""
        hint = {
            PermissionError: "; choose a location you can write to (or read)",
            NotADirectoryError: "; a path component is a regular file, not a folder",
            FileExistsError: "; choose another path",
        }.get(type(e), "")
        if e.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            hint = "; choose another location (or free some space)"
        return f"{e.strerror.lower()}{where}{hint}"
    return str(e).strip() or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("DGSS_DEBUG", "") not in ("", "0")
    verb = verb_of(args)
    try:
        func = getattr(args, "func", None) or args.handler
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"dgss {verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if is_expected(e):
            if debug:
                traceback.print_exc()
            print(f"dgss {verb}: error: {error_text(e)}", file=sys.stderr)
            return 2
        traceback.print_exc()  # a bug in dgss: keep the traceback, say so
        print(
            f"dgss {verb}: internal error ({type(e).__name__}): this is a bug in dgss, not in your "
            "input; please report it to the dgss issue tracker with the traceback above",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

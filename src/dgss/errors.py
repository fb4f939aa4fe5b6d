"""The base of dgss's expected, user-facing errors.

Every error a user can cause (a bad path, a corrupt file, an invalid option value, a data problem, a
checkpoint/config mismatch) is raised as a subclass of :class:`DgssError`. The command line prints
such errors as one line, ``dgss <verb>: error: <message>``, and exits with status 2; any other
exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class DgssError(Exception):
    """An expected error whose message tells the user what is wrong, where, and what to do."""

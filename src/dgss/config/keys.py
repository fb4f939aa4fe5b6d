"""The two messages every config check builds: a bad value of a key, and an unknown key."""

from __future__ import annotations

import difflib

from ..errors import ConfigError


def key_error(key: str, msg: str) -> ConfigError:
    """``config key '<key>': <msg>``."""
    return ConfigError(f"config key '{key}': {msg}")


def unknown_key(key: str, path: str, known: list[str]) -> ConfigError:
    """An unknown ``key`` under ``path``, with the closest known key when there is one."""
    full = f"{path}.{key}" if path else key
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{(path + '.') if path else ''}{close[0]}'?)" if close else ""
    where = f"'{path}'" if path else "the top level"
    return ConfigError(f"unknown config key '{full}'{hint}; known keys in {where}: {', '.join(known)}")

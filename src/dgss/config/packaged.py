"""The run configs that ship inside the package (``dgss/configs/<group>/<name>.yaml``), by name.

A packaged config is named by its file stem (``gta2citys_rein_dinov2-l``) or by ``<group>/<stem>``
(``rein/gta2citys_rein_dinov2-l``); ``dgss configs list`` prints them and ``dgss train NAME`` accepts them.
"""

from __future__ import annotations

import difflib
import fnmatch
from importlib import resources
from pathlib import Path

from ..errors import ConfigError


def packaged_configs() -> dict[str, Path]:
    """``<group>/<stem>`` -> file, for every YAML config in the package, sorted by name."""
    root = Path(str(resources.files("dgss") / "configs"))
    return {f"{p.parent.name}/{p.stem}": p for p in sorted(root.glob("*/*.yaml"))}


def find_configs(pattern: str | None = None) -> dict[str, Path]:
    """The packaged configs whose ``<group>/<stem>`` name matches a shell-style ``pattern`` (or contains it)."""
    configs = packaged_configs()
    if not pattern:
        return configs
    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    return {name: path for name, path in configs.items() if fnmatch.fnmatch(name, glob)}


def packaged_config(name: str) -> Path:
    """The file of a packaged config by ``<group>/<stem>`` or unique ``<stem>``; an unknown or ambiguous
    name fails with the close matches."""
    configs = packaged_configs()
    key = name.removesuffix(".yaml")
    if key in configs:
        return configs[key]
    by_stem = [n for n in configs if n.split("/", 1)[1] == key]
    if len(by_stem) == 1:
        return configs[by_stem[0]]
    if len(by_stem) > 1:
        raise ConfigError(f"config name {name!r} is in several groups: {', '.join(by_stem)}; give <group>/<name>")
    close = difflib.get_close_matches(key, list(configs) + [n.split("/", 1)[1] for n in configs], n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ConfigError(
        f"config file not found: {name}, and it is not the name of a packaged config{hint}; "
        "`dgss configs list` shows those"
    )


def config_path(spec: str | Path) -> Path:
    """``spec`` as a file when it is one; a bare name (no folder, no .yaml) is looked up in the packaged
    configs. A path that does not exist fails with ``config file not found``."""
    path = Path(spec)
    if path.is_file():
        return path
    if len(path.parts) == 1 and path.suffix not in (".yaml", ".yml") or str(spec) in packaged_configs():
        return packaged_config(str(spec))
    raise ConfigError(f"config file not found: {path}")

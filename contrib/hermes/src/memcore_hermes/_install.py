"""The plugin shim that hermes-agent 0.19.0 finds in ``$HERMES_HOME/plugins/<name>/`` (it has no entry points)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ._provider import PROVIDER_NAME

MARKER = "# written by `memcore-hermes install`; `memcore-hermes install --uninstall` removes it"

SHIM = f'''"""memcore as a hermes-agent memory provider (MemoryProvider shim for hermes-agent's plugin scan)."""

{MARKER}


def register(ctx):
    from memcore_hermes import MemcoreMemoryProvider

    ctx.register_memory_provider(MemcoreMemoryProvider())
'''

PLUGIN_YAML = f"""name: {PROVIDER_NAME}
version: 0.1.0
description: "memcore: any memcore backend (embedded SQLite by default) with memcore's lifecycle guarantees."
"""


class InstallError(Exception):
    """The shim cannot be written or removed without touching something that is not ours."""


def hermes_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit``, else hermes-agent's own resolution (``HERMES_HOME``, profiles), else ``~/.hermes``."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("HERMES_HOME", "").strip()
    if env:
        return Path(env).expanduser()
    try:
        from hermes_constants import get_hermes_home

        return Path(get_hermes_home())
    except Exception:
        return Path.home() / ".hermes"


def plugin_dir(home: Path, name: str = PROVIDER_NAME) -> Path:
    return home / "plugins" / name


def is_ours(directory: Path) -> bool:
    init = directory / "__init__.py"
    try:
        return MARKER in init.read_text(encoding="utf-8")
    except OSError:
        return False


def install(home: Path, name: str = PROVIDER_NAME, *, force: bool = False) -> tuple[Path, bool]:
    """Write the shim; returns (directory, changed). Idempotent; refuses to overwrite a plugin that is not ours
    unless ``force``."""
    target = plugin_dir(home, name)
    files = {"__init__.py": SHIM, "plugin.yaml": PLUGIN_YAML}
    if target.exists() and not is_ours(target) and any(target.iterdir()) and not force:
        raise InstallError(f"{target} holds another plugin; use --force to replace it")
    if target.is_dir() and all(
        (target / f).is_file() and (target / f).read_text(encoding="utf-8") == text for f, text in files.items()
    ):
        return target, False
    target.mkdir(parents=True, exist_ok=True)
    for filename, text in files.items():
        tmp = target / f".{filename}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target / filename)
    return target, True


def uninstall(home: Path, name: str = PROVIDER_NAME) -> tuple[Path, bool]:
    """Remove the shim if it is ours; returns (directory, changed)."""
    target = plugin_dir(home, name)
    if not target.exists():
        return target, False
    if not is_ours(target):
        raise InstallError(f"{target} was not written by memcore-hermes; leaving it alone")
    shutil.rmtree(target)
    return target, True

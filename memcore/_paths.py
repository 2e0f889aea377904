"""Where memcore keeps its files: ``MEMCORE_HOME``, else the per-user data directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HOME_ENV = "MEMCORE_HOME"


def memcore_home() -> Path:
    """The directory for memcore's databases (not created here)."""
    override = os.environ.get(HOME_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "memcore"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "memcore"
    base = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(base) / "memcore"

"""Every test gets its own MEMCORE_HOME and HERMES_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    memcore_home = tmp_path / "memcore-home"
    hermes_home = tmp_path / "hermes-home"
    memcore_home.mkdir()
    hermes_home.mkdir()
    monkeypatch.setenv("MEMCORE_HOME", str(memcore_home))
    monkeypatch.setenv("HERMES_HOME", str(hermes_home))
    yield {"memcore": memcore_home, "hermes": hermes_home}

"""The embedded SQLite backend passes memcore's shared conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import memcore
from memcore.testing import BackendSuite


class TestSQLite(BackendSuite):
    # No down_backend: an embedded store has no service to be down. Its constructor makes the directory and opens
    # the database, so a path that cannot be opened is refused at once (memcore.Memory skips the backend, with the
    # reason in Memory.skipped), not met later by the hooks.
    scoped_recall = False  # recall in a session searches every session
    index_deadline = 5.0  # it indexes at commit, synchronously: anything slower is a bug

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[memcore.SQLiteBackend]:
        yield memcore.SQLiteBackend(path=tmp_path / "memory.sqlite3")

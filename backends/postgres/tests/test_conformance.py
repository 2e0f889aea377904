"""The shared conformance suite against a real PostgreSQL server, an empty schema per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from memcore.testing import BackendSuite

from memcore_postgres import PostgresBackend


class TestPostgres(BackendSuite):
    scoped_recall = False  # recall in a session searches every session of the user (long-term memory)
    index_deadline = 5.0  # turns are indexed as they are written and recallable once committed: nothing is deferred

    @pytest.fixture
    def backend(self, make_backend: Callable[..., PostgresBackend]) -> Iterator[PostgresBackend]:
        yield make_backend()

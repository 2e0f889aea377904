"""The shared conformance suite against a real PostgreSQL server, an empty schema per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from memcore.testing import BackendSuite, closed_port
from psycopg.conninfo import make_conninfo

from memcore_postgres import PostgresBackend


class TestPostgres(BackendSuite):
    scoped_recall = False  # recall in a session searches every session of the user (long-term memory)
    index_deadline = 5.0  # turns are indexed as they are written and recallable once committed: nothing is deferred

    @pytest.fixture
    def backend(self, make_backend: Callable[..., PostgresBackend]) -> Iterator[PostgresBackend]:
        yield make_backend()

    @pytest.fixture
    def down_backend(self, make_backend: Callable[..., PostgresBackend], dsn: str) -> Iterator[PostgresBackend]:
        with closed_port() as port:  # the same backend, its server down: nothing listens there
            yield make_backend(dsn=make_conninfo(dsn, host="127.0.0.1", port=str(port)))

"""Test support: a real PostgreSQL server on a free loopback port, once per test run, and a database in it; every
test gets a schema of its own (dropped after it), so each starts from an empty store.

With ``MEMCORE_REQUIRE_POSTGRES=1`` (the tox env sets it) a server that is not installed or does not start fails the
run; otherwise the tests that need it are skipped with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgserver

from memcore_postgres import PostgresBackend

REQUIRED = os.environ.get("MEMCORE_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def postgres() -> Iterator[pgserver.Server]:
    try:
        server = pgserver.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if REQUIRED:
            pytest.fail(f"MEMCORE_REQUIRE_POSTGRES=1 but the PostgreSQL server did not start: {exc}", pytrace=False)
        pytest.skip(f"the PostgreSQL server did not start: {exc}")
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def dsn(postgres: pgserver.Server) -> str:
    """A connection string to a database made for this test run."""
    return postgres.dsn(pgserver.create_database(postgres))


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A schema name no other test uses; dropped (with everything in it) when the test is over."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def make_backend(dsn: str, schema: str) -> Iterator[Callable[..., PostgresBackend]]:
    """Backends on this test's schema (closed at the end, if the test did not close them)."""
    made: list[PostgresBackend] = []

    def make(**settings: Any) -> PostgresBackend:
        settings.setdefault("dsn", dsn)
        settings.setdefault("schema", schema)
        backend = PostgresBackend(**settings)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.memcore_close()


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own, beside the backend's."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        yield conn

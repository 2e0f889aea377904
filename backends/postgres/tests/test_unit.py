"""Settings, the journal key, the error mapping and registration: nothing here needs a server."""

from __future__ import annotations

from importlib.metadata import entry_points

import memcore
import psycopg
import pytest
from psycopg import errors

from memcore_postgres import PostgresBackend, is_transient


def test_dsn_or_url_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMCORE_POSTGRES_DSN", raising=False)
    with pytest.raises(ValueError, match="no database"):
        PostgresBackend()
    with pytest.raises(ValueError, match="not both"):
        PostgresBackend(dsn="dbname=a", url="postgresql:///b")
    monkeypatch.setenv("MEMCORE_POSTGRES_DSN", "host=db.example dbname=mem")
    assert PostgresBackend().journal_key == "postgres:db.example:5432/mem#memcore"


@pytest.mark.parametrize(
    "settings",
    [
        {"dsn": "host=h", "schema": ""},
        {"dsn": "host=h", "schema": "x" * 64},
        {"dsn": "host=h", "connect_timeout": 0},
        {"dsn": "host=h", "statement_timeout": -1},
        {"dsn": "host=h", "text_search_config": ""},
        {"dsn": "not a = valid = dsn"},
    ],
)
def test_bad_settings_are_refused_at_construction(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PostgresBackend(**settings)  # type: ignore[arg-type]


def test_the_journal_key_names_the_database_and_schema_without_the_password() -> None:
    url = PostgresBackend(url="postgresql://alice:s3cret@db.example:6543/memories", schema="agents")
    dsn = PostgresBackend(dsn="host=db.example port=6543 dbname=memories user=bob password=s3cret", schema="agents")
    assert url.journal_key == dsn.journal_key == "postgres:db.example:6543/memories#agents"
    for backend in (url, dsn):
        assert "s3cret" not in backend.journal_key and "s3cret" not in repr(backend)
    assert PostgresBackend(dsn="host=a dbname=m").journal_key != PostgresBackend(dsn="host=b dbname=m").journal_key
    other_schema = PostgresBackend(dsn="host=a dbname=m", schema="x")
    assert other_schema.journal_key != PostgresBackend(dsn="host=a dbname=m").journal_key


def test_timeouts_and_keepalives_go_into_the_connection_string_unless_it_sets_them() -> None:
    backend = PostgresBackend(dsn="host=h dbname=d", connect_timeout=0.5)
    params = psycopg.conninfo.conninfo_to_dict(backend._conninfo)
    assert params["connect_timeout"] == "2" and params["keepalives_idle"] == "10"  # libpq's least is 2 s
    own = PostgresBackend(dsn="host=h dbname=d connect_timeout=7 keepalives_idle=60", connect_timeout=3)
    params = psycopg.conninfo.conninfo_to_dict(own._conninfo)
    assert params["connect_timeout"] == "7" and params["keepalives_idle"] == "60"


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (psycopg.OperationalError("connection failed: connection refused"), True),  # no SQLSTATE: the link
        (psycopg.InterfaceError("the connection is closed"), True),
        (errors.QueryCanceled(), True),  # statement_timeout
        (errors.AdminShutdown(), True),
        (errors.CannotConnectNow(), True),  # starting up
        (errors.SerializationFailure(), True),
        (errors.DeadlockDetected(), True),
        (errors.LockNotAvailable(), True),
        (errors.TooManyConnections(), True),
        (errors.lookup("08006")(), True),  # connection_failure
        (errors.UniqueViolation(), False),
        (errors.CheckViolation(), False),
        (errors.StringDataRightTruncation(), False),
        (errors.CharacterNotInRepertoire(), False),
        (errors.ProgramLimitExceeded(), False),  # "string is too long for tsvector": an OperationalError, yet final
        (errors.UndefinedObject(), False),  # an unknown text search configuration
        (errors.InsufficientPrivilege(), False),
        (errors.SyntaxError(), False),
        (ValueError("not a database error"), False),
    ],
)
def test_which_errors_are_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_the_entry_point_loads_it_and_it_keeps_users_apart() -> None:
    (point,) = [p for p in entry_points(group="memcore.backends") if p.name == "postgres"]
    assert point.load() is PostgresBackend
    assert PostgresBackend.separates_users is True
    backend = PostgresBackend(dsn="host=127.0.0.1 dbname=never_connected")
    # registering it checks every hook's signature against memcore's specification
    memory = memcore.Memory(backends=[backend], journal=False, plugins=[], strict=True)
    try:
        assert memory.capabilities["postgres"] == {
            "open_session", "write", "remember", "commit", "recall", "history", "forget", "close",
        }  # fmt: skip
    finally:
        memory.close(timeout=5)

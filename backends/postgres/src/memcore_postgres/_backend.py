"""The PostgreSQL store: messages, notes and commits per user and session, full-text recall. See ``README.md``.

No threads, no locks, no session state: each worker thread memcore runs this backend's hooks on holds one connection
of its own, opened when it first needs one and opened again after it broke (a connection carries transaction state,
so two threads must not share one). Connection errors and timeouts become :class:`memcore.TransientError`, which
memcore retries; constraint and data errors are final.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import memcore
import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Json

__all__ = ["SCHEMA_VERSION", "PostgresBackend", "is_transient"]

SCHEMA_VERSION = 1
#: How much of each message or note is indexed for recall (characters from its start). All of it is stored; this
#: keeps every tsvector well under PostgreSQL's 1 MB limit, whatever the text.
INDEXED_CHARS = 200_000
#: Where no user is named (memcore's default user, ``user_id=None``). memcore refuses empty and blank user ids, so
#: this never stands for a real one.
DEFAULT_USER = ""
#: The environment variable read when neither ``dsn`` nor ``url`` is given.
DSN_ENV = "MEMCORE_POSTGRES_DSN"

#: SQLSTATEs worth retrying: connection exceptions (08), transaction rollbacks (40: serialization failures,
#: deadlocks), insufficient resources (53: too many connections, out of memory or disk), and operator intervention
#: (57: a statement timeout or a cancel, a server shutting down or starting up).
_TRANSIENT_CLASSES = ("08", "40", "53", "57")
#: And these: lock_not_available (a lock_timeout), object_in_use.
_TRANSIENT_STATES = frozenset({"55P03", "55006"})
#: libpq's TCP settings when the connection string does not choose its own: a server that stops answering (a host
#: that is gone, a cable pulled) is noticed in about 30 s instead of the kernel's two hours.
_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3"}

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.sessions (
    user_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    parent_id text COLLATE "C",
    opened_at timestamptz NOT NULL DEFAULT now(),
    committed_at timestamptz,
    commits integer NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, session_id)
);
CREATE TABLE IF NOT EXISTS {schema}.messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    op_key text COLLATE "C" NOT NULL,
    position integer NOT NULL,
    role text NOT NULL,
    content text NOT NULL,
    extra json,
    committed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    tsv tsvector NOT NULL,
    UNIQUE (user_id, session_id, op_key, position)
);
CREATE INDEX IF NOT EXISTS messages_by_session ON {schema}.messages (user_id, session_id, id);
CREATE INDEX IF NOT EXISTS messages_tsv ON {schema}.messages USING gin (tsv);
CREATE TABLE IF NOT EXISTS {schema}.notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    op_key text COLLATE "C" NOT NULL,
    text text NOT NULL,
    kind text NOT NULL,
    metadata json,
    extra json,
    created_at timestamptz NOT NULL DEFAULT now(),
    tsv tsvector NOT NULL,
    UNIQUE (user_id, session_id, op_key)
);
CREATE INDEX IF NOT EXISTS notes_tsv ON {schema}.notes USING gin (tsv);
CREATE TABLE IF NOT EXISTS {schema}.commits (
    user_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    op_key text COLLATE "C" NOT NULL,
    messages integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, session_id, op_key)
);
INSERT INTO {schema}.meta (key, value) VALUES ('schema_version', {version}) ON CONFLICT (key) DO NOTHING;
"""

#: The OR of every lexeme PostgreSQL's parser finds in the query (cast, not parsed again, so each stays as it is).
_QUERY = r"""(SELECT string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''', ' | ')::tsquery
    FROM unnest(to_tsvector(%(config)s::regconfig, %(query)s)))"""

_RECALL = """
WITH q AS (SELECT {query} AS query),
hits AS (
    SELECT m.content AS text, m.extra, 'message' AS origin, m.id AS ref, m.session_id,
           m.role AS kind, ts_rank(m.tsv, q.query) AS rank, m.created_at
    FROM {schema}.messages m, q
    WHERE q.query IS NOT NULL AND m.user_id = %(user)s AND m.committed AND m.tsv @@ q.query
    UNION ALL
    SELECT n.text, n.extra, 'note', n.id, n.session_id, n.kind, ts_rank(n.tsv, q.query), n.created_at
    FROM {schema}.notes n, q
    WHERE q.query IS NOT NULL AND n.user_id = %(user)s AND n.tsv @@ q.query
),
best AS (
    SELECT DISTINCT ON (md5(text)) *
    FROM hits ORDER BY md5(text), rank DESC, created_at DESC, ref DESC
)
SELECT text, extra, origin, ref, session_id, kind, rank FROM best
ORDER BY rank DESC, created_at DESC, ref DESC
LIMIT %(limit)s
"""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (a psycopg error) is worth retrying: a connection that failed or broke (no SQLSTATE), a
    timeout, a cancel or a shutdown, a deadlock or serialization failure, a lock wait, a lack of resources. Constraint,
    data and syntax errors are final."""
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    return state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES


class PostgresBackend:
    """memcore backend storing turns, notes and commits in PostgreSQL, per user and session, with full-text recall.

    Settings (keyword arguments): ``dsn`` or ``url`` (a libpq connection string or ``postgresql://`` URL; else
    ``$MEMCORE_POSTGRES_DSN``), ``schema`` (default ``memcore``; created with its tables on first use),
    ``text_search_config`` (default ``simple``: no stemming, no stop words; ``english``, ``french``... for a language),
    ``connect_timeout`` and ``statement_timeout`` (seconds; 10 and 30).
    """

    name = "postgres"
    #: Every row carries its user; recall and forget never cross users.
    separates_users = True

    def __init__(
        self,
        dsn: str | None = None,
        url: str | None = None,
        schema: str = "memcore",
        text_search_config: str = "simple",
        connect_timeout: float = 10.0,
        statement_timeout: float = 30.0,
    ) -> None:
        if dsn is not None and url is not None and dsn != url:
            raise ValueError("give dsn or url, not both")
        given = dsn if dsn is not None else url if url is not None else os.environ.get(DSN_ENV)
        if given is None or not given.strip():
            raise ValueError(f"no database: give dsn= (or url=) or set {DSN_ENV}")
        try:
            params = conninfo_to_dict(given)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"invalid dsn: {exc}") from None
        if not isinstance(schema, str) or not schema.strip() or "\x00" in schema or len(schema.encode()) > 63:
            raise ValueError(f"schema must be a non-empty name of at most 63 bytes, not {schema!r}")
        if not text_search_config or not isinstance(text_search_config, str):
            raise ValueError(f"text_search_config must name a text search configuration, not {text_search_config!r}")
        if not connect_timeout > 0 or not statement_timeout > 0:
            raise ValueError("connect_timeout and statement_timeout must be positive (seconds)")
        self.schema = schema
        self.text_search_config = text_search_config
        self.connect_timeout = float(connect_timeout)
        self.statement_timeout = float(statement_timeout)
        # libpq counts connect_timeout in whole seconds (and takes less than 2 as 2).
        extra = {"connect_timeout": str(max(2, math.ceil(self.connect_timeout))), **_KEEPALIVES}
        self._conninfo = make_conninfo(given, **{k: v for k, v in extra.items() if k not in params})
        self._params = {k: v for k, v in params.items() if k != "password"}
        self._local = threading.local()
        self._connections: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        self._ready = False  # the schema was found or made (by any connection of this instance)
        s = sql.Identifier(schema)
        self._ddl = sql.SQL(_SCHEMA).format(schema=s, version=sql.Literal(str(SCHEMA_VERSION)))
        self._sql = {name: sql.SQL(text).format(schema=s, query=sql.SQL(_QUERY)) for name, text in _STATEMENTS.items()}

    def __repr__(self) -> str:
        return f"PostgresBackend({self._where()!r}, schema={self.schema!r})"

    @property
    def journal_key(self) -> str:
        """The journal files this store's operations under the database it names (host, port, database) and the
        schema: never the password."""
        return f"{self.name}:{self._where()}#{self.schema}"

    def _where(self) -> str:
        def given(key: str, env: str, default: str) -> str:
            return str(self._params.get(key) or os.environ.get(env) or default)

        user = given("user", "PGUSER", "")
        host = given("host", "PGHOST", "") or given("hostaddr", "PGHOSTADDR", "localhost")
        return f"{host}:{given('port', 'PGPORT', '5432')}/{given('dbname', 'PGDATABASE', user)}"

    @property
    def open_connections(self) -> int:
        """How many connections this backend holds open (one per thread that used it)."""
        return sum(1 for held in list(self._connections) if not held.db.closed)

    # -- connections -------------------------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        db = psycopg.connect(self._conninfo, autocommit=True)
        try:
            db.execute(
                sql.SQL("SET statement_timeout = {}").format(sql.Literal(f"{round(self.statement_timeout * 1000)}ms"))
            )
            if not self._ready:
                self._ensure_schema(db)
                self._ready = True
        except BaseException:
            db.close()
            raise
        return db

    def _ensure_schema(self, db: psycopg.Connection[Any]) -> None:
        meta = f"{sql.Identifier(self.schema).as_string(db)}.meta"
        if db.execute("SELECT to_regclass(%s)", (meta,)).fetchone() == (None,):
            with db.transaction():  # one creator at a time: CREATE ... IF NOT EXISTS races with itself
                db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"memcore-postgres:{self.schema}",))
                db.execute(self._ddl)
        row = db.execute(
            sql.SQL("SELECT value FROM {}.meta WHERE key = 'schema_version'").format(sql.Identifier(self.schema))
        ).fetchone()
        version = int(row[0]) if row else 0
        if version != SCHEMA_VERSION:
            raise RuntimeError(
                f"schema {self.schema!r} has memcore-postgres schema version {version}; this one knows {SCHEMA_VERSION}"
            )

    def _db(self) -> psycopg.Connection[Any]:
        held: _ThreadConnection | None = getattr(self._local, "held", None)
        if held is not None and not held.usable():
            self._local.held = None
            held.close()
            held = None
        if held is None:
            held = _ThreadConnection(self._connect())
            self._local.held = held
            self._connections.add(held)
        return held.db

    @contextlib.contextmanager
    def _using(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's connection; a transient failure drops it if it broke and is raised as TransientError."""
        try:
            yield self._db()
        except psycopg.Error as exc:
            held: _ThreadConnection | None = getattr(self._local, "held", None)
            if held is not None and not held.usable():
                self._local.held = None
                held.close()
            if is_transient(exc):
                raise memcore.TransientError(f"postgres: {_describe(exc)}") from exc
            raise

    # -- hooks -------------------------------------------------------------------------------------------------------

    @memcore.hookimpl
    def memcore_open_session(self, session: memcore.Session) -> None:
        with self._using() as db:
            db.execute(self._sql["open"], {**_scope(session), "parent": session.parent_id})

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message], key: str) -> None:
        """Store the turn once per ``key``: a retry of a write that reached the database stores nothing again."""
        scope = _scope(session)
        rows = []
        for position, message in enumerate(messages):
            content, exact = _storable(message.content)
            extra = _fields(message)
            if exact is not None:
                extra["content"] = exact
            rows.append(
                {
                    **scope,
                    "key": key,
                    "position": position,
                    "role": message.role,
                    "content": content,
                    "extra": Json(extra) if extra else None,
                    "config": self.text_search_config,
                    "indexed": INDEXED_CHARS,
                }
            )
        if not rows:
            return
        with self._using() as db, db.transaction(), db.cursor() as cur:
            cur.executemany(self._sql["write"], rows)

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note, key: str) -> None:
        text, exact = _storable(note.text)
        with self._using() as db:
            db.execute(
                self._sql["remember"],
                {
                    **_scope(session),
                    "key": key,
                    "text": text,
                    "kind": note.kind,
                    "metadata": Json(dict(note.metadata)) if note.metadata else None,
                    "extra": Json({"content": exact}) if exact is not None else None,
                    "config": self.text_search_config,
                    "indexed": INDEXED_CHARS,
                },
            )

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session, key: str) -> None:
        """Make the session's turns recallable; once per ``key`` (a retried commit that had landed changes nothing)."""
        scope = {**_scope(session), "key": key, "parent": session.parent_id}
        with self._using() as db, db.transaction():
            if db.execute(self._sql["commit_key"], scope).fetchone() is None:
                return  # this commit was made already: its answer was lost
            marked = db.execute(self._sql["commit_messages"], scope).rowcount
            db.execute(self._sql["commit_count"], {**scope, "messages": marked})
            db.execute(self._sql["commit_session"], scope)

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: memcore.Session | None, limit: int, user_id: str | None
    ) -> Sequence[memcore.Recollection]:
        """Committed turns and notes of ``user_id`` (every session of that user), best ``ts_rank`` first."""
        if limit <= 0 or not query.strip():
            return []
        params = {
            "config": self.text_search_config,
            "query": query.replace("\x00", " "),
            "user": user_id if user_id is not None else DEFAULT_USER,
            "limit": limit,
        }
        with self._using() as db:
            rows = db.execute(self._sql["recall"], params).fetchall()
        return [
            memcore.Recollection(
                text=_exact(text, extra),
                score=float(rank),
                source=self.name,
                session_id=sid,
                metadata={"origin": origin, "kind": kind, "id": ref},
            )
            for text, extra, origin, ref, sid, kind, rank in rows
        ]

    @memcore.hookimpl
    def memcore_history(self, session: memcore.Session) -> Sequence[memcore.Message]:
        with self._using() as db:
            rows = db.execute(self._sql["history"], _scope(session)).fetchall()
        return [_message(role, content, extra) for role, content, extra in rows]

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> None:
        """Delete the user's session ``session_id`` (turns, notes, commits), or everything of the user."""
        params = {"user": user_id if user_id is not None else DEFAULT_USER, "session": session_id}
        with self._using() as db, db.transaction():
            for table in ("messages", "notes", "commits", "sessions"):
                db.execute(self._sql[f"forget_{table}"], params)

    @memcore.hookimpl
    def memcore_close(self) -> None:
        for held in list(self._connections):
            held.close()
        self._connections.clear()
        self._local = threading.local()

    def stats(self, user_id: str | None = None) -> dict[str, int]:
        """Counts of one user's store: sessions, messages, committed messages, notes, commits."""
        with self._using() as db:
            row = db.execute(self._sql["stats"], {"user": user_id if user_id is not None else DEFAULT_USER}).fetchone()
        assert row is not None
        keys = ("sessions", "messages", "committed_messages", "notes", "commits")
        return dict(zip(keys, (int(v) for v in row), strict=True))


_STATEMENTS: dict[str, str] = {
    "open": (
        "INSERT INTO {schema}.sessions (user_id, session_id, parent_id) VALUES (%(user)s, %(session)s, %(parent)s) "
        "ON CONFLICT (user_id, session_id) DO NOTHING"
    ),
    "write": (
        "INSERT INTO {schema}.messages (user_id, session_id, op_key, position, role, content, extra, tsv) "
        "VALUES (%(user)s, %(session)s, %(key)s, %(position)s, %(role)s, %(content)s, %(extra)s, "
        "to_tsvector(%(config)s::regconfig, left(%(content)s, %(indexed)s))) "
        "ON CONFLICT (user_id, session_id, op_key, position) DO NOTHING"
    ),
    "remember": (
        "INSERT INTO {schema}.notes (user_id, session_id, op_key, text, kind, metadata, extra, tsv) "
        "VALUES (%(user)s, %(session)s, %(key)s, %(text)s, %(kind)s, %(metadata)s, %(extra)s, "
        "to_tsvector(%(config)s::regconfig, left(%(text)s, %(indexed)s))) "
        "ON CONFLICT (user_id, session_id, op_key) DO NOTHING"
    ),
    "commit_key": (
        "INSERT INTO {schema}.commits (user_id, session_id, op_key, messages) "
        "VALUES (%(user)s, %(session)s, %(key)s, 0) ON CONFLICT (user_id, session_id, op_key) DO NOTHING RETURNING 1"
    ),
    "commit_messages": (
        "UPDATE {schema}.messages SET committed = true "
        "WHERE user_id = %(user)s AND session_id = %(session)s AND NOT committed"
    ),
    "commit_count": (
        "UPDATE {schema}.commits SET messages = %(messages)s "
        "WHERE user_id = %(user)s AND session_id = %(session)s AND op_key = %(key)s"
    ),
    "commit_session": (
        "INSERT INTO {schema}.sessions AS s (user_id, session_id, parent_id, committed_at, commits) "
        "VALUES (%(user)s, %(session)s, %(parent)s, now(), 1) ON CONFLICT (user_id, session_id) "
        "DO UPDATE SET committed_at = excluded.committed_at, commits = s.commits + 1"
    ),
    "recall": _RECALL,
    "history": (
        "SELECT role, content, extra FROM {schema}.messages "
        "WHERE user_id = %(user)s AND session_id = %(session)s ORDER BY id"
    ),
    **{
        f"forget_{table}": (
            f"DELETE FROM {{schema}}.{table} WHERE user_id = %(user)s "
            "AND (%(session)s::text IS NULL OR session_id = %(session)s::text)"
        )
        for table in ("messages", "notes", "commits", "sessions")
    },
    "stats": (
        "SELECT (SELECT count(*) FROM {schema}.sessions WHERE user_id = %(user)s), "
        "(SELECT count(*) FROM {schema}.messages WHERE user_id = %(user)s), "
        "(SELECT count(*) FROM {schema}.messages WHERE user_id = %(user)s AND committed), "
        "(SELECT count(*) FROM {schema}.notes WHERE user_id = %(user)s), "
        "(SELECT coalesce(sum(commits), 0) FROM {schema}.sessions WHERE user_id = %(user)s)"
    ),
}


def _scope(session: memcore.Session) -> dict[str, str]:
    return {"user": session.user_id if session.user_id is not None else DEFAULT_USER, "session": session.id}


def _storable(text: str) -> tuple[str, str | None]:
    """``text`` as a PostgreSQL text value, and the exact text when they differ: a text value cannot hold NUL, so
    a text with NUL is indexed with spaces in their place and kept exact in the row's JSON (where it is escaped)."""
    if "\x00" not in text:
        return text, None
    return text.replace("\x00", " "), text


def _fields(message: memcore.Message) -> dict[str, Any]:
    """The optional fields of ``message`` that are set, as JSON values."""
    fields: dict[str, Any] = {}
    if message.name is not None:
        fields["name"] = message.name
    if message.tool_calls:
        fields["tool_calls"] = [dict(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        fields["tool_call_id"] = message.tool_call_id
    return fields


def _exact(text: str, extra: Mapping[str, Any] | None) -> str:
    """The exact text of a row: ``text``, or the one kept in ``extra`` when it held NUL (see :func:`_storable`)."""
    exact = (extra or {}).get("content")
    return exact if isinstance(exact, str) else text


def _message(role: str, content: str, extra: Mapping[str, Any] | None) -> memcore.Message:
    """A message from a stored row: ``extra`` holds the optional fields, and the exact content when it has NUL."""
    fields = extra or {}
    return memcore.Message(
        role=role,
        content=_exact(content, fields),
        name=fields.get("name"),
        tool_calls=tuple(fields.get("tool_calls") or ()),
        tool_call_id=fields.get("tool_call_id"),
    )


def _describe(exc: psycopg.Error) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{exc.sqlstate}: {text}"[:300] if exc.sqlstate else text[:300]


class _ThreadConnection:
    """One thread's connection, closed when the thread ends (its thread-local storage, the only strong reference to
    this holder, goes with it) or when the backend closes. Never closed in a forked child: closing would end the
    parent's session on the socket they share."""

    __slots__ = ("__weakref__", "db", "pid")

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.db = db
        self.pid = os.getpid()

    def usable(self) -> bool:
        db = self.db
        return (
            self.pid == os.getpid()
            and not db.closed
            and not db.broken
            and db.info.transaction_status == pq.TransactionStatus.IDLE
        )

    def close(self) -> None:
        if self.pid == os.getpid():
            with contextlib.suppress(Exception):
                self.db.close()

    def __del__(self) -> None:
        self.close()

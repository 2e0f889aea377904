"""The embedded default backend: one SQLite database (WAL, FTS5), no server, no configuration.

Safe for several processes on one machine: WAL lets readers run beside a writer, every write is a short
``BEGIN IMMEDIATE`` transaction, and a busy timeout makes writers of other processes wait their turn.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._hooks import hookimpl
from ._paths import memcore_home
from ._records import Message, Note, Recollection, Session, message_fields, message_from

SCHEMA_VERSION = 1
DEFAULT_FILE = "memory.sqlite3"
_WORD = re.compile(r"\w+", re.UNICODE)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    parent_id TEXT,
    opened_at REAL NOT NULL,
    committed_at REAL,
    commits INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    extra TEXT,
    created_at REAL NOT NULL,
    committed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (session_id, id);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    metadata TEXT,
    created_at REAL NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS recall USING fts5 (
    text, origin UNINDEXED, ref UNINDEXED, session_id UNINDEXED, kind UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);
"""


def default_path() -> Path:
    """``$MEMCORE_HOME/memory.sqlite3`` (or the per-user data directory)."""
    return memcore_home() / DEFAULT_FILE


def fts_query(query: str) -> str:
    """A safe FTS5 query: every word of ``query`` quoted, any of them may match (bm25 ranks the rest)."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in _WORD.findall(query))


class SQLiteBackend:
    """memcore's embedded backend. Turns become recallable when their session is committed; notes at once.

    Settings: ``path`` (default ``$MEMCORE_HOME/memory.sqlite3``), ``busy_timeout`` in seconds.
    """

    name = "sqlite"

    def __init__(self, path: str | Path | None = None, busy_timeout: float = 30.0):
        if path is not None and not str(path).strip():
            raise ValueError("path is empty; leave it out for the default store")
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.busy_timeout = float(busy_timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per worker thread: sqlite3 connections must not be shared while in use. This is
        # per-thread storage, not a lock; the core guarantees no two calls run for one session at once. A thread's
        # connection lives as long as the thread (held by the thread-local alone; the set below only refers to it),
        # so the stand-in workers the core starts and stops leave no connection open behind them.
        self._local = threading.local()
        self._connections: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        db = self._db()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has schema version {version}; this memcore knows {SCHEMA_VERSION}")
        if version < SCHEMA_VERSION:
            db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

    def __repr__(self) -> str:
        return f"SQLiteBackend(path={str(self.path)!r})"

    @property
    def open_connections(self) -> int:
        """How many connections to the database this backend holds open (one per thread that used it)."""
        return len(self._connections)

    @property
    def journal_key(self) -> str:
        """The journal files operations for this store under its name and its database file."""
        return f"{self.name}:{self.path.resolve()}"

    def _db(self) -> sqlite3.Connection:
        held: _ThreadConnection | None = getattr(self._local, "held", None)
        if held is None:
            db = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            held = self._local.held = _ThreadConnection(db)
            self._connections.add(held)
        return held.db

    @hookimpl
    def memcore_open_session(self, session: Session) -> None:
        db = self._db()
        db.execute(
            "INSERT OR IGNORE INTO sessions (id, parent_id, opened_at) VALUES (?, ?, ?)",
            (session.id, session.parent_id, time.time()),
        )

    @hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        db = self._db()
        now = time.time()
        rows = [(session.id, m.role, m.content, _extra(m), now) for m in messages]
        with _transaction(db):
            db.executemany(
                "INSERT INTO messages (session_id, role, content, extra, created_at) VALUES (?, ?, ?, ?, ?)", rows
            )

    @hookimpl
    def memcore_remember(self, session: Session, note: Note) -> None:
        db = self._db()
        meta = json.dumps(dict(note.metadata), ensure_ascii=False, default=str) if note.metadata else None
        with _transaction(db):
            cur = db.execute(
                "INSERT INTO notes (session_id, text, kind, metadata, created_at) VALUES (?, ?, ?, ?, ?)",
                (session.id, note.text, note.kind, meta, time.time()),
            )
            db.execute(
                "INSERT INTO recall (text, origin, ref, session_id, kind) VALUES (?, 'note', ?, ?, ?)",
                (note.text, cur.lastrowid, session.id, note.kind),
            )

    @hookimpl
    def memcore_commit(self, session: Session) -> None:
        db = self._db()
        with _transaction(db):
            db.execute(
                "INSERT INTO recall (text, origin, ref, session_id, kind) "
                "SELECT content, 'message', id, session_id, role FROM messages "
                "WHERE session_id = ? AND committed = 0 AND content != ''",
                (session.id,),
            )
            db.execute("UPDATE messages SET committed = 1 WHERE session_id = ? AND committed = 0", (session.id,))
            db.execute(
                "INSERT INTO sessions (id, parent_id, opened_at, committed_at, commits) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (id) DO UPDATE SET committed_at = excluded.committed_at, commits = commits + 1",
                (session.id, session.parent_id, time.time(), time.time()),
            )

    @hookimpl
    def memcore_recall(self, query: str, session: Session | None, limit: int) -> Sequence[Recollection]:
        match = fts_query(query)
        if not match:
            return []
        rows = self._db().execute(
            "SELECT text, origin, ref, session_id, kind, bm25(recall) FROM recall WHERE recall MATCH ? "
            "ORDER BY bm25(recall) LIMIT ?",
            (match, limit),
        )
        return [
            Recollection(
                text=text,
                score=-rank,
                source=self.name,
                session_id=sid,
                metadata={"origin": origin, "kind": kind, "id": ref},
            )
            for text, origin, ref, sid, kind, rank in rows
        ]

    @hookimpl
    def memcore_history(self, session: Session) -> Sequence[Message]:
        rows = self._db().execute(
            "SELECT role, content, extra FROM messages WHERE session_id = ? ORDER BY id", (session.id,)
        )
        return [_message(role, content, extra) for role, content, extra in rows]

    @hookimpl
    def memcore_close(self) -> None:
        for held in list(self._connections):
            held.db.close()
        self._connections.clear()
        self._local = threading.local()

    def stats(self) -> dict[str, Any]:
        """Counts for the command line: sessions, messages, committed messages, notes, commits."""
        db = self._db()

        def one(sql: str) -> Any:
            return db.execute(sql).fetchone()[0]

        return {
            "sessions": one("SELECT count(*) FROM sessions"),
            "messages": one("SELECT count(*) FROM messages"),
            "committed_messages": one("SELECT count(*) FROM messages WHERE committed = 1"),
            "notes": one("SELECT count(*) FROM notes"),
            "commits": one("SELECT coalesce(sum(commits), 0) FROM sessions"),
        }


def _extra(message: Message) -> str | None:
    extra = message_fields(message)
    return json.dumps(extra, ensure_ascii=False, default=str) if extra else None


def _message(role: str, content: str, extra: str | None) -> Message:
    return message_from(role, content, json.loads(extra) if extra else {})


class _ThreadConnection:
    """One thread's connection, closed when the thread ends (its thread-local storage, the only strong reference to
    this holder, goes with it; a connection alone can be neither referred to weakly nor freed without the cycle
    collector)."""

    __slots__ = ("__weakref__", "db")

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # closed already, or the interpreter is shutting down
            self.db.close()


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error (the connection is in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")

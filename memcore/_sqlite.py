"""The embedded default backend: one SQLite database (WAL, FTS5), no server, no configuration.

Safe for several processes on one machine: WAL lets readers run beside a writer, every write is a short
``BEGIN IMMEDIATE`` transaction, and a busy timeout makes writers of other processes wait their turn.

Users are kept apart: every row carries its user (``''`` for the default user, so that keys compare equal), a session
is keyed by (user, id), and every read is filtered to one user. Ids only ever travel as SQL parameters.
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

from ._errors import TransientError
from ._hooks import hookimpl
from ._paths import memcore_home
from ._records import Message, Note, Recollection, Session, message_fields, message_from

#: 1: the first schema (no users). 2: users (``user_id`` in every table, sessions keyed by (user, id)), every
#: message and note records the rowid of its recall row (``recall_id``), so that a forget deletes those by rowid, and
#: the idempotency key of the operation that stored it (``op_key``; commits in ``applied``): each is stored once.
SCHEMA_VERSION = 2
DEFAULT_FILE = "memory.sqlite3"
#: The tables every version of the store has (how ``memcore`` recognises a store of any version).
TABLES = frozenset({"sessions", "messages", "notes", "recall"})
_WORD = re.compile(r"\w+", re.UNICODE)
#: The store's schema. ``user_id`` is '' for the default user. ``recall_id`` is the rowid of the message's or note's
#: row in ``recall`` (NULL: none). Recall rows get rowids above every earlier one (appending to the FTS index is
#: what keeps indexing fast), so a commit numbers its messages from the highest rowid up.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    parent_id TEXT,
    opened_at REAL NOT NULL,
    committed_at REAL,
    commits INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, id)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    extra TEXT,
    created_at REAL NOT NULL,
    committed INTEGER NOT NULL DEFAULT 0,
    user_id TEXT NOT NULL DEFAULT '',
    recall_id INTEGER,
    op_key TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (user_id, session_id, id);
CREATE INDEX IF NOT EXISTS messages_by_key ON messages (op_key);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    metadata TEXT,
    created_at REAL NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    recall_id INTEGER,
    op_key TEXT
);
CREATE INDEX IF NOT EXISTS notes_by_session ON notes (user_id, session_id);
CREATE INDEX IF NOT EXISTS notes_by_key ON notes (op_key);
CREATE TABLE IF NOT EXISTS applied (key TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS recall USING fts5 (
    text, origin UNINDEXED, ref UNINDEXED, session_id UNINDEXED, kind UNINDEXED, user_id UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);
"""

#: Schema 1 to 2, in place (run in one transaction with the version check): every existing row is the default
#: user's. Messages and notes get the columns (no rewrite) and learn their recall rows' rowids (through a temporary
#: map: the FTS table has no index on ``ref``); sessions and the FTS table are rebuilt (a new key; FTS5 tables
#: cannot gain a column), the FTS rows keeping their rowids. A recall row that is not the first of its (origin, ref),
#: which memcore never made, is left out: nothing would find it to forget it.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE messages ADD COLUMN user_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE messages ADD COLUMN recall_id INTEGER",
    "DROP INDEX IF EXISTS messages_by_session",
    "CREATE INDEX messages_by_session ON messages (user_id, session_id, id)",
    "ALTER TABLE notes ADD COLUMN user_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE notes ADD COLUMN recall_id INTEGER",
    "CREATE INDEX notes_by_session ON notes (user_id, session_id)",
    "ALTER TABLE messages ADD COLUMN op_key TEXT",
    "CREATE INDEX IF NOT EXISTS messages_by_key ON messages (op_key)",
    "ALTER TABLE notes ADD COLUMN op_key TEXT",
    "CREATE INDEX IF NOT EXISTS notes_by_key ON notes (op_key)",
    "CREATE TABLE IF NOT EXISTS applied (key TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE sessions_v2 (user_id TEXT NOT NULL, id TEXT NOT NULL, parent_id TEXT, opened_at REAL NOT NULL, "
    "committed_at REAL, commits INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user_id, id))",
    "INSERT INTO sessions_v2 (user_id, id, parent_id, opened_at, committed_at, commits) "
    "SELECT '', id, parent_id, opened_at, committed_at, commits FROM sessions",
    "DROP TABLE sessions",
    "ALTER TABLE sessions_v2 RENAME TO sessions",
    "CREATE TEMP TABLE recall_refs (origin TEXT NOT NULL, ref INTEGER NOT NULL, rid INTEGER NOT NULL, "
    "PRIMARY KEY (origin, ref)) WITHOUT ROWID",
    "INSERT INTO recall_refs SELECT origin, ref, min(rowid) FROM recall "
    "WHERE origin IN ('message', 'note') AND ref IS NOT NULL GROUP BY origin, ref",
    "UPDATE messages SET recall_id = (SELECT rid FROM recall_refs WHERE origin = 'message' AND ref = messages.id)",
    "UPDATE notes SET recall_id = (SELECT rid FROM recall_refs WHERE origin = 'note' AND ref = notes.id)",
    "CREATE VIRTUAL TABLE recall_v2 USING fts5 (text, origin UNINDEXED, ref UNINDEXED, session_id UNINDEXED, "
    "kind UNINDEXED, user_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2')",
    "INSERT INTO recall_v2 (rowid, text, origin, ref, session_id, kind, user_id) "
    "SELECT rowid, text, origin, ref, session_id, kind, '' FROM recall "
    "WHERE rowid IN (SELECT rid FROM recall_refs) ORDER BY rowid",
    "DROP TABLE recall_refs",
    "DROP TABLE recall",
    "ALTER TABLE recall_v2 RENAME TO recall",
)


def default_path() -> Path:
    """``$MEMCORE_HOME/memory.sqlite3`` (or the per-user data directory)."""
    return memcore_home() / DEFAULT_FILE


def fts_query(query: str) -> str:
    """A safe FTS5 query: every word of ``query`` quoted, any of them may match (bm25 ranks the rest)."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in _WORD.findall(query))


def user_key(user_id: str | None) -> str:
    """How the store keeps ``user_id``: '' for the default user (a valid user id is never blank)."""
    return "" if user_id is None else user_id


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]


class SQLiteBackend:
    """memcore's embedded backend. Turns become recallable when their session is committed; notes at once. Keeps
    users apart (``separates_users``) and forgets a session or a user in one transaction, keeping nothing.

    Settings: ``path`` (default ``$MEMCORE_HOME/memory.sqlite3``), ``busy_timeout`` in seconds.
    """

    name = "sqlite"
    separates_users = True

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
            self._upgrade(db, version)

    def _upgrade(self, db: sqlite3.Connection, version: int) -> None:
        """Create the schema in a new store, or bring an older one to :data:`SCHEMA_VERSION` in place: one
        transaction, the version read again inside it (another process may have done it meanwhile)."""
        with _transaction(db):
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                return
            steps = _statements(_SCHEMA) if version == 0 else list(_MIGRATE_1_TO_2)
            for statement in steps:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
                factory=_Connection,
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
            "INSERT OR IGNORE INTO sessions (user_id, id, parent_id, opened_at) VALUES (?, ?, ?, ?)",
            (user_key(session.user_id), session.id, session.parent_id, time.time()),
        )

    @hookimpl
    def memcore_write(
        self, session: Session, messages: Sequence[Message], key: str | None = None, attempt: int = 1
    ) -> None:
        db = self._db()
        now = time.time()
        user = user_key(session.user_id)
        rows = [(user, session.id, m.role, m.content, _extra(m), now, key) for m in messages]
        with _transaction(db):
            if attempt > 1 and key is not None and _stored(db, "messages", key):
                return  # an earlier call with this key stored it; its answer was lost
            db.executemany(
                "INSERT INTO messages (user_id, session_id, role, content, extra, created_at, op_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    @hookimpl
    def memcore_remember(self, session: Session, note: Note, key: str | None = None, attempt: int = 1) -> None:
        db = self._db()
        user = user_key(session.user_id)
        meta = json.dumps(dict(note.metadata), ensure_ascii=False, default=str) if note.metadata else None
        with _transaction(db):
            if attempt > 1 and key is not None and _stored(db, "notes", key):
                return
            cur = db.execute(
                "INSERT INTO notes (user_id, session_id, text, kind, metadata, created_at, recall_id, op_key) "
                "VALUES (?, ?, ?, ?, ?, ?, (SELECT coalesce(max(rowid), 0) + 1 FROM recall), ?)",
                (user, session.id, note.text, note.kind, meta, time.time(), key),
            )
            db.execute(
                "INSERT INTO recall (rowid, text, origin, ref, session_id, kind, user_id) "
                "SELECT recall_id, text, 'note', id, session_id, kind, user_id FROM notes WHERE id = ?",
                (cur.lastrowid,),
            )

    @hookimpl
    def memcore_commit(self, session: Session, key: str | None = None, attempt: int = 1) -> None:
        db = self._db()
        scope = (user_key(session.user_id), session.id)
        now = time.time()
        with _transaction(db):
            # The key is recorded with the commit, in its transaction: a retry finds it and commits nothing again.
            if key is not None and db.execute("INSERT OR IGNORE INTO applied (key) VALUES (?)", (key,)).rowcount == 0:
                return
            # The session's new messages get rowids above every recall row, in their order: top + (id - first + 1).
            top, first = db.execute(
                "SELECT (SELECT coalesce(max(rowid), 0) FROM recall), "
                "(SELECT min(id) FROM messages WHERE user_id = ? AND session_id = ? AND committed = 0)",
                scope,
            ).fetchone()
            if first is not None:
                offset = top - first + 1
                db.execute(
                    "INSERT INTO recall (rowid, text, origin, ref, session_id, kind, user_id) "
                    "SELECT id + ?, content, 'message', id, session_id, role, user_id FROM messages "
                    "WHERE user_id = ? AND session_id = ? AND committed = 0 AND content != ''",
                    (offset, *scope),
                )
                db.execute(
                    "UPDATE messages SET committed = 1, recall_id = CASE WHEN content != '' THEN id + ? END "
                    "WHERE user_id = ? AND session_id = ? AND committed = 0",
                    (offset, *scope),
                )
            db.execute(
                "INSERT INTO sessions (user_id, id, parent_id, opened_at, committed_at, commits) "
                "VALUES (?, ?, ?, ?, ?, 1) "
                "ON CONFLICT (user_id, id) DO UPDATE SET committed_at = excluded.committed_at, commits = commits + 1",
                (*scope, session.parent_id, now, now),
            )

    @hookimpl
    def memcore_recall(
        self, query: str, session: Session | None, limit: int, user_id: str | None = None
    ) -> Sequence[Recollection]:
        # Every session of the user, whether or not the runtime is in one (recall is not scoped to a session); equal
        # scores come in the order they were indexed (rowids), the same in every run. The user is the session's when
        # there is one (memcore passes the same in user_id; a subclass calling this without it gets that user's).
        user = session.user_id if session is not None else user_id
        match = fts_query(query)
        if not match:
            return []
        rows = self._db().execute(
            "SELECT text, origin, ref, session_id, kind, bm25(recall) FROM recall "
            "WHERE recall MATCH ? AND user_id = ? ORDER BY bm25(recall), rowid LIMIT ?",
            (match, user_key(user), limit),
        )
        return self._recollections(rows)

    def _recollections(self, rows: Any) -> list[Recollection]:
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
            "SELECT role, content, extra FROM messages WHERE user_id = ? AND session_id = ? ORDER BY id",
            (user_key(session.user_id), session.id),
        )
        return [_message(role, content, extra) for role, content, extra in rows]

    @hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        """Delete the scope's sessions, messages, notes and their recall rows in one transaction; keeps nothing."""
        where, args = _scope(user_id, session_id)
        db = self._db()
        with _transaction(db):
            # The recall rows first, by rowid (found through the messages and notes they index: no scan of recall).
            for table in ("messages", "notes"):
                db.execute(
                    f"DELETE FROM recall WHERE rowid IN (SELECT recall_id FROM {table} WHERE {where} "
                    "AND recall_id IS NOT NULL)",
                    args,
                )
            db.execute(f"DELETE FROM messages WHERE {where}", args)
            db.execute(f"DELETE FROM notes WHERE {where}", args)
            db.execute(f"DELETE FROM sessions WHERE {_scope(user_id, session_id, 'id')[0]}", args)
        return None

    @hookimpl
    def memcore_rewind(self, session: Session, turns: int) -> None:
        """Delete the session's last ``turns`` writes (all messages of each, and what recall indexed of them)."""
        db = self._db()
        scope = (user_key(session.user_id), session.id)
        with _transaction(db):
            groups = db.execute(  # a write's messages share its key (keys never start with "id:")
                "SELECT op_key, max(id) FROM messages WHERE user_id = ? AND session_id = ? "
                "GROUP BY coalesce(op_key, 'id:' || id) ORDER BY max(id) DESC LIMIT ?",
                (*scope, turns),
            ).fetchall()
            for op_key, last in groups:
                where, arg = ("op_key = ?", op_key) if op_key is not None else ("id = ?", last)
                db.execute(
                    f"DELETE FROM recall WHERE rowid IN (SELECT recall_id FROM messages WHERE user_id = ? "
                    f"AND session_id = ? AND {where} AND recall_id IS NOT NULL)",
                    (*scope, arg),
                )
                db.execute(f"DELETE FROM messages WHERE user_id = ? AND session_id = ? AND {where}", (*scope, arg))

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

    def scope_counts(self, user_id: str | None, session_id: str | None = None) -> dict[str, int]:
        """What the store holds of user ``user_id`` (its session ``session_id`` only, when given): ``sessions``
        (every session id with a row, its messages or notes), ``messages`` and ``notes``. What a forget erases."""
        where, args = _scope(user_id, session_id)
        sessions_where = _scope(user_id, session_id, "id")[0]
        db = self._db()
        sessions = db.execute(
            f"SELECT count(sid) FROM (SELECT id AS sid FROM sessions WHERE {sessions_where} "
            f"UNION SELECT session_id FROM messages WHERE {where} UNION SELECT session_id FROM notes WHERE {where})",
            args * 3,
        ).fetchone()[0]
        messages = db.execute(f"SELECT count(*) FROM messages WHERE {where}", args).fetchone()[0]
        notes = db.execute(f"SELECT count(*) FROM notes WHERE {where}", args).fetchone()[0]
        return {"sessions": int(sessions), "messages": int(messages), "notes": int(notes)}


def _scope(user_id: str | None, session_id: str | None, column: str = "session_id") -> tuple[str, tuple[str, ...]]:
    """The WHERE clause of a user, or of one of its sessions (``column`` names the session id): fixed text, the ids
    are its parameters."""
    if session_id is None:
        return "user_id = ?", (user_key(user_id),)
    return f"user_id = ? AND {column} = ?", (user_key(user_id), session_id)


def _extra(message: Message) -> str | None:
    extra = message_fields(message)
    return json.dumps(extra, ensure_ascii=False, default=str) if extra else None


def _message(role: str, content: str, extra: str | None) -> Message:
    return message_from(role, content, json.loads(extra) if extra else {})


class _Connection(sqlite3.Connection):
    """A store connection on which a lock still held by another process when ``busy_timeout`` ran out raises
    TransientError, which memcore retries (the operation stays journaled), not SQLite's OperationalError, which would
    fail the operation for good."""

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        try:
            return super().execute(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise TransientError(f"the SQLite store stayed locked past busy_timeout: {exc}") from exc
            raise

    def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        try:
            return super().executemany(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise TransientError(f"the SQLite store stayed locked past busy_timeout: {exc}") from exc
            raise


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is SQLite's SQLITE_BUSY or SQLITE_LOCKED ("database is locked", "database table is locked")."""
    return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "is locked" in str(exc)


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


def _stored(db: sqlite3.Connection, table: str, key: str) -> bool:
    """Whether an operation with idempotency ``key`` already stored rows in ``table``."""
    return db.execute(f"SELECT 1 FROM {table} WHERE op_key = ? LIMIT 1", (key,)).fetchone() is not None

"""The journal: a SQLite write-ahead outbox of accepted operations (G10).

Every accepted operation is appended to an in-memory buffer before the caller returns; one writer thread puts the
buffer on disk in a single transaction (group commit), so the caller never waits for the disk. The loss window, if
the process dies, is what the writer has not yet committed: at a steady pace one batch (a millisecond or two); right
after a burst, the backlog (measured: 100 to 300 ms after bursts of 10,000 to 20,000 turns, as the writer puts about
80,000 operations a second on disk). ``durability="sync"`` makes each call wait until its operation is on disk.
Acknowledged operations are deleted; an operation acknowledged before it reached the disk never touches it. Operations
that failed for good stay, marked ``failed`` with their last error, for ``memcore pending`` and ``memcore retry``.

On start, a Memory claims the rows of owners that are no longer running and replays them, lane by lane, in order.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from ._records import Note, Session, message_fields, message_from

log = logging.getLogger("memcore")

SCHEMA_VERSION = 1
DEFAULT_FILE = "journal.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (owner TEXT PRIMARY KEY, pid INTEGER, host TEXT, started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ops (
    owner TEXT NOT NULL,
    seq INTEGER NOT NULL,
    backend TEXT NOT NULL,
    session_id TEXT NOT NULL,
    parent_id TEXT,
    kind TEXT NOT NULL,
    payload TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (owner, seq)
);
"""


@attrs.frozen(kw_only=True)
class Entry:
    """One journaled operation, as replayed or listed."""

    seq: int
    backend: str
    session: Session
    kind: str
    payload: Any
    status: str = "pending"
    last_error: str | None = None


def encode(kind: str, payload: Any) -> str | None:
    """JSON for a turn (its messages) or a note. Written out by hand: ``attrs.asdict`` is half the writer's time."""
    if payload is None:
        return None
    if isinstance(payload, Note):
        data: Any = {"text": payload.text, "kind": payload.kind, "metadata": dict(payload.metadata)}
    else:
        data = [{"role": m.role, "content": m.content, **message_fields(m)} for m in payload]
    return json.dumps(data, ensure_ascii=False, default=str)


def decode(kind: str, text: str | None) -> Any:
    if text is None:
        return None
    data = json.loads(text)
    if kind == "remember":
        return Note(**data)
    return tuple(message_from(m["role"], m["content"], m) for m in data)


def _alive(pid: int | None, host: str | None) -> bool:
    if pid is None or host != socket.gethostname():
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JournalError(Exception):
    pass


class Journal:
    """The outbox of one Memory. ``append``/``ack``/``fail`` only touch memory; the writer thread does the I/O."""

    def __init__(self, path: Path, *, durability: str = "group"):
        if durability not in ("group", "sync"):
            raise ValueError(f"durability must be 'group' or 'sync', not {durability!r}")
        self.path = path
        self.sync_each = durability == "sync"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(path, full_sync=self.sync_each)
        self.owner = f"{time.time_ns():020d}:{socket.gethostname()}:{os.getpid()}"  # sorts by start time
        self._db.execute(
            "INSERT INTO owners (owner, pid, host, started) VALUES (?, ?, ?, ?)",
            (self.owner, os.getpid(), socket.gethostname(), time.time()),
        )
        self._cond = threading.Condition(threading.Lock())
        self._inserts: dict[int, tuple[Any, ...]] = {}
        self._acks: list[int] = []
        self._fails: list[tuple[str, int]] = []
        self._appended = 0  # buffer generations: how many appends were made
        self._durable = 0  # ... and how many of them are on disk
        self._stopping = False
        self._closed = False
        self._reader: sqlite3.Connection | None = None  # used by one reloading worker at a time (read_spilled)
        self._thread = threading.Thread(target=self._writer, name="memcore-journal", daemon=True)
        self._thread.start()

    # -- buffer (any thread) ---------------------------------------------------------------------------------

    def append(
        self, seq: int, backend: str, session: Session, kind: str, payload: Any, *, spilled: bool = False
    ) -> None:
        """Buffer one accepted operation. ``spilled`` ones are kept only here, not in memory, until
        :meth:`read_spilled` loads them back (the pending bound was reached: G8)."""
        status = "spilled" if spilled else "pending"
        row = (self.owner, seq, backend, session.id, session.parent_id, kind, payload, time.time(), status)
        with self._cond:
            self._inserts[seq] = row
            self._appended += 1
            self._cond.notify()

    def ack(self, seq: int) -> None:
        with self._cond:
            if self._inserts.pop(seq, None) is None:
                self._acks.append(seq)
            self._cond.notify()  # either way the writer has news (an insert acknowledged before it was written too)

    def fail(self, seq: int, error: str) -> None:
        with self._cond:
            self._fails.append((error, seq))
            self._cond.notify()

    def wait_durable(self, timeout: float | None = None) -> bool:
        """Wait until everything appended before this call is on disk."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._appended
            while self._durable < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
        return True

    # -- writer thread ---------------------------------------------------------------------------------------

    def _writer(self) -> None:
        while True:
            with self._cond:
                # Work: rows to write, or appends acknowledged before they were written (nothing to write, but
                # wait_durable must still learn that they are settled).
                while not (self._inserts or self._acks or self._fails or self._durable < self._appended):
                    if self._stopping:
                        return
                    self._cond.wait()
                inserts, acks, fails = self._inserts, self._acks, self._fails
                self._inserts, self._acks, self._fails = {}, [], []
                generation = self._appended
            try:
                if inserts or acks or fails:
                    self._write(inserts.values(), acks, fails)
            except sqlite3.Error:
                log.exception("memcore: the journal could not be written (%s)", self.path)
            with self._cond:
                self._durable = max(self._durable, generation)
                self._cond.notify_all()

    def _write(self, inserts: Iterable[tuple[Any, ...]], acks: list[int], fails: list[tuple[str, int]]) -> None:
        rows = [(*row[:6], encode(row[5], row[6]), row[7], row[8]) for row in inserts]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO ops "
                "(owner, seq, backend, session_id, parent_id, kind, payload, created, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany("DELETE FROM ops WHERE owner = ? AND seq = ?", [(self.owner, s) for s in acks])
            db.executemany(
                "UPDATE ops SET status = 'failed', last_error = ? WHERE owner = ? AND seq = ?",
                [(err, self.owner, s) for err, s in fails],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- start and stop --------------------------------------------------------------------------------------

    def claim(
        self, backends: Iterable[str], first_seq: int | Callable[[int], int], *, fresh: bool = False
    ) -> list[Entry]:
        """Take over the pending rows of owners that are gone (and rows ``memcore retry`` re-queued), for the named
        backends, renumbered from ``first_seq`` (or from what ``first_seq(count)`` reserves) in their original order.
        Returns them in that order. ``fresh``: on a connection of its own, for a claim while the writer runs."""
        names = list(backends)
        db = _connect(self.path) if fresh else self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            owners = db.execute("SELECT owner, pid, host FROM owners").fetchall()
            gone = [o for o, pid, host in owners if o != self.owner and not _alive(pid, host)]
            db.executemany("DELETE FROM owners WHERE owner = ?", [(o,) for o in gone])
            # Rows whose owner is not a running Memory: it died, closed, or the rows were re-queued by `retry`.
            names_marks = ",".join("?" * len(names))
            rows = db.execute(
                f"SELECT owner, seq, backend, session_id, parent_id, kind, payload FROM ops "
                f"WHERE owner NOT IN (SELECT owner FROM owners) AND status IN ('pending', 'spilled') "
                f"AND backend IN ({names_marks}) "
                f"ORDER BY owner, seq",  # owners sort by start time
                names,
            ).fetchall()
            entries = []
            base = first_seq(len(rows)) if callable(first_seq) else first_seq
            for n, (owner, seq, backend, sid, parent, kind, payload) in enumerate(rows):
                new_seq = base + n
                db.execute(
                    "UPDATE ops SET owner = ?, seq = ?, status = 'pending' WHERE owner = ? AND seq = ?",
                    (self.owner, new_seq, owner, seq),
                )
                session = Session(id=sid, parent_id=parent)
                entries.append(
                    Entry(seq=new_seq, backend=backend, session=session, kind=kind, payload=decode(kind, payload))
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            if fresh:
                db.close()
        return entries

    def read_spilled(self, backend: str, after: int, limit: int) -> list[Entry]:
        """The next ``limit`` spilled operations of ``backend`` (its key) with a sequence number above ``after``, in
        order (put on disk first)."""
        self.wait_durable()
        if self._reader is None:
            self._reader = _connect(self.path)
        rows = self._reader.execute(
            "SELECT seq, backend, session_id, parent_id, kind, payload FROM ops "
            "WHERE owner = ? AND status = 'spilled' AND backend = ? AND seq > ? ORDER BY seq LIMIT ?",
            (self.owner, backend, after, limit),
        ).fetchall()
        return [
            Entry(seq=seq, backend=b, session=Session(id=sid, parent_id=p), kind=k, payload=decode(k, data))
            for seq, b, sid, p, k, data in rows
        ]

    def close(self, timeout: float) -> bool:
        """Write what is buffered, stop the writer, close the file. False if the writer did not finish in time."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(max(timeout, 0.0))
        if self._thread.is_alive():
            return False
        self._db.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))  # what is left is for the next start
        self._db.close()
        if self._reader is not None:
            self._reader.close()
        self._closed = True
        return True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` finished: the owner is gone and its rows are anyone's."""
        return self._closed


def _connect(path: Path) -> sqlite3.Connection:
    """Another connection to a journal already opened (for reading back spilled rows, or claiming while running)."""
    return sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)


def _open(path: Path, *, full_sync: bool) -> sqlite3.Connection:
    """Open (or create) the journal; a corrupt one, or one from a newer memcore, is moved aside, never deleted."""
    for attempt in (1, 2):
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"it was written by a newer memcore (schema {version}; this one knows {SCHEMA_VERSION})"
                )
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise JournalError("it failed SQLite's integrity check")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {'FULL' if full_sync else 'NORMAL'}")
            if version < SCHEMA_VERSION:
                db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            return db
        except (sqlite3.DatabaseError, JournalError) as exc:
            db.close()
            if attempt == 2:
                raise
            aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{path}{suffix}")
                if source.exists():
                    source.rename(Path(f"{aside}{suffix}"))
            log.error(
                "memcore: the journal %s could not be used (%s); it was moved to %s and a new one started",
                path,
                exc,
                aside,
            )
    raise AssertionError("unreachable")

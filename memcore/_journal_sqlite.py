"""The default journal store: a SQLite file on this host, beside the embedded store (G10).

WAL mode, ``synchronous=NORMAL`` (``FULL`` with ``durability="sync"``), checkpoints on a thread of their own
(:mod:`memcore._checkpoint`). Owners are processes of this host: one is taken for dead only when it provably is
(:func:`_alive`: pid, the process's start time and the boot id), and its rows are then anyone's to claim. A corrupt
journal, or one from a newer memcore, is moved aside and a new one started, never deleted. Reads of spilled rows and
acknowledgements use SQLite's JSON functions (built in since SQLite 3.38, and in the JSON1 extension most builds had
before), as the embedded store uses FTS5.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path

from ._checkpoint import Checkpointer, bound_cache, connect, writer_pragmas
from ._journal_store import Batch, Claim, Spilled, decoded
from ._records import Session

log = logging.getLogger("memcore")

#: 2 added ``owners.pid_start`` and ``owners.boot_id`` (an owner is alive only if its very process is: :func:`_alive`);
#: 3 added ``debts``: the sessions whose delivered writes no commit covers yet (committed once at the next start), and
#: ``ops.user_id``: whose session it is (NULL: the default user), and ``ops.op_key``: the idempotency key an operation
#: was accepted with (NULL: ``owner:seq`` of its row; set from those when another owner takes it over).
SCHEMA_VERSION = 3
#: The tables every version of the journal has (how ``memcore`` recognises a journal of any version).
TABLES = frozenset({"owners", "ops"})
DEFAULT_FILE = "journal.sqlite3"
#: The owner columns added after version 1, added in place (``ALTER TABLE``) to a version-1 journal by :func:`_open`.
_ADDED_COLUMNS = (
    ("owners", "pid_start", "INTEGER"),
    ("owners", "boot_id", "TEXT"),
    ("ops", "user_id", "TEXT"),
    ("ops", "op_key", "TEXT"),
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY, pid INTEGER, host TEXT, started REAL NOT NULL, pid_start INTEGER, boot_id TEXT
);
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
    user_id TEXT,
    op_key TEXT,
    PRIMARY KEY (owner, seq)
);
CREATE TABLE IF NOT EXISTS debts (
    owner TEXT NOT NULL,
    backend TEXT NOT NULL,
    user_id TEXT NOT NULL,  -- '' for the default user (a key column: NULLs would never be equal)
    session_id TEXT NOT NULL,
    parent_id TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (owner, backend, user_id, session_id)
);
"""


def _alive(pid: int | None, host: str | None, pid_start: int | None = None, boot_id: str | None = None) -> bool:
    """Whether the owner that registered ``pid`` on ``host`` (with its process's start time ``pid_start`` and the
    ``boot_id`` of its boot) may still be running: it is taken for dead only when it provably is, and alive
    otherwise.

    Dead: another host (a journal is a local file), another boot (Linux's ``/proc/sys/kernel/random/boot_id``), no
    process with that pid, or a process with that pid that started at another time (field 22 of
    ``/proc/<pid>/stat``, in clock ticks since boot): the pid was reused, as after a container restart, where the
    hostname is the same and the application is often pid 1 again. Where ``/proc`` is missing (macOS, the BSDs) there
    is neither start time nor boot id, and the check falls back to the pid alone (a reused pid looks alive). So does
    a row written before schema 2 (both None), or one whose start time cannot be read now."""
    if pid is None or host != socket.gethostname():
        return False
    if boot_id is not None:
        boot = _boot_id()
        if boot is not None and boot != boot_id:
            return False  # every process of that boot is gone
    if pid == os.getpid():
        own = _start_ticks(pid)
        return pid_start is None or own is None or own == pid_start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    if pid_start is None:
        return True
    ticks = _start_ticks(pid)
    return ticks is None or ticks == pid_start


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # Field 2, the command in parentheses, may hold spaces and parentheses: count from the last ")". Field 3
        # (the state) is the first after it, so field 22 is the 20th.
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


_boot: list[str | None] = []  # this boot's id, read once


def _boot_id() -> str | None:
    """This boot's id (Linux), or None without ``/proc``."""
    if not _boot:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _boot.append(f.read().strip() or None)
        except OSError:
            _boot.append(None)
    return _boot[0]


def live_owners(db: sqlite3.Connection) -> set[str]:
    """The owners registered in the journal open as ``db`` that may still be running (:func:`_alive`), for a journal
    of any schema version (a version-1 journal, read-only, has no start time nor boot id: the pid alone is checked)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(owners)")}
    extra = ", pid_start, boot_id" if {"pid_start", "boot_id"} <= columns else ", NULL, NULL"
    rows = db.execute(f"SELECT owner, pid, host{extra} FROM owners").fetchall()
    return {owner for owner, pid, host, start, boot in rows if _alive(pid, host, start, boot)}


class JournalError(Exception):
    pass


#: The next ``limit`` spilled rows of an owner and backend after a sequence number, in order.
_SPILLED = "owner = ? AND status = 'spilled' AND backend = ? AND seq > ? ORDER BY seq LIMIT ?"


class SQLiteJournal:
    """The journal in a SQLite file on this host: ``$MEMCORE_HOME/journal.sqlite3`` unless another ``path`` is given.
    Any number of processes of this host may share one file (a Memory replays a dead one's rows)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(path))
        self.name = str(self.path)
        self._db: sqlite3.Connection | None = None  # the writer's (and the starting claim's) connection
        self._reader: sqlite3.Connection | None = None  # used by one reloading worker at a time (read_spilled)
        self._checkpointer: Checkpointer | None = None

    def __repr__(self) -> str:
        return f"SQLiteJournal({self.name!r})"

    def register(self, owner: str, *, sync: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = db = _open(self.path, full_sync=sync)
        writer_pragmas(db)  # checkpoints run beside the writer, never inside its COMMIT
        db.execute(
            "INSERT INTO owners (owner, pid, host, started, pid_start, boot_id) VALUES (?, ?, ?, ?, ?, ?)",
            (owner, os.getpid(), socket.gethostname(), time.time(), _start_ticks(os.getpid()), _boot_id()),
        )
        self._checkpointer = Checkpointer(self.path)

    def _writer_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError(f"the journal {self.name} is not open")
        return self._db

    @property
    def checkpointer(self) -> Checkpointer | None:
        return self._checkpointer

    def write(self, owner: str, batch: Batch) -> None:
        db = self._writer_db()
        rows, acks, fails, debts, erasures = batch.rows, batch.acks, batch.fails, batch.debts, batch.erasures
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO ops "
                "(owner, seq, backend, session_id, parent_id, kind, payload, created, status, user_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            # Acknowledgements go in one statement, as a JSON array: executemany steps once per row, and each step
            # gives the GIL up and, beside a busy thread, waits up to the switch interval to get it back (20,000
            # deletes took 61 s beside one spinning thread, 0.6 s this way; a replay acknowledges 1,000 a batch).
            if acks:
                db.execute(
                    "DELETE FROM ops WHERE owner = ? AND seq IN (SELECT value FROM json_each(?))",
                    (owner, json.dumps(acks)),
                )
            db.executemany(
                "UPDATE ops SET status = 'failed', last_error = ? WHERE owner = ? AND seq = ?",
                [(err, owner, s) for err, s in fails],
            )
            for (key, user, sid), session in debts.items():  # in order: see _debt
                if session is not None:  # a debt already recorded keeps its first date
                    db.execute(
                        "INSERT OR IGNORE INTO debts (owner, backend, user_id, session_id, parent_id, created) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (owner, key, user or "", sid, session.parent_id, now),
                    )
                elif sid:
                    db.execute(
                        "DELETE FROM debts WHERE owner = ? AND backend = ? AND user_id = ? AND session_id = ?",
                        (owner, key, user or "", sid),
                    )
                else:  # a user's forget: none of the user's sessions owes anything
                    db.execute(
                        "DELETE FROM debts WHERE owner = ? AND backend = ? AND user_id = ?",
                        (owner, key, user or ""),
                    )
            for backend, who, scoped in erasures:  # after this batch's failures: a scope's last failure goes too
                scope = "backend = ? AND coalesce(user_id, '') = ? AND status = 'failed'"
                args: tuple[str, ...] = (backend, who or "")
                if scoped is not None:
                    scope, args = scope + " AND session_id = ?", (*args, scoped)
                db.execute(f"DELETE FROM ops WHERE {scope}", args)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT may leave it open; a failed statement may have ended it
                db.execute("ROLLBACK")
            raise

        # -- start and stop --------------------------------------------------------------------------------------
        if self._checkpointer is not None:
            self._checkpointer.wrote(batch.size)

    def claim(
        self, owner: str, backends: Sequence[str], first_seq: int | Callable[[int], int], *, fresh: bool = False
    ) -> Claim:
        """See :meth:`JournalStore.claim`. The owners\' liveness is :func:`_alive`\'s."""
        names = list(backends)
        db = _connect(self.path) if fresh else self._writer_db()
        db.execute("BEGIN IMMEDIATE")
        try:
            owners = db.execute("SELECT owner, pid, host, pid_start, boot_id FROM owners").fetchall()
            gone = [o for o, pid, host, start, boot in owners if o != owner and not _alive(pid, host, start, boot)]
            db.executemany("DELETE FROM owners WHERE owner = ?", [(o,) for o in gone])
            # Rows whose owner is not a running Memory: it died, closed, or the rows were re-queued by `retry`.
            marks = ",".join("?" * len(names))
            orphan = f"owner NOT IN (SELECT owner FROM owners) AND backend IN ({marks})"
            claimed = f"{orphan} AND status IN ('pending', 'spilled')"
            # Renumbered by shifting each owner's rows past the last: one UPDATE per owner, no table of new numbers
            # (a replay of 100,000 rows spent a third of its start there); the gaps of acknowledged rows stay.
            spans = db.execute(
                f"SELECT owner, min(seq), max(seq), count(*) FROM ops WHERE {claimed} GROUP BY owner ORDER BY owner",
                names,
            ).fetchall()
            width = sum(high - low + 1 for _, low, high, _ in spans)
            committing = set(
                db.execute(
                    f"SELECT DISTINCT backend, coalesce(user_id, ''), session_id FROM ops WHERE {claimed} "
                    f"AND kind = 'commit'",
                    names,
                ).fetchall()
            )
            debts: dict[tuple[str, str, str], Session] = {}
            for key, user, sid, parent in db.execute(
                f"SELECT backend, user_id, session_id, parent_id FROM debts WHERE {orphan} ORDER BY owner, created",
                names,
            ):
                if (key, user, sid) not in committing:
                    debts.setdefault((key, user, sid), Session(id=sid, parent_id=parent, user_id=user or None))
            base = first_seq(width + len(debts)) if callable(first_seq) else first_seq
            at = base
            for old, low, high, _ in spans:  # owners sort by start time: the order the operations were accepted in
                # The key it was accepted with goes along: a retry after the takeover is still the same call.
                db.execute(
                    "UPDATE ops SET owner = ?, status = 'spilled', op_key = coalesce(op_key, owner || ':' || seq), "
                    f"seq = seq + ? WHERE owner = ? AND backend IN ({marks}) AND status IN ('pending', 'spilled')",
                    (owner, at - low, old, *names),
                )
                at += high - low + 1
            now = time.time()
            db.executemany(
                "INSERT INTO ops (owner, seq, backend, session_id, parent_id, kind, payload, created, status, user_id) "
                "VALUES (?, ?, ?, ?, ?, 'commit', NULL, ?, 'spilled', ?)",
                [
                    (owner, base + width + n, key, s.id, s.parent_id, now, s.user_id)
                    for n, ((key, _, _), s) in enumerate(debts.items())
                ],
            )
            db.execute(f"DELETE FROM debts WHERE {orphan}", names)
            backlog = {
                key: (n, high)
                for key, n, high in db.execute(
                    "SELECT backend, count(*), max(seq) FROM ops WHERE owner = ? AND seq >= ? AND seq < ? "
                    "GROUP BY backend",
                    (owner, base, base + width + len(debts)),
                )
            }
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            if fresh:
                db.close()
        return Claim(backlog=backlog, owed=tuple((key, s) for (key, _, _), s in debts.items()))

    def read_spilled(self, owner: str, backend: str, after: int, limit: int) -> list[Spilled]:
        if self._reader is None:
            self._reader = _connect(self.path)
        args = (owner, backend, after, limit)
        # The rows as one JSON array, built by SQLite: one step of the statement, where a fetch of 500 rows takes
        # the GIL back 500 times and, beside busy lane workers, waits for it each time (in a replay, the fetch took
        # ten times as long as alone); and one parse for every payload. ``created`` goes as a number written out
        # exact (SQLite's JSON writes 15 digits of a REAL; printf's ``!`` all of them, and json() keeps the text of a
        # number as it is); ``seq`` goes first, and the rows are put in its order again in case SQLite did not keep
        # the subquery's. Rows too large together for one SQLite string (SQLITE_MAX_LENGTH, 1 GB by default) are
        # fetched one by one instead.
        try:
            (text,) = self._reader.execute(
                "SELECT json_group_array(json_array(seq, session_id, parent_id, kind, json(payload), "
                f"user_id, op_key, json(printf('%!.17g', created)))) FROM (SELECT * FROM ops WHERE {_SPILLED})",
                args,
            ).fetchone()
            rows = json.loads(text)
            rows.sort(key=itemgetter(0))
        except sqlite3.DataError:  # string or blob too big
            found = self._reader.execute(
                f"SELECT seq, session_id, parent_id, kind, payload, user_id, op_key, created FROM ops WHERE {_SPILLED}",
                args,
            ).fetchall()
            rows = [[*row[:4], None if row[4] is None else json.loads(row[4]), *row[5:]] for row in found]
        sessions: dict[tuple[str, str | None, str | None], Session] = {}  # one Session per session
        entries = []
        for seq, sid, p, k, data, u, key, created in rows:
            session = sessions.get((sid, p, u))
            if session is None:
                session = sessions[sid, p, u] = Session(id=sid, parent_id=p, user_id=u)
            entries.append(Spilled(seq, session, k, decoded(k, data), key, created))
        return entries

    def close(self, owner: str, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        if self._checkpointer is not None and not self._checkpointer.close(deadline - time.monotonic()):
            return False
        db = self._writer_db()
        db.execute("DELETE FROM owners WHERE owner = ?", (owner,))  # what is left is for the next start
        db.close()
        self._db = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        return True


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the journal to :data:`SCHEMA_VERSION` in place, keeping its rows: create what is missing, add the owner
    columns a version-1 journal lacks (its owners keep NULL there: :func:`_alive` checks them by pid, as before).
    In one transaction, and again under its lock, since another process may be migrating the same file."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for table, name, kind in _ADDED_COLUMNS:
                if name not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _connect(path: Path) -> sqlite3.Connection:
    """Another connection to a journal already opened (for reading back spilled rows, or claiming while running)."""
    return connect(path)


def _open(path: Path, *, full_sync: bool) -> sqlite3.Connection:
    """Open (or create) the journal; a corrupt one, or one from a newer memcore, is moved aside, never deleted."""
    for attempt in (1, 2):
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            bound_cache(db)  # inside the check: on a file that is not a database, this is what raises
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
                _migrate(db)
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

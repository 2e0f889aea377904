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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from ._checkpoint import Checkpointer, writer_pragmas
from ._records import Note, Session, message_fields, message_from

log = logging.getLogger("memcore")

_Row = tuple[Any, ...]  # buffered: owner, seq, backend, session, parent, kind, payload, created, status, user

#: 2 added ``owners.pid_start`` and ``owners.boot_id`` (an owner is alive only if its very process is: :func:`_alive`);
#: 3 added ``debts``: the sessions whose delivered writes no commit covers yet (committed once at the next start), and
#: ``ops.user_id``: whose session it is (NULL: the default user), and ``ops.op_key``: the idempotency key an operation
#: was accepted with (NULL: ``owner:seq`` of its row; set from those when another owner takes it over).
SCHEMA_VERSION = 3
#: The tables every version of the journal has (how ``memcore`` recognises a journal of any version).
TABLES = frozenset({"owners", "ops"})
DEFAULT_FILE = "journal.sqlite3"
_RETRY_FIRST = 0.01  # after a failed write, the writer waits this long before the next attempt, doubling ...
_RETRY_MAX = 0.5  # ... up to this (durability="sync" calls wait for the next attempt's outcome)
_LOG_EVERY = 30.0  # write failures are logged at most this often
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
    key: str | None = None  #: the idempotency key it was accepted with, if another owner accepted it


@attrs.frozen(kw_only=True)
class Claim:
    """What :meth:`Journal.claim` took over, left on disk as this owner's spilled rows (loaded back as lanes drain):
    ``backlog`` maps a backend key to (how many operations, the sequence number of its last one); ``owed`` lists the
    sessions that owed a commit and had none queued, for which a commit was added after their operations."""

    backlog: Mapping[str, tuple[int, int]] = attrs.field(factory=dict)
    owed: tuple[tuple[str, Session], ...] = ()

    @property
    def total(self) -> int:
        return sum(n for n, _ in self.backlog.values())


def encode(kind: str, payload: Any) -> str | None:
    """JSON for a turn (its messages) or a note. Written out by hand: ``attrs.asdict`` is half the writer's time."""
    if payload is None:
        return None
    if kind == "rewind":  # how many turns
        return str(int(payload))
    if isinstance(payload, Note):
        data: Any = {"text": payload.text, "kind": payload.kind, "metadata": dict(payload.metadata)}
    else:
        data = [{"role": m.role, "content": m.content, **message_fields(m)} for m in payload]
    return json.dumps(data, ensure_ascii=False, default=str)


def decode(kind: str, text: str | None) -> Any:
    if text is None:
        return None
    data = json.loads(text)
    if kind == "rewind":
        return int(data)
    if kind == "remember":
        return Note(**data)
    return tuple(message_from(m["role"], m["content"], m) for m in data)


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


class Journal:
    """The outbox of one Memory. ``append``/``ack``/``fail`` only touch memory; the writer thread does the I/O."""

    def __init__(self, path: Path, *, durability: str = "group"):
        if durability not in ("group", "sync"):
            raise ValueError(f"durability must be 'group' or 'sync', not {durability!r}")
        self.path = path
        self.sync_each = durability == "sync"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(path, full_sync=self.sync_each)
        writer_pragmas(self._db)  # checkpoints run beside the writer, never inside its COMMIT
        self.owner = f"{time.time_ns():020d}:{socket.gethostname()}:{os.getpid()}"  # sorts by start time
        self._db.execute(
            "INSERT INTO owners (owner, pid, host, started, pid_start, boot_id) VALUES (?, ?, ?, ?, ?, ?)",
            (self.owner, os.getpid(), socket.gethostname(), time.time(), _start_ticks(os.getpid()), _boot_id()),
        )
        self._cond = threading.Condition(threading.Lock())
        self._inserts: dict[int, tuple[Any, ...]] = {}
        self._acks: list[int] = []
        self._fails: list[tuple[str, int]] = []
        # Commit debts to write: (backend key, session id) -> the session, when its delivered writes owe a commit, or
        # None when a commit (or a final failure of one) settled them. The last word on a session wins.
        self._debts: dict[tuple[str, str | None, str], Session | None] = {}
        # Forgets that finished: (backend key, user, session id or None) whose failed rows must go too (G13 forget).
        self._erasures: list[tuple[str, str | None, str | None]] = []
        self._appended = 0  # buffer generations: how many appends were made
        self._durable = 0  # ... and how many of them are on disk
        self._writing: dict[int, tuple[Any, ...]] = {}  # the inserts of the batch being written
        self._failures = 0  # write attempts that failed; the last of them held the appends up to _failed_gen
        self._failed_gen = 0
        self._write_error: str | None = None  # the last write failure, until a write succeeds again
        self._refused: str | None = None  # operations that could never be written (kept)
        self._lost: list[tuple[int, int]] = []  # generations (after, upto] of the batches that held them
        self._next_warning = 0.0  # warn_not_durable logs at most every _LOG_EVERY seconds
        self._stopping = False
        self._closed = False
        self._reader: sqlite3.Connection | None = None  # used by one reloading worker at a time (read_spilled)
        self._checkpointer = Checkpointer(path)
        self._thread = threading.Thread(target=self._writer, name="memcore-journal", daemon=True)
        self._thread.start()

    # -- buffer (any thread) ---------------------------------------------------------------------------------

    def append(
        self, seq: int, backend: str, session: Session, kind: str, payload: Any, *, spilled: bool = False
    ) -> None:
        """Buffer one accepted operation. ``spilled`` ones are kept only here, not in memory, until
        :meth:`read_spilled` loads them back (the pending bound was reached: G8)."""
        status = "spilled" if spilled else "pending"
        row = (
            self.owner,
            seq,
            backend,
            session.id,
            session.parent_id,
            kind,
            payload,
            time.time(),
            status,
            session.user_id,
        )
        with self._cond:
            self._inserts[seq] = row
            self._appended += 1
            self._cond.notify()

    def ack(
        self, seq: int, *, owes: tuple[str, Session] | None = None, settles: tuple[str, Session] | None = None
    ) -> None:
        """Operation ``seq`` is done. ``owes``: it was a write or note delivered to a backend that commits, so its
        session (backend key, session) owes a commit from now on; ``settles``: it was that session's commit (or the
        commit failed for good: the failed row is the record then), so the session owes nothing."""
        with self._cond:
            if self._inserts.pop(seq, None) is None:
                self._acks.append(seq)
            if owes is not None:
                self._debt((owes[0], owes[1].user_id, owes[1].id), owes[1])
            elif settles is not None:
                self._debt((settles[0], settles[1].user_id, settles[1].id), None)
            self._cond.notify()  # either way the writer has news (an insert acknowledged before it was written too)

    def settle(self, backend: str, session: Session) -> None:
        """A commit of (``backend``, ``session``) failed for good, or the session was forgotten: it owes nothing more
        (see :meth:`ack`)."""
        with self._cond:
            self._debt((backend, session.user_id, session.id), None)
            self._cond.notify()

    def erase_failed(self, backend: str, user_id: str | None, session_id: str | None) -> None:
        """A forget of that scope finished: its failed rows (of any owner) leave the journal too, so that nothing of
        it stays on disk nor comes back with ``memcore retry``."""
        with self._cond:
            self._erasures.append((backend, user_id, session_id))
            self._cond.notify()

    def _debt(self, key: tuple[str, str | None, str], session: Session | None) -> None:
        """(Under the lock.) Record the newest word on a debt, after every earlier one: the writer applies them in
        order (a user's forget, session id "", settles all of the user's, so what comes after it must stay after)."""
        self._debts.pop(key, None)
        self._debts[key] = session

    def fail(self, seq: int, error: str) -> None:
        with self._cond:
            self._fails.append((error, seq))
            self._cond.notify()

    def wait_durable(self, timeout: float | None = None) -> bool:
        """Wait until everything appended before this call is on disk. False if it is not within ``timeout``, if
        the writer is gone, if a write attempt that held it failed while waiting (the writer keeps it and tries again
        with its next batch: a later call learns whether that one got through; :attr:`error` says why), or if the
        batch that put it on disk had to leave out an operation that could never be written."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._appended
            failures = self._failures
            while self._durable < target:
                if self._failures > failures and self._failed_gen >= target:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
            return not any(after < target <= upto for after, upto in self._lost)

    @property
    def error(self) -> str | None:
        """None while the journal keeps up with what is accepted. Else why not: the last write failure while writes
        fail (cleared once a batch is written again; what was accepted meanwhile is kept in memory and written
        then), and operations that could never be written (kept: they are delivered, but a crash would lose them)."""
        with self._cond:
            errors = [e for e in (self._write_error, self._refused) if e is not None]
        return "; ".join(errors) if errors else None

    def warn_not_durable(self) -> None:
        """Log (at most every ``_LOG_EVERY`` seconds) that a ``durability="sync"`` call returns without its operation
        on disk: :meth:`wait_durable` said False."""
        now = time.monotonic()
        with self._cond:
            if now < self._next_warning:
                return
            self._next_warning = now + _LOG_EVERY
        log.error(
            "memcore: durability='sync', but an accepted operation is not on disk (%s); it is kept in memory and "
            "delivered, and written once the journal can be written again (logged at most every %g s)",
            self.error or "the journal writer did not answer",
            _LOG_EVERY,
        )

    # -- writer thread ---------------------------------------------------------------------------------------

    def _writer(self) -> None:
        """Write batch after batch. Nothing raised while writing one stops it: a batch that failed (an I/O error, a
        full disk...) is not counted as durable and stays in the buffer, to be written with the next batch after a
        backoff; an operation that cannot be encoded at all is left out of its batch and reported (:attr:`error`)."""
        delay = 0.0  # after a failed attempt: how long to wait before the next one
        next_log = 0.0  # failures are logged at most every _LOG_EVERY seconds
        while True:
            with self._cond:
                # Work: rows to write, or appends acknowledged before they were written (nothing to write, but
                # wait_durable must still learn that they are settled).
                while not (
                    self._inserts
                    or self._acks
                    or self._fails
                    or self._debts
                    or self._erasures
                    or self._durable < self._appended
                ):
                    if self._stopping:
                        return
                    self._cond.wait()
                if delay:  # new appends join the next attempt; only close cuts the backoff short
                    until = time.monotonic() + delay
                    while not self._stopping and (left := until - time.monotonic()) > 0:
                        self._cond.wait(left)
                last = self._stopping  # an attempt that fails while closing is the last one
                inserts, acks, fails, debts = self._inserts, self._acks, self._fails, self._debts
                self._inserts, self._acks, self._fails, self._debts = {}, [], [], {}
                erasures, self._erasures = self._erasures, []
                self._writing = inserts
                generation, floor = self._appended, self._durable
            refused: list[tuple[_Row, Exception]] = []
            try:
                if inserts or acks or fails or debts or erasures:
                    rows, refused = _prepare(inserts.values())
                    self._write(rows, acks, fails, debts, erasures)
                    self._checkpointer.wrote(len(rows) + len(acks) + len(fails) + len(debts) + len(erasures))
            except Exception as exc:
                with self._cond:  # keep the batch, in order, ahead of what came meanwhile
                    self._inserts = {**inserts, **self._inserts}
                    self._acks, self._fails = acks + self._acks, fails + self._fails
                    self._debts = {**debts, **self._debts}  # what came meanwhile is newer
                    self._erasures = erasures + self._erasures
                    self._writing = {}
                    self._failures += 1
                    self._failed_gen = generation
                    self._write_error = f"the journal {self.path} could not be written: {type(exc).__name__}: {exc}"
                    waiting = len(self._inserts)
                    self._cond.notify_all()
                if last:
                    log.error("memcore: %s; %d operations are not on disk at close", self._write_error, waiting)
                    return
                if time.monotonic() >= next_log:
                    log.error(
                        "memcore: %s; %d operations wait for the next attempt (%d attempts failed so far; logged at "
                        "most every %g s)",
                        self._write_error,
                        waiting,
                        self._failures,
                        _LOG_EVERY,
                        exc_info=exc if not delay else None,
                    )
                    next_log = time.monotonic() + _LOG_EVERY
                delay = min(max(delay * 2, _RETRY_FIRST), _RETRY_MAX)
                continue
            # Said before it is published: whoever waits on this batch then finds it in the log.
            refusal = None
            if refused:
                row, problem = refused[-1]
                refusal = (
                    f"{len(refused)} operations could not be written to the journal {self.path} (they are "
                    f"delivered without it; the last: a {row[5]} of session {row[3]!r}: "
                    f"{type(problem).__name__}: {problem})"
                )
                log.error("memcore: %s", refusal)
            if delay:
                log.warning("memcore: the journal %s is written again", self.path)
                delay, next_log = 0.0, 0.0
            with self._cond:
                self._writing = {}
                self._durable = max(self._durable, generation)
                if refusal is not None:
                    self._refused = refusal
                    if self._lost and self._lost[-1][1] >= floor:  # adjoining: one range
                        floor = self._lost.pop()[0]
                    self._lost.append((floor, generation))
                self._write_error = None
                self._cond.notify_all()

    def _write(
        self,
        rows: list[tuple[Any, ...]],
        acks: list[int],
        fails: list[tuple[str, int]],
        debts: Mapping[tuple[str, str | None, str], Session | None] | None = None,
        erasures: Iterable[tuple[str, str | None, str | None]] = (),
    ) -> None:
        db = self._db
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO ops "
                "(owner, seq, backend, session_id, parent_id, kind, payload, created, status, user_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany("DELETE FROM ops WHERE owner = ? AND seq = ?", [(self.owner, s) for s in acks])
            db.executemany(
                "UPDATE ops SET status = 'failed', last_error = ? WHERE owner = ? AND seq = ?",
                [(err, self.owner, s) for err, s in fails],
            )
            for (key, user, sid), session in (debts or {}).items():  # in order: see _debt
                if session is not None:  # a debt already recorded keeps its first date
                    db.execute(
                        "INSERT OR IGNORE INTO debts (owner, backend, user_id, session_id, parent_id, created) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (self.owner, key, user or "", sid, session.parent_id, now),
                    )
                elif sid:
                    db.execute(
                        "DELETE FROM debts WHERE owner = ? AND backend = ? AND user_id = ? AND session_id = ?",
                        (self.owner, key, user or "", sid),
                    )
                else:  # a user's forget: none of the user's sessions owes anything
                    db.execute(
                        "DELETE FROM debts WHERE owner = ? AND backend = ? AND user_id = ?",
                        (self.owner, key, user or ""),
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

    def claim(self, backends: Iterable[str], first_seq: int | Callable[[int], int], *, fresh: bool = False) -> Claim:
        """Take over, for the named backends, the pending rows of owners that are gone (and rows ``memcore retry``
        re-queued) and their commit debts, in one transaction. The rows stay on disk: they become this owner's
        *spilled* rows, renumbered from ``first_seq`` (or from what ``first_seq(count)`` reserves) in their original
        order by one set-based update, so that the scheduler loads them back a bounded batch at a time (G8) however
        many there are. A session that owed a commit and has no commit among those rows gets one, after them: it is
        committed once. ``fresh``: on a connection of its own, for a claim while the writer runs."""
        names = list(backends)
        db = _connect(self.path) if fresh else self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            owners = db.execute("SELECT owner, pid, host, pid_start, boot_id FROM owners").fetchall()
            gone = [o for o, pid, host, start, boot in owners if o != self.owner and not _alive(pid, host, start, boot)]
            db.executemany("DELETE FROM owners WHERE owner = ?", [(o,) for o in gone])
            # Rows whose owner is not a running Memory: it died, closed, or the rows were re-queued by `retry`.
            marks = ",".join("?" * len(names))
            orphan = f"owner NOT IN (SELECT owner FROM owners) AND backend IN ({marks})"
            claimed = f"{orphan} AND status IN ('pending', 'spilled')"
            db.execute("DROP TABLE IF EXISTS temp.claim_order")
            db.execute("CREATE TEMP TABLE claim_order (o TEXT, s INTEGER, n INTEGER, PRIMARY KEY (o, s)) WITHOUT ROWID")
            db.execute(  # owners sort by start time, so this is the order the operations were accepted in
                f"INSERT INTO claim_order SELECT owner, seq, row_number() OVER (ORDER BY owner, seq) - 1 FROM ops "
                f"WHERE {claimed}",
                names,
            )
            count = db.execute("SELECT count(*) FROM claim_order").fetchone()[0]
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
            base = first_seq(count + len(debts)) if callable(first_seq) else first_seq
            if count:
                # The key it was accepted with goes along: a retry after the takeover is still the same call.
                db.execute(
                    "UPDATE ops SET owner = ?, status = 'spilled', op_key = coalesce(op_key, owner || ':' || seq), "
                    "seq = ? + (SELECT n FROM claim_order WHERE o = ops.owner AND s = ops.seq) "
                    "WHERE (owner, seq) IN (SELECT o, s FROM claim_order)",
                    (self.owner, base),
                )
            now = time.time()
            db.executemany(
                "INSERT INTO ops (owner, seq, backend, session_id, parent_id, kind, payload, created, status, user_id) "
                "VALUES (?, ?, ?, ?, ?, 'commit', NULL, ?, 'spilled', ?)",
                [
                    (self.owner, base + count + n, key, s.id, s.parent_id, now, s.user_id)
                    for n, ((key, _, _), s) in enumerate(debts.items())
                ],
            )
            db.execute(f"DELETE FROM debts WHERE {orphan}", names)
            backlog = {
                key: (n, high)
                for key, n, high in db.execute(
                    "SELECT backend, count(*), max(seq) FROM ops WHERE owner = ? AND seq >= ? AND seq < ? "
                    "GROUP BY backend",
                    (self.owner, base, base + count + len(debts)),
                )
            }
            db.execute("DROP TABLE temp.claim_order")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            if fresh:
                db.close()
        return Claim(backlog=backlog, owed=tuple((key, s) for (key, _, _), s in debts.items()))

    def read_spilled(self, backend: str, after: int, limit: int) -> list[Entry]:
        """The next ``limit`` spilled operations of ``backend`` (its key) with a sequence number above ``after``, in
        order (put on disk first). While the journal cannot be written, the newest of them are still in the buffer
        and are taken from there."""
        found: dict[int, Entry] = {}
        if not self.wait_durable():  # the buffer first: what leaves it meanwhile is on disk when the disk is read
            with self._cond:
                for batch in (self._writing, self._inserts):
                    for _, seq, key, sid, parent, kind, payload, _, status, user in batch.values():
                        if status == "spilled" and key == backend and seq > after:
                            session = Session(id=sid, parent_id=parent, user_id=user)
                            found[seq] = Entry(seq=seq, backend=key, session=session, kind=kind, payload=payload)
        if self._reader is None:
            self._reader = _connect(self.path)
        rows = self._reader.execute(
            "SELECT seq, backend, session_id, parent_id, kind, payload, user_id, op_key FROM ops "
            "WHERE owner = ? AND status = 'spilled' AND backend = ? AND seq > ? ORDER BY seq LIMIT ?",
            (self.owner, backend, after, limit),
        ).fetchall()
        entries = [
            Entry(
                seq=seq,
                backend=b,
                session=Session(id=sid, parent_id=p, user_id=u),
                kind=k,
                payload=decode(k, data),
                key=key,
            )
            for seq, b, sid, p, k, data, u, key in rows
            if seq not in found
        ]
        if found:
            entries = sorted([*entries, *found.values()], key=lambda e: e.seq)[:limit]
        return entries

    def close(self, timeout: float) -> bool:
        """Write what is buffered, stop the writer, close the file. False if the writer did not finish in time."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + max(timeout, 0.0)
        self._thread.join(max(timeout, 0.0))
        if self._thread.is_alive() or not self._checkpointer.close(deadline - time.monotonic()):
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


def _prepare(inserts: Iterable[_Row]) -> tuple[list[_Row], list[tuple[_Row, Exception]]]:
    """The rows of a batch as they are written (payloads encoded), and those that cannot be written at all (they
    are checked on the caller's thread when accepted, so this is the last line: one of them must not stop the
    others). On the writer thread."""
    rows, refused = [], []
    for row in inserts:
        try:
            payload = encode(row[5], row[6])
            for value in (row[2], row[3], row[4], payload, row[9]):  # SQLite binds str as UTF-8: no lone surrogate
                if value is not None and not value.isascii():
                    value.encode("utf-8")
        except Exception as exc:
            refused.append((row, exc))
            continue
        rows.append((*row[:6], payload, *row[7:]))
    return rows, refused


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

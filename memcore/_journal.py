"""The journal: a write-ahead outbox of accepted operations (G10), in any :class:`~memcore._journal_store.JournalStore`
(a SQLite file on this host by default: :mod:`memcore._journal_sqlite`).

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

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._journal_sqlite import (
    DEFAULT_FILE,
    SCHEMA_VERSION,
    TABLES,
    JournalError,
    SQLiteJournal,
    _alive,
    _boot_id,
    _migrate,
    _start_ticks,
    live_owners,
)
from ._journal_store import Batch, Claim, Entry, JournalStore, Row, Spilled, decode, encode
from ._records import Session

__all__ = [  # the SQLite names are re-exported for the CLI and tests that know the journal by this module
    "DEFAULT_FILE",
    "SCHEMA_VERSION",
    "TABLES",
    "Claim",
    "Entry",
    "Journal",
    "JournalError",
    "SQLiteJournal",
    "_alive",
    "_boot_id",
    "_migrate",
    "_start_ticks",
    "decode",
    "encode",
    "live_owners",
]

log = logging.getLogger("memcore")

_Row = Row  # buffered: owner, seq, backend, session, parent, kind, payload, created, status, user
_RETRY_FIRST = 0.01  # after a failed write, the writer waits this long before the next attempt, doubling ...
_RETRY_MAX = 0.5  # ... up to this (durability="sync" calls wait for the next attempt's outcome)
_LOG_EVERY = 30.0  # write failures are logged at most this often
#: Acknowledgements and commit debts wait for company: written with the next insert, or once ACK_BATCH are waiting
#: or the oldest waited ACK_DELAY seconds (or at close), not one transaction each. A crash in between replays a
#: delivered operation with its idempotency key, and its session's debt with it (they are written together).
ACK_BATCH = 1000
ACK_DELAY = 0.005
#: A leased store: the share of the lease after the start of the store call that renewed it during which this owner
#: takes the lease for held (the rest is slack for the two clocks' drift). Past it, deliveries wait (fencing).
FENCE_SHARE = 0.8


class Journal:
    """The outbox of one Memory. ``append``/``ack``/``fail`` only touch memory; the writer thread does the I/O, in
    ``store`` (a :class:`JournalStore`; a path is a :class:`SQLiteJournal` there)."""

    def __init__(self, store: JournalStore | str | os.PathLike[str], *, durability: str = "group"):
        if durability not in ("group", "sync"):
            raise ValueError(f"durability must be 'group' or 'sync', not {durability!r}")
        self.store: JournalStore = store if isinstance(store, JournalStore) else SQLiteJournal(store)
        self.name = self.store.name
        self.sync_each = durability == "sync"
        self.owner = f"{time.time_ns():020d}:{socket.gethostname()}:{os.getpid()}"  # sorts by start time
        self.store.register(self.owner, sync=self.sync_each)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # an acknowledgement takes the lock directly: it waits for nothing
        self._inserts: dict[int, tuple[Any, ...]] = {}
        self._acks: list[int] = []
        self._acks_since: float | None = None  # when the oldest acknowledgement or debt not yet written came
        self._fails: list[tuple[str, int]] = []
        # Commit debts to write: (backend key, session id) -> the session, when its delivered writes owe a commit, or
        # None when a commit (or a final failure of one) settled them. The last word on a session wins.
        self._debts: dict[tuple[str, str | None, str], Session | None] = {}
        # The debts this owner has recorded (written, or in the buffer) and not settled since: a session's next
        # delivered write owes nothing new, so it costs the store nothing (a replay delivers 200 writes a session).
        self._owing: set[tuple[str, str | None, str]] = set()
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
        # A store that keeps owners by lease (a database several hosts share) is renewed by the writer, at a third of
        # the lease when idle; when it says gone owners left operations, on_orphans (the Memory's takeover) is told.
        lease = getattr(self.store, "lease", None)
        self._lease: float | None = float(lease) if lease else None
        self._renew_every: float | None = self._lease / 3 if self._lease else None
        self._renew_at = time.monotonic() + (self._renew_every or 0.0)
        self._next_renew_log = 0.0
        # Fencing: until when this owner provably holds its lease (monotonic; a share of the lease after the start
        # of the last store call that renewed it). Past it, the scheduler delivers nothing (:attr:`fenced`) until a
        # renewal and, if the lease may have lapsed meanwhile, on_lapse has dropped what another owner took over.
        self._fencing = self._lease is not None and callable(getattr(self.store, "renew", None))
        self._held_until = time.monotonic() + self._lease * FENCE_SHARE if self._lease and self._fencing else math.inf
        self.on_lapse: Callable[[Callable[[Sequence[int]], set[int]]], int] | None = None
        waits_for = getattr(self.store, "waits_for", None)
        self._waits_for: Callable[[str, str, Session, int], float | None] | None = (
            waits_for if callable(waits_for) else None
        )
        self._backends: list[str] = []  # the backend keys this Memory claims for (set by its first claim)
        self.on_orphans: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._writer, name="memcore-journal", daemon=True)
        self._thread.start()

    # -- buffer (any thread) ---------------------------------------------------------------------------------

    def append(
        self, seq: int, backend: str, session: Session, kind: str, payload: Any, *, spilled: bool = False
    ) -> float:
        """Buffer one accepted operation; returns the time it was accepted (``time.time()``, as the row keeps it).
        ``spilled`` ones are kept only here, not in memory, until :meth:`read_spilled` loads them back (the pending
        bound was reached: G8)."""
        status = "spilled" if spilled else "pending"
        created = time.time()
        row = (
            self.owner,
            seq,
            backend,
            session.id,
            session.parent_id,
            kind,
            payload,
            created,
            status,
            session.user_id,
        )
        with self._cond:
            self._inserts[seq] = row
            self._appended += 1
            self._cond.notify()
        return created

    @property
    def orders_sessions(self) -> bool:
        """Whether the store keeps each session to one writer across owners (``waits_for``)."""
        return self._waits_for is not None

    def waits_for(self, backend: str, session: Session, loaded: int) -> float:
        """The acceptance time of the earliest undelivered operation of ``session`` that this owner must let go
        first (another owner's, or one it took over and has not loaded back yet: its spilled rows above ``loaded``);
        infinity if none (see :class:`JournalStore`). On a lane worker."""
        check = self._waits_for
        found = None if check is None else check(self.owner, backend, session, loaded)
        return math.inf if found is None else float(found)

    def ack(
        self, seq: int, *, owes: tuple[str, Session] | None = None, settles: tuple[str, Session] | None = None
    ) -> None:
        """Operation ``seq`` is done. ``owes``: it was a write or note delivered to a backend that commits, so its
        session (backend key, session) owes a commit from now on; ``settles``: it was that session's commit (or the
        commit failed for good: the failed row is the record then), so the session owes nothing."""
        with self._lock:
            if self._inserts.pop(seq, None) is None:
                self._acks.append(seq)
            elif self._durable < self._appended:
                self._cond.notify()  # an insert acknowledged before it was written: wait_durable learns it settled
            if owes is not None:
                self._debt((owes[0], owes[1].user_id, owes[1].id), owes[1])
            elif settles is not None:
                self._debt((settles[0], settles[1].user_id, settles[1].id), None)
            self._ack_news()

    def _ack_news(self) -> None:
        """(Under the lock.) An acknowledgement or debt came: the writer learns when the first of a batch came (to
        wait at most ACK_DELAY from it), and when a batch is full."""
        if self._acks_since is None:
            self._acks_since = time.monotonic()
            self._cond.notify()
        elif len(self._acks) >= ACK_BATCH:
            self._cond.notify()

    def settle(self, backend: str, session: Session) -> None:
        """A commit of (``backend``, ``session``) failed for good, or the session was forgotten: it owes nothing more
        (see :meth:`ack`)."""
        with self._cond:
            self._debt((backend, session.user_id, session.id), None)
            self._ack_news()

    def erase_failed(self, backend: str, user_id: str | None, session_id: str | None) -> None:
        """A forget of that scope finished: its failed rows (of any owner) leave the journal too, so that nothing of
        it stays on disk nor comes back with ``memcore retry``."""
        with self._cond:
            self._erasures.append((backend, user_id, session_id))
            self._cond.notify()

    def _debt(self, key: tuple[str, str | None, str], session: Session | None) -> None:
        """(Under the lock.) Record the newest word on a debt, after every earlier one: the writer applies them in
        order (a user's forget, session id "", settles all of the user's, so what comes after it must stay after)."""
        if session is not None:
            if key in self._owing:
                return
            self._owing.add(key)
        elif key[2]:
            self._owing.discard(key)
        else:  # a user's forget settles every session of the user
            self._owing = {k for k in self._owing if k[:2] != key[:2]}
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
                while not self._has_work():
                    if self._stopping:
                        return
                    now = time.monotonic()
                    acks_due = self._acks_since + ACK_DELAY - now if self._acks_since is not None else None
                    if self._renew_every is None:
                        self._cond.wait(acks_due)
                        continue
                    left = self._renew_at - now
                    if left <= 0:
                        break
                    self._cond.wait(left if acks_due is None else min(left, acks_due))
                renew = not self._has_work()
            if renew:  # idle: the lease is renewed on its own (a written batch renews it too)
                self._renew()
                continue
            with self._cond:
                if delay:  # new appends join the next attempt; only close cuts the backoff short
                    until = time.monotonic() + delay
                    while not self._stopping and (left := until - time.monotonic()) > 0:
                        self._cond.wait(left)
                last = self._stopping  # an attempt that fails while closing is the last one
                inserts, acks, fails, debts = self._inserts, self._acks, self._fails, self._debts
                self._inserts, self._acks, self._fails, self._debts = {}, [], [], {}
                self._acks_since = None
                erasures, self._erasures = self._erasures, []
                self._writing = inserts
                generation, floor = self._appended, self._durable
            refused: list[tuple[_Row, Exception]] = []
            began = time.monotonic()
            try:
                if inserts or acks or fails or debts or erasures:
                    rows, refused = _prepare(inserts.values())
                    self._write(rows, acks, fails, debts, erasures)
            except Exception as exc:
                with self._cond:  # keep the batch, in order, ahead of what came meanwhile
                    self._inserts = {**inserts, **self._inserts}
                    self._acks, self._fails = acks + self._acks, fails + self._fails
                    self._debts = {**debts, **self._debts}  # what came meanwhile is newer
                    if acks or debts:
                        self._acks_since = min(self._acks_since or began, began)
                    self._erasures = erasures + self._erasures
                    self._writing = {}
                    self._failures += 1
                    self._failed_gen = generation
                    self._write_error = f"the journal {self.name} could not be written: {type(exc).__name__}: {exc}"
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
                    f"{len(refused)} operations could not be written to the journal {self.name} (they are "
                    f"delivered without it; the last: a {row[5]} of session {row[3]!r}: "
                    f"{type(problem).__name__}: {problem})"
                )
                log.error("memcore: %s", refusal)
            if delay:
                log.warning("memcore: the journal %s is written again", self.name)
                delay, next_log = 0.0, 0.0
            if self._renew_every is not None:
                self._renew_at = time.monotonic() + self._renew_every
                self._renewed(began)
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

    def _has_work(self) -> bool:
        """(Under the lock.) Rows to write, or appends acknowledged before they were written (nothing to write, but
        wait_durable must still learn that they are settled)."""
        if self._inserts or self._fails or self._erasures or self._durable < self._appended:
            return True
        if not (self._acks or self._debts):
            return False
        return (
            self._stopping
            or len(self._acks) >= ACK_BATCH
            or (self._acks_since is not None and time.monotonic() >= self._acks_since + ACK_DELAY)
        )

    def _renew(self) -> None:
        """Renew this owner's lease in a store that keeps owners by lease (on the writer thread), and tell
        :attr:`on_orphans` when the store says gone owners left operations of this Memory's backends."""
        self._renew_at = time.monotonic() + (self._renew_every or 0.0)
        renew = getattr(self.store, "renew", None)
        if renew is None:
            return
        began = time.monotonic()
        try:
            orphans = bool(renew(self.owner, self._backends))
        except Exception as exc:
            now = time.monotonic()
            if now >= self._next_renew_log:
                self._next_renew_log = now + _LOG_EVERY
                log.error(
                    "memcore: the lease on the journal %s could not be renewed: %s: %s (logged at most every %g s)",
                    self.name,
                    type(exc).__name__,
                    exc,
                    _LOG_EVERY,
                )
            return
        self._renewed(began)
        callback = self.on_orphans
        if orphans and callback is not None and self._backends:
            try:
                callback()
            except Exception:
                log.exception("memcore: taking over the operations gone owners left in %s failed", self.name)

    # -- fencing (a leased store) ---------------------------------------------------------------------------

    @property
    def fenced(self) -> bool:
        """Whether this owner cannot prove it still holds its lease (a leased store only): its last renewal is older
        than :data:`FENCE_SHARE` of the lease (the host was stopped, cut off, or the database is slow). Another owner
        may take its operations over meanwhile, so the scheduler delivers nothing until a renewal (:meth:`renew_soon`)
        and :attr:`on_lapse` have shown which operations are still this owner's."""
        return time.monotonic() >= self._held_until

    def renew_soon(self) -> None:
        """Ask the writer to renew the lease now (a delivery found the owner fenced)."""
        with self._cond:
            self._renew_at = 0.0
            self._cond.notify()

    def _renewed(self, began: float) -> None:
        """(Writer thread.) A store call that started at ``began`` renewed the lease. If this owner was fenced when it
        started, the lease may have lapsed and been taken over before it was renewed: :attr:`on_lapse` drops what is
        no longer this owner's before deliveries resume."""
        if not self._fencing or self._lease is None:
            return
        if began >= self._held_until and self.on_lapse is not None:
            try:
                taken = self.on_lapse(self._still_held)
            except Exception as exc:  # stay fenced: the next renewal checks again
                log.error(
                    "memcore: after its lease on %s lapsed, this owner could not tell what it still holds: %s: "
                    "%s (deliveries wait for the next renewal)",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
                return
            if taken:
                log.warning(
                    "memcore: the lease on %s had lapsed and another owner took over %d operations of this one: "
                    "it delivers them, this one does not",
                    self.name,
                    taken,
                )
        self._held_until = began + self._lease * FENCE_SHARE

    def _still_held(self, seqs: Sequence[int]) -> set[int]:
        """Which of ``seqs`` are still this owner's: the ones not on disk yet (no other owner could see them), and those
        the store says it still holds. A store without ``held`` is taken at its word that nothing was taken."""
        with self._cond:
            unwritten = {seq for seq in seqs if seq in self._inserts or seq in self._writing}
        written = [seq for seq in seqs if seq not in unwritten]
        held = getattr(self.store, "held", None)
        if held is None or not written:
            return set(seqs)
        return unwritten | set(held(self.owner, written))

    def _write(
        self,
        rows: list[Row],
        acks: list[int],
        fails: list[tuple[str, int]],
        debts: Mapping[tuple[str, str | None, str], Session | None] | None = None,
        erasures: Iterable[tuple[str, str | None, str | None]] = (),
    ) -> None:
        """One batch, in one transaction of the store (on the writer thread)."""
        batch = Batch(rows=rows, acks=acks, fails=fails, debts=dict(debts or {}), erasures=list(erasures))
        self.store.write(self.owner, batch)

    # -- start and stop --------------------------------------------------------------------------------------

    def claim(self, backends: Iterable[str], first_seq: int | Callable[[int], int], *, fresh: bool = False) -> Claim:
        """Take over, for the named backends, the pending rows of owners that are gone (and rows ``memcore retry``
        re-queued) and their commit debts, in one transaction: they become this owner's *spilled* rows, renumbered
        from ``first_seq`` (or from what ``first_seq(n)`` reserves) in their original order, so that the scheduler
        loads them back a bounded batch at a time (G8) however many there are. A session that owed a commit and has
        no commit among those rows gets one, after them: it is committed once (:meth:`JournalStore.claim`).
        ``fresh``: on a connection of its own, for a claim while the writer runs."""
        self._backends = names = list(backends)
        return self.store.claim(self.owner, names, first_seq, fresh=fresh)

    def read_spilled(self, backend: str, after: int, limit: int) -> Sequence[Spilled]:
        """The next ``limit`` spilled operations of ``backend`` (its key) with a sequence number above ``after``, in
        order (put on disk first). While the journal cannot be written, the newest of them are still in the buffer
        and are taken from there."""
        found: dict[int, Spilled] = {}
        if not self.wait_durable():  # the buffer first: what leaves it meanwhile is on disk when the disk is read
            with self._cond:
                for batch in (self._writing, self._inserts):
                    for _, seq, key, sid, parent, kind, payload, created, status, user in batch.values():
                        if status == "spilled" and key == backend and seq > after:
                            session = Session(id=sid, parent_id=parent, user_id=user)
                            found[seq] = Spilled(seq, session, kind, payload, created=created)
        entries = self.store.read_spilled(self.owner, backend, after, limit)
        if found:
            on_disk = [e for e in entries if e.seq not in found]
            return sorted([*on_disk, *found.values()], key=lambda e: e.seq)[:limit]
        return entries

    def close(self, timeout: float) -> bool:
        """Write what is buffered, stop the writer, close the file. False if the writer did not finish in time."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + max(timeout, 0.0)
        self._thread.join(max(timeout, 0.0))
        if self._thread.is_alive() or not self.store.close(self.owner, deadline - time.monotonic()):
            return False
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

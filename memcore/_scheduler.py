"""The scheduler: admission, delivery and the journal's bookkeeping, put together from its parts.

- :mod:`memcore._lanes`: per (backend, session) FIFOs and their epochs: order (G2), drain before commit (G3), one
  commit per change (G4). Pure bookkeeping.
- :mod:`memcore._pending`: the bound on pending work per backend and in total, and the spill to the journal (G8).
- :mod:`memcore._pool`: the lane workers, backends' shares, backoffs and stalled calls (G8 threads, G9).
- :mod:`memcore._recall_pool`: recall's own workers, a queue per backend (G5, G9).
- :mod:`memcore._journal`: what is accepted stays on disk until delivered (G10).

This module admits operations (cheap: the caller's thread), runs each on a lane worker, retries transient failures
after a backoff at the head of their lane, and reports. One lock guards lanes, bound and pool; no backend code runs
under it.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._errors import MemoryClosed, PendingLimitExceeded, TransientError
from ._forget import CANNOT_FORGET, Forgetting
from ._journal import Claim, Journal
from ._journal_store import Spilled
from ._lanes import COMMIT, FORGET, NOTE, REWIND, WRITE, Lane, Lanes, Op
from ._pending import PendingBound
from ._plugins import Backend, Observers
from ._pool import Job, Settle, WorkerPool
from ._recall_pool import RecallPool
from ._records import Event, Failure, Gauge, Report, Session
from ._retry import RetryPolicy, is_transient

__all__ = ["COMMIT", "FORGET", "NOTE", "WRITE", "Scheduler"]

log = logging.getLogger("memcore")

#: What an operation that succeeded is counted and announced as.
_DONE = {COMMIT: "committed", FORGET: "forgotten", REWIND: "rewound"}
#: How many final failures a Report keeps (the count in ``Report.failed`` is exact).
FAILURES_KEPT = 100
#: An answer to "must this lane wait for another host?" also clears the lane's operations accepted this many seconds
#: before it was asked: another host's row accepted before then is on the database by then (its group commit).
ORDER_MARGIN = 0.1
FENCE_POLL = 0.05  #: seconds between two looks at a fenced journal (its lease not provably held) before a delivery
#: A backend's failures are logged as warnings at most once per this many seconds (the Report counts every one).
WARN_EVERY = 30.0
RELOAD_CHUNK = 64  #: reloaded operations put into their lanes per hold of the lock


class Scheduler:
    def __init__(
        self,
        *,
        backends: tuple[Backend, ...],
        workers: int,
        recall_workers: int,
        max_pending: int,
        observers: Observers,
        retry: RetryPolicy,
        journal: Journal | None = None,
        per_backend_workers: int | None = None,
        max_pending_per_backend: int | None = None,
        stall_after: float | None = 2.0,
        max_stalled: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        commit_after_turns: int | None = None,
        commit_after_idle: float | None = None,
    ):
        if workers < 1 or recall_workers < 1:
            raise ValueError("workers and recall_workers must be at least 1")
        share = per_backend_workers or math.ceil(workers / len(backends))
        if share < 1:
            raise ValueError("per_backend_workers must be at least 1")
        if stall_after is not None and stall_after <= 0:
            raise ValueError("stall_after must be positive (or None: never)")
        if max_stalled is not None and max_stalled < 0:
            raise ValueError("max_stalled must be at least 0")
        if commit_after_turns is not None and (
            not isinstance(commit_after_turns, int) or isinstance(commit_after_turns, bool) or commit_after_turns < 1
        ):
            raise ValueError(f"commit_after_turns must be a positive integer or None, not {commit_after_turns!r}")
        if commit_after_idle is not None and not (
            isinstance(commit_after_idle, (int, float))
            and not isinstance(commit_after_idle, bool)
            and commit_after_idle > 0
        ):
            raise ValueError(
                f"commit_after_idle must be a positive number of seconds or None, not {commit_after_idle!r}"
            )
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # lane workers wait on it
        self._progress = threading.Condition(self._lock)  # flush and close wait on it
        self._backends = backends
        self._by_key = {b.key: b for b in backends}
        self._lanes = Lanes()
        self._bound = PendingBound(len(backends), total=max_pending, per_backend=max_pending_per_backend)
        self._seq = itertools.count(1)
        self._waiters = 0
        # What a flush waits for next: a lane and the count of finished operations it waits for (the least, with
        # several waiting). A lane's progress wakes the waiters only once it reaches that count.
        self._watch: dict[Lane, int] = {}
        self._counts = collections.Counter[str]()
        self._next_turn_log = 0.0  # a session-order check that failed is logged at most every WARN_EVERY seconds
        self._accepted = [0] * len(backends)  # operations accepted per backend (gauges)
        self._failures: collections.deque[Failure] = collections.deque(maxlen=FAILURES_KEPT)
        self._observers = observers
        self._warned: dict[str, tuple[float, int]] = {}
        self._retry = retry
        self._journal = journal
        self._clock = clock
        self._rng = rng or random.Random()
        self._closed = False
        self._stopping = False
        self._on_quiet: Callable[[], None] | None = None
        # Idempotency keys: ``origin:seq``, the same on every retry and (kept in the journal) every replay. The origin
        # is the journal's owner id (start time, host, pid: unique), or without a journal one made up the same way.
        self._origin = journal.owner if journal is not None else f"{time.time_ns():020d}:{id(self):x}:nojournal"
        # Forgets (issue 13). A user's forget runs in that user's forget lane (session id ""), once no call of the
        # user's lanes on that backend is in flight; meanwhile those lanes are held: what they get waits for it.
        self._forgets: dict[int, Forgetting] = {}  # by sequence number: the handle a forget's answer goes to
        self._holds: dict[tuple[int, str | None], list[Lane]] = {}  # (backend, user) -> the lanes held back
        self._forget_ready: set[tuple[int, str | None]] = set()  # ... whose forget lane the pool has
        # Commit policies (sessions that never end): a commit after this many writes since the last one, or once a
        # dirty session has had no write for this long. The idle ones wait in order of their last write: the oldest
        # first, so one pool timer (no thread) for the oldest is enough.
        self._after_turns = commit_after_turns
        self._after_idle = commit_after_idle
        self._last_write: collections.OrderedDict[Lane, float] = collections.OrderedDict()
        self._idle_timer = False
        self.recall = RecallPool(backends=len(backends), workers=recall_workers)
        self._pool = WorkerPool(
            cond=self._work,
            lock=self._lock,
            backends=len(backends),
            workers=workers,
            share=min(share, workers),
            limits=[b.concurrency for b in backends],
            stall_after=stall_after,
            max_stalled=workers if max_stalled is None else max_stalled,
            clock=clock,
            run=self._run,
        )

    # -- admission (caller threads; must stay cheap) -------------------------------------------------------------

    def submit(self, backends: tuple[Backend, ...], session: Session, kind: str, payload: Any) -> None:
        """Append one operation to the lane of ``session`` on each of ``backends``, all or nothing. A turn longer
        than a backend's ``max_write_messages`` becomes several operations of that size, so a retry resends only the
        part that failed."""
        journal = self._journal
        with self._lock:
            if self._closed:
                raise MemoryClosed("this Memory is closed; it accepts no new writes")
            bound = self._bound
            if journal is None:  # all or nothing: refuse before anything is counted
                for b in backends:
                    if bound.must_spill(b.index, _parts(b, kind, payload)):
                        raise PendingLimitExceeded(
                            f"{bound.total} operations are pending (max_pending={bound.total_cap}, "
                            f"{bound.cap} per backend); nothing was accepted"
                        )
            now = time.monotonic()
            for backend in backends:
                lane = self._lanes.get(backend, session)
                pieces = _split(backend, kind, payload) if backend.max_write is not None else (payload,)
                self._accepted[backend.index] += len(pieces)
                spill = journal is not None and bound.must_spill(backend.index, len(pieces))
                for piece in pieces:
                    seq = next(self._seq)
                    created = journal.append(seq, backend.key, session, kind, piece, spilled=spill) if journal else 0.0
                    lane.written += 1
                    if spill:
                        self._spill(backend.index, seq)
                    else:
                        lane.in_memory = lane.written
                        self._append(lane, Op(kind, piece, lane.written, seq, None, now, created))
                if backend.commits and (self._after_turns is not None or self._after_idle is not None):
                    self._commit_policies(lane)

    def _commit_policies(self, lane: Lane) -> None:
        """(Under the lock, after a write.) ``commit_after_turns``: commit once that many writes are uncommitted;
        ``commit_after_idle``: note the write's time, for the idle commit."""
        if (
            self._after_turns is not None
            and lane.written - max(lane.committed, lane.commit_covers) >= self._after_turns
        ):
            self._queue_commit(lane)
        if self._after_idle is not None:
            self._last_write[lane] = self._clock()
            self._last_write.move_to_end(lane)
            if not self._idle_timer:
                self._idle_timer = True
                self._pool.timer(self._clock() + self._after_idle, self._idle_commits)

    def _idle_commits(self) -> None:
        """(On a worker, from the pool's timer.) Commit the dirty sessions that have had no write for
        ``commit_after_idle`` seconds; wake again for the next one."""
        assert self._after_idle is not None
        with self._lock:
            now = self._clock()
            while self._last_write:
                lane, last = next(iter(self._last_write.items()))
                if last + self._after_idle > now:
                    self._pool.timer(last + self._after_idle, self._idle_commits)
                    return
                del self._last_write[lane]
                if (
                    not self._closed
                    and Lanes.wants_commit(lane)
                    and self._lanes.find(lane.backend, lane.session.id, lane.session.user_id) is lane
                ):
                    self._queue_commit(lane)
            self._idle_timer = False

    def wake(self) -> None:
        """Have the workers look at the clock again (tests that move a controllable clock call it)."""
        with self._lock:
            self._pool.wake()

    def request_commit(self, backends: Iterable[Backend], session: Session) -> int:
        """Queue a commit of ``session`` on each backend where it is dirty and not already covered (G4).
        Returns how many commits were queued. After close this does nothing: close committed every dirty lane."""
        queued = 0
        with self._lock:
            if self._closed:
                return 0
            for backend in backends:
                lane = self._lanes.find(backend, session.id, session.user_id)
                if lane is not None and Lanes.wants_commit(lane):
                    self._queue_commit(lane)
                    queued += 1
        return queued

    def _queue_commit(self, lane: Lane) -> None:
        i = lane.backend.index
        self._accepted[i] += 1
        seq = next(self._seq)
        spill = self._journal is not None and self._bound.must_spill(i)  # behind spilled writes: spilled too
        created = 0.0
        if self._journal is not None:
            created = self._journal.append(seq, lane.backend.key, lane.session, COMMIT, None, spilled=spill)
        op = Lanes.accept_commit(lane, seq, created)
        if spill:
            lane.spilled_commits += 1
            self._spill(i, seq)
        else:
            self._append(lane, op)

    def _append(self, lane: Lane, op: Op) -> None:
        lane.ops.append(op)
        lane.added += 1
        bound = self._bound
        bound.pending[lane.backend.index] += 1  # bound.held(), inline: this is sync_turn's path
        bound.total += 1
        if not lane.scheduled:
            lane.scheduled = True
            if not (self._holds and self._held(lane)):
                self._pool.ready(lane)

    def _held(self, lane: Lane) -> bool:
        """(Under the lock.) Hold ``lane`` back if a forget of its user waits on its backend; True if held."""
        held = self._holds.get((lane.backend.index, lane.session.user_id))
        if held is None or lane.session.id == "":
            return False
        held.append(lane)
        return True

    # -- rewind ------------------------------------------------------------------------------------------------------

    def rewind(self, backends: tuple[Backend, ...], session: Session, turns: int) -> None:
        """Undo the last ``turns`` turns of ``session`` on each backend: those not yet delivered are dropped here (and
        from the journal); for the rest, a rewind operation asks the backend to remove them (``memcore_rewind``),
        ordered after what is in flight. Journaled like any operation."""
        journal = self._journal
        with self._lock:
            if self._closed:
                raise MemoryClosed("this Memory is closed; it accepts no new work")
            for backend in backends:
                seq = next(self._seq)
                spill = journal is not None and self._bound.must_spill(backend.index)
                created = 0.0
                if journal is not None:  # the turns to undo in all; the ones dropped at entry are not sent
                    created = journal.append(seq, backend.key, session, REWIND, turns, spilled=spill)
                if spill:  # the latest turns are spilled too: they are in memory when the rewind is loaded
                    self._spill(backend.index, seq)
                else:
                    self._enter_rewind(backend, session, seq, turns, created)

    def _enter_rewind(self, backend: Backend, session: Session, seq: int, turns: int, created: float = 0.0) -> None:
        """(Under the lock.) Drop what of the last ``turns`` turns is queued, and queue a rewind of the rest for a
        backend that can remove them."""
        lane = self._lanes.get(backend, session)
        dropped = Lanes.undo(lane, turns)
        for op in dropped:
            self._bound.released(backend.index)
            self._journal_ack(op.seq)
        if dropped and self._watch:
            self._progressed(lane)
        left = turns - len(dropped)
        if left > 0 and "rewind" in backend.capabilities:
            self._accepted[backend.index] += 1
            self._append(lane, Op(REWIND, left, lane.written, seq, None, time.monotonic(), created))
        else:
            self._journal_ack(seq)
            if not lane.ops and not lane.scheduled:
                self._lanes.retire_if_clean(lane)

    # -- forget ------------------------------------------------------------------------------------------------------

    def forget(self, backends: tuple[Backend, ...], user_id: str | None, session_id: str | None) -> Forgetting:
        """Queue a forget of user ``user_id``'s session ``session_id`` (every session of the user when None) on each
        backend: behind what of that scope is in flight, ahead of anything accepted after it; what of that scope is
        queued and not yet delivered is dropped (and leaves the journal). Journaled like any operation."""
        handle = Forgetting(user_id, session_id, len(backends))
        session = Session(id=session_id or "", user_id=user_id)
        journal = self._journal
        with self._lock:
            if self._closed:
                raise MemoryClosed("this Memory is closed; it accepts no new work")
            for backend in backends:
                seq = next(self._seq)
                spill = journal is not None and self._bound.must_spill(backend.index)
                created = 0.0
                if journal is not None:
                    created = journal.append(seq, backend.key, session, FORGET, None, spilled=spill)
                self._forgets[seq] = handle
                if spill:  # behind what is spilled of that backend: it is dropped when the forget is loaded
                    self._spill(backend.index, seq)
                else:
                    self._enter_forget(backend, session, seq, created)
        return handle

    def _enter_forget(self, backend: Backend, session: Session, seq: int, created: float = 0.0) -> None:
        """(Under the lock.) Put a forget in its lane, dropping what of its scope is queued, as it enters memory
        (accepted, loaded back from a spill, or taken over at start)."""
        user = session.user_id
        scope = [self._lanes.get(backend, session)] if session.id else self._lanes.of_user(backend, user)
        handle = self._forgets.get(seq)
        held = self._holds.setdefault((backend.index, user), []) if not session.id else None
        for lane in scope:
            dropped = Lanes.drop(lane)
            if not dropped:
                continue
            if not self._pool.is_running(lane):
                self._pool.withdraw(lane)
                lane.scheduled = False
                if lane.ops and held is not None and lane.session.id:  # a session's forget: after the user's
                    lane.scheduled = True
                    held.append(lane)
                elif lane.ops:
                    lane.scheduled = True
                    self._pool.ready(lane)
            for op in dropped:  # (no event: observers are never called under the lock; the handle counts them)
                self._bound.released(backend.index)
                self._journal_ack(op.seq)
                if handle is not None:
                    handle.dropped += 1
            if self._watch:
                self._progressed(lane)
        lane = self._lanes.get(backend, session)  # for a user: the forget lane
        self._accepted[lane.backend.index] += 1
        op = Op(FORGET, None, lane.written, seq, None, time.monotonic(), created if session.id else 0.0)
        if session.id:
            self._append(lane, op)
            return
        lane.ops.append(op)
        lane.added += 1
        self._bound.held(backend.index)
        if not lane.scheduled:
            lane.scheduled = True
            self._start_forget_when_quiet(lane)

    def _start_forget_when_quiet(self, forget_lane: Lane) -> None:
        """(Under the lock.) Give a user's forget lane to the pool once no call of that user's other lanes on its
        backend is in flight; until then it waits outside the pool, scheduled but not ready."""
        backend, user = forget_lane.backend, forget_lane.session.user_id
        if (backend.index, user) in self._forget_ready:
            return
        if any(self._pool.is_running(lane) for lane in self._lanes.of_user(backend, user) if lane is not forget_lane):
            return  # looked at again when that call returns (_finish)
        self._forget_ready.add((backend.index, user))
        self._pool.ready(forget_lane)

    def _forget_ended(self, lane: Lane) -> None:
        """(Under the lock.) A user's forget lane finished an operation: the next forget runs at once (the user's
        lanes are held, none in flight); with none left, the lanes held back are released."""
        if lane.ops:
            self._pool.ready(lane)
            return
        lane.scheduled = False
        self._forget_ready.discard((lane.backend.index, lane.session.user_id))
        for held in self._holds.pop((lane.backend.index, lane.session.user_id), []):
            if held.ops:
                self._pool.ready(held)
            else:
                held.scheduled = False
        self._lanes.retire_if_clean(lane)

    def _spill(self, i: int, seq: int) -> None:
        self._bound.spill(i, seq)
        self._start_reloads()

    def _start_reloads(self) -> None:
        """Hand a reload of spilled operations to a lane worker for each backend that has room for them."""
        bound = self._bound
        for i in range(len(self._backends)):
            if bound.reload_due(i):
                bound.reloading[i] = True
                self._pool.chore(functools.partial(self._reload, i))

    def _load_entries(self, i: int, entries: Sequence[Spilled], replayed: list[Spilled]) -> None:
        """(Under the lock.) Put reloaded ``entries`` of backend ``i`` into their lanes, in order; those taken over
        at start are added to ``replayed``."""
        assert self._journal is not None
        backend = self._backends[i]
        bound = self._bound
        for entry in entries:
            bound.loaded(i, entry.seq)
            if entry.kind == REWIND:
                self._enter_rewind(backend, entry.session, entry.seq, entry.payload, entry.created)
                continue
            if entry.kind == FORGET:
                self._enter_forget(backend, entry.session, entry.seq, entry.created)
                if entry.seq <= bound.replayed_up_to[i]:
                    replayed.append(entry)
                continue
            lane = self._lanes.get(backend, entry.session)
            if entry.seq <= bound.replayed_up_to[i]:
                op = Lanes.replayed(lane, entry.kind, entry.payload, entry.seq, entry.key, entry.created)
                replayed.append(entry)
                if op is None:
                    self._journal.ack(entry.seq)  # a second commit in a row covers nothing new
                    continue
                if self._journal.orders_sessions and Lanes.insert_in_order(lane, op):
                    lane.added += 1
                    bound.held(i)
                    continue
            else:
                op = Lanes.loaded(lane, entry.kind, entry.payload, entry.seq, entry.key, entry.created)
            self._append(lane, op)

    def _reload(self, i: int) -> None:
        """Load backend ``i``'s spilled operations back into their lanes, in order (on a lane worker, off the lock).
        Those taken over at start (:meth:`adopt`) count in their lanes as they are loaded."""
        assert self._journal is not None
        backend = self._backends[i]
        try:
            with self._lock:
                room = self._bound.room(i)
                after = self._bound.loaded_up_to[i]
            entries = self._journal.read_spilled(backend.key, after, room)
        except Exception:
            log.exception("memcore: spilled operations could not be read back from the journal")
            entries = []
        replayed: list[Spilled] = []
        # Into their lanes RELOAD_CHUNK at a time: one hold of the lock for a whole reload (up to half the bound)
        # kept the lane workers waiting on it, and they, once woken, on the GIL.
        last = (len(entries) - 1) // RELOAD_CHUNK * RELOAD_CHUNK if entries else 0  # where the last chunk starts
        for start in range(0, last, RELOAD_CHUNK):
            with self._lock:
                self._load_entries(i, entries[start : start + RELOAD_CHUNK], replayed)
        with self._lock:
            bound = self._bound
            self._load_entries(i, entries[last:], replayed)
            if not entries and bound.spilled[i]:
                log.error("memcore: %d spilled operations of %s were not found in the journal", bound.spilled[i], i)
                bound.spilled[i] = 0
            if replayed and self._closed and bound.loaded_up_to[i] >= bound.replayed_up_to[i] and backend.commits:
                # Closing, and the last of what was taken over is loaded: close commits the sessions it made dirty
                # (it could not when it started: they were not in memory yet).
                for lane in self._lanes:
                    if lane.backend is backend and Lanes.wants_commit(lane):
                        self._queue_commit(lane)
            bound.reloading[i] = False
            self._start_reloads()
            if self._waiters:
                self._progress.notify_all()
        if self._observers:
            for entry in replayed:
                self._observers.emit(
                    Event(
                        kind="replayed",
                        backend=backend.name,
                        operation=entry.kind,
                        session_id=entry.session.id or None,
                        user_id=entry.session.user_id,
                    )
                )

    def adopt(self, claim: Claim) -> int:
        """Take over what :meth:`Journal.claim` found (left by a Memory that is gone): its operations stay in the
        journal, counted as spilled, and are loaded back in order as lanes drain; a session that owed a commit gets
        one after its operations (observers hear ``owes_commit``). Returns how many operations."""
        with self._lock:
            for key, (count, high) in claim.backlog.items():
                self._bound.backlog(self._by_key[key].index, count, high)
            self._counts["replayed"] += claim.total
            self._start_reloads()
        if self._observers:
            for key, session in claim.owed:
                self._observers.emit(
                    Event(
                        kind="owes_commit",
                        backend=self._by_key[key].name,
                        operation=COMMIT,
                        session_id=session.id,
                        user_id=session.user_id,
                    )
                )
        return claim.total

    def chore(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the next free lane worker (a takeover the journal's writer asks for: off its thread)."""
        with self._lock:
            if not self._closed:
                self._pool.chore(job)

    def reserve(self, n: int) -> int:
        """Reserve ``n`` sequence numbers (for journal rows claimed from another owner); the first of them."""
        with self._lock:
            first = next(self._seq)
            self._seq = itertools.count(first + n)
            return first

    def when_quiet(self, callback: Callable[[], None]) -> bool:
        """Once stopped: call ``callback`` (on a worker) when the last call still in flight has returned. False, and
        no call, if none is in flight now."""
        with self._lock:
            if not self._pool.running:
                return False
            self._on_quiet = callback
            return True

    def _quiet(self) -> None:
        """(Off the lock.) After a call returned while stopping: the when_quiet callback, if that was the last one."""
        with self._lock:
            callback = self._on_quiet if not self._pool.running else None
            self._on_quiet = None if callback else self._on_quiet
        if callback is not None:
            callback()

    # -- running an operation (lane workers) -----------------------------------------------------------------------

    def _run(self, lane: Lane, op: Op) -> Settle | None:
        """(A lane worker, off the lock.) Run ``op``; what is left to do under the lock once it returned (see
        :meth:`_settle`), which the worker does in the same hold of the lock in which it picks its next job."""
        journal = self._journal
        if journal is not None and journal.fenced:
            self._fence(lane, op, journal)
            return None
        if journal is not None and op.created and journal.orders_sessions and not self._my_turn(lane, op, journal):
            return None
        if op.kind == FORGET:
            error, kept = self._execute_forget(lane)
            return self._finish(lane, op, error, kept)
        return self._finish(lane, op, self._execute(lane, op))

    def _execute_forget(self, lane: Lane) -> tuple[BaseException | None, str | None]:
        backend = lane.backend
        if "forget" not in backend.capabilities:
            return None, CANNOT_FORGET
        try:
            kept = backend.call("memcore_forget", user_id=lane.session.user_id, session_id=lane.session.id or None)
        except Exception as exc:
            return exc, None
        return None, kept if isinstance(kept, str) and kept else None

    def _execute(self, lane: Lane, op: Op) -> BaseException | None:
        backend = lane.backend
        try:
            if not lane.opened:
                backend.call("memcore_open_session", session=lane.session)
                lane.opened = True
            key = op.key or f"{self._origin}:{op.seq}"
            attempt = lane.attempts + (2 if op.key is not None else 1)  # taken over: it may have been sent before
            if op.kind == REWIND:
                backend.call("memcore_rewind", session=lane.session, turns=op.payload)
            elif op.kind == COMMIT:
                backend.call("memcore_commit", session=lane.session, key=key, attempt=attempt)
            elif op.kind == WRITE:
                backend.call("memcore_write", session=lane.session, key=key, attempt=attempt, messages=op.payload)
            else:
                backend.call("memcore_remember", session=lane.session, key=key, attempt=attempt, note=op.payload)
        except Exception as exc:
            return exc
        return None

    def _finish(self, lane: Lane, op: Op, error: BaseException | None, kept: str | None = None) -> Settle | None:
        """``op`` returned (``error`` None) or failed: retried later, or reported and acknowledged in the journal;
        the lane's bookkeeping is handed back, to be done under the lock."""
        if error is not None and is_transient(error) and self._retry_later(lane, op, error):
            return None
        failure = None
        if error is not None:
            failure = Failure(
                backend=lane.backend.name,
                operation=op.kind,
                session_id=lane.session.id or None,
                error=repr(error),
                user_id=lane.session.user_id,
            )
            self._warn(failure)
        if self._observers:
            self._emit("failed" if failure else _DONE.get(op.kind, "delivered"), lane, op.kind, failure)
        journal = self._journal
        if journal is not None:
            key = lane.backend.key
            if failure is not None:
                journal.fail(op.seq, failure.error)
                if op.kind == COMMIT:  # the failed row is the record now; `memcore retry` sends it again
                    journal.settle(key, lane.session)
            elif op.kind == FORGET:  # nothing of the scope is left to commit, nor on disk
                journal.ack(op.seq, settles=(key, lane.session))
                journal.erase_failed(key, lane.session.user_id, lane.session.id or None)
            elif not lane.backend.commits:
                journal.ack(op.seq)
            elif op.kind == COMMIT:
                journal.ack(op.seq, settles=(key, lane.session))
            else:  # delivered and not committed: the journal keeps the debt across a crash
                journal.ack(op.seq, owes=(key, lane.session))
        return functools.partial(self._settle, lane, op, failure, kept)

    def _settle(self, lane: Lane, op: Op, failure: Failure | None, kept: str | None) -> Job | None:
        """(Under the lock, in the hold in which the worker picks its next job: one hold per operation, not two.)
        ``op`` finished: the lane, the pending bound and the counts learn it, the lane is ready again if it holds
        more, flushes waiting for it are woken. Returns what to run off the lock after (closing: the quiet check)."""
        self._pool.call_ended(lane)
        Lanes.finish(lane, op, failed=failure is not None)
        self._bound.released(lane.backend.index)
        if failure is not None:
            self._counts["failed"] += 1
            self._failures.append(failure)
        else:
            self._counts[_DONE.get(op.kind, "delivered")] += 1
        if op.kind == FORGET:
            if failure is None:  # the service no longer has the sessions: the next write opens them again
                self._lanes.forgotten(lane.backend, lane.session)
            handle = self._forgets.pop(op.seq, None)
            if handle is not None:
                handle._answered(lane.backend.name, kept, failure)
        if lane.session.id == "":  # a user's forget lane
            self._forget_ended(lane)
        elif lane.ops:
            if not (self._holds and self._held(lane)):
                self._pool.ready(lane)
        else:
            lane.scheduled = False
            self._lanes.retire_if_clean(lane)
        if self._holds:  # a user's forget may wait for this call
            forget_lane = self._lanes.find(lane.backend, "", lane.session.user_id)
            if forget_lane is not None and forget_lane.ops and forget_lane is not lane:
                self._start_forget_when_quiet(forget_lane)
        if any(self._bound.spilled):
            self._start_reloads()
        if self._watch:
            self._progressed(lane)
        return self._quiet if self._stopping else None

    def _fence(self, lane: Lane, op: Op, journal: Journal) -> None:
        """The journal's lease is not provably held (this host was stopped or cut off past most of it): another host
        may be taking ``op`` over, so it is put back untried, and looked at again after :data:`FENCE_POLL`, once the
        journal renewed the lease and :meth:`disown` dropped what was taken over."""
        journal.renew_soon()
        self._put_back(lane, op)

    def _put_back(self, lane: Lane, op: Op) -> None:
        """``op`` was not tried: back at the head of its lane, to run after :data:`FENCE_POLL` (not an attempt: its
        retry deadline does not run). Closing: it stays pending, in the journal."""
        with self._lock:
            lane.ops.appendleft(op)
            self._pool.call_ended(lane)
            stopping = self._stopping
            if not stopping:
                self._pool.backoff(lane, self._clock() + FENCE_POLL, op.seq)
        if stopping:
            self._quiet()

    def _my_turn(self, lane: Lane, op: Op, journal: Journal) -> bool:
        """A journal several hosts share keeps each session to one writer: while another host holds an earlier
        operation of ``lane``'s session still undelivered (the conversation moved here from it), ``op`` is put back
        untried and asked about again after :data:`FENCE_POLL`. False then. A check that fails (the database cannot
        be reached) waits the same way: the order cannot be shown. An answer that lets ``op`` go also lets go, without
        asking again, the lane's operations accepted before both the earliest operation it must wait for and the
        question (less :data:`ORDER_MARGIN`): another host's later turn is accepted after them."""
        if op.created < lane.clear_until:
            return True
        asked = time.time()
        try:
            with self._lock:
                loaded = self._bound.loaded_up_to[lane.backend.index]
            earliest = journal.waits_for(lane.backend.key, lane.session, loaded)
        except Exception as exc:
            now = time.monotonic()
            if now >= self._next_turn_log:
                self._next_turn_log = now + WARN_EVERY
                log.error(
                    "memcore: whether another host still writes session %r could not be checked in %s: %s: %s "
                    "(its operations wait; logged at most every %g s)",
                    lane.session.id,
                    journal.name,
                    type(exc).__name__,
                    exc,
                    WARN_EVERY,
                )
            earliest = -math.inf
        if op.created <= earliest:
            lane.clear_until = min(earliest, asked - ORDER_MARGIN)
            return True
        self._put_back(lane, op)
        return False

    def disown(self, still_held: Callable[[Sequence[int]], set[int]]) -> int:
        """After this owner's lease on a shared journal lapsed: drop from memory the queued operations that another
        owner took over meanwhile (``still_held`` says which are still this one's; it may query the database, so it
        runs off the lock). That owner delivers them and commits their sessions. A call already in flight is left to
        return (it was sent before the lapse was known: a backend that takes idempotency keys keeps one copy).
        Returns how many were dropped; :attr:`Report.taken_over` counts them."""
        with self._lock:
            queued = [op.seq for lane in self._lanes for op in lane.ops]
        taken = set(queued) - still_held(queued) if queued else set()
        if not taken:
            return 0
        dropped = 0
        with self._lock:
            for lane in self._lanes:
                gone = [op for op in lane.ops if op.seq in taken]
                if not gone:
                    continue
                Lanes.disown(lane, gone)
                if not lane.ops and not self._pool.is_running(lane):
                    self._pool.withdraw(lane)
                    lane.scheduled = False
                    self._lanes.retire_if_clean(lane)
                for _ in gone:
                    self._bound.released(lane.backend.index)
                dropped += len(gone)
            self._counts["taken_over"] += dropped
            if self._waiters:
                self._progress.notify_all()
        return dropped

    def _retry_later(self, lane: Lane, op: Op, error: BaseException) -> bool:
        """Put ``op`` back at the head of its lane to run after a backoff; False if its deadline is spent."""
        retry_after = error.retry_after if isinstance(error, TransientError) else None
        with self._lock:
            attempt = lane.attempts + 1
            due = self._clock() + self._retry.delay(attempt, retry_after, self._rng)
            stopping = self._stopping
            if stopping:  # closing: leave it pending (in the journal, if there is one)
                lane.ops.appendleft(op)
                self._pool.call_ended(lane)
            elif due > lane.first_try + self._retry.deadline:
                return False
            else:
                lane.attempts = attempt
                lane.ops.appendleft(op)
                self._pool.call_ended(lane)
                self._pool.backoff(lane, due, op.seq)
                self._counts["retried"] += 1
        if stopping:
            self._quiet()
        else:
            self._emit("retried", lane, op.kind, None, repr(error))
        return True

    def _journal_ack(self, seq: int) -> None:
        if self._journal is not None:
            self._journal.ack(seq)

    def _emit(self, kind: str, lane: Lane, operation: str, failure: Failure | None, error: str | None = None) -> None:
        # Before the operation counts as finished, so flush() returns after observers heard.
        if self._observers:
            self._observers.emit(
                Event(
                    kind=kind,
                    backend=lane.backend.name,
                    operation=operation,
                    session_id=lane.session.id or None,
                    error=failure.error if failure else error,
                    user_id=lane.session.user_id,
                )
            )

    def _warn(self, failure: Failure) -> None:
        """Log a failure as a warning, at most once per WARN_EVERY seconds per backend, with the count held back."""
        now = time.monotonic()
        with self._lock:
            last, held = self._warned.get(failure.backend, (-WARN_EVERY, 0))
            if now - last < WARN_EVERY:
                self._warned[failure.backend] = (last, held + 1)
                return
            self._warned[failure.backend] = (now, 0)
        more = f" ({held} more failures on this backend since the last warning)" if held else ""
        log.warning(
            "memcore: %s of session %r on %s failed: %s%s",
            failure.operation,
            failure.session_id,
            failure.backend,
            failure.error,
            more,
        )

    # -- recall ----------------------------------------------------------------------------------------------------

    def run_recall(
        self, backend: int, task: Callable[[], None], *, deadline: float, cancel: Callable[[], None] | None = None
    ) -> None:
        """Run a recall task for ``backend`` on the recall workers (never behind lane work)."""
        if self._closed:
            raise MemoryClosed("this Memory is closed; it recalls nothing")
        self.recall.submit(backend, task, deadline=deadline, cancel=cancel)

    # -- waiting, closing, reporting ---------------------------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every operation accepted before this call has finished; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        bound = self._bound
        with self._lock:
            self._waiters += 1
            try:
                # First, until the operations spilled before this call are loaded back into their lanes...
                spilled = [(i, bound.spill_high[i]) for i, n in enumerate(bound.spilled) if n]
                while True:
                    if self._closed:  # what close queues behind them (commits) is part of what this waits for
                        spilled = [(i, bound.spill_high[i]) for i, _ in spilled]
                    spilled = [(i, hi) for i, hi in spilled if bound.spilled[i] and bound.loaded_up_to[i] < hi]
                    if not spilled:
                        break
                    if not self._wait_progress(deadline):
                        return False
                # ... then until every lane finished what it holds now (checked front first, so that each wake-up
                # costs what finished since, not a scan of every lane).
                targets = collections.deque((lane, lane.added) for lane in self._lanes if lane.finished < lane.added)
                while True:
                    while targets and targets[0][0].finished >= targets[0][1]:
                        targets.popleft()
                    if not targets:
                        return True
                    lane, count = targets[0]
                    if self._watch.get(lane, count + 1) > count:
                        self._watch[lane] = count
                    if not self._wait_progress(deadline):
                        return False
            finally:
                self._waiters -= 1

    def _progressed(self, lane: Lane) -> None:
        """(Under the lock.) ``lane`` finished or dropped operations: wake the flushes if it reached what one waits
        for."""
        count = self._watch.get(lane)
        if count is not None and lane.finished >= count:
            del self._watch[lane]
            self._progress.notify_all()

    def _wait_progress(self, deadline: float) -> bool:
        """(Under the lock.) Wait for an operation to finish, looking for stalled calls meanwhile; False at
        ``deadline``."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._pool.relieve()
        self._progress.wait(self._pool.wait_step(remaining))
        return True

    def close_admissions(self) -> None:
        """Refuse new work and recall from now on and queue a commit of every dirty lane."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for lane in self._lanes:
                if "commit" in lane.backend.capabilities and Lanes.wants_commit(lane):
                    self._queue_commit(lane)
        self.recall.refuse_new()

    def close_backends(self, deadline: float) -> bool:
        """Run each idle backend's ``memcore_close`` on a recall worker once none of its recalls is in flight; a
        backend with lane work still in flight is left open. False if one was left open or did not close in time."""
        with self._lock:
            busy = {lane.backend.index for lane in self._lanes if lane.scheduled}
        done = threading.Semaphore(0)
        closers: dict[int, Callable[[], None]] = {}
        for backend in self._backends:
            if "close" not in backend.capabilities:
                continue
            if backend.index in busy:
                log.warning("memcore: %s still has work in flight at the close deadline; not closed", backend.name)
                continue

            def close_one(b: Backend = backend) -> None:
                try:
                    b.call("memcore_close")
                except Exception as exc:
                    log.warning("memcore: closing %s failed: %r", b.name, exc)
                finally:
                    done.release()

            closers[backend.index] = close_one
        self.recall.run_closers(closers)
        for _ in closers:
            if not done.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                return False
        return not busy

    def stop(self, timeout: float) -> list[tuple[Lane, Op]]:
        """Let workers exit once their current operation returns; returns what is left queued (still pending)."""
        with self._lock:
            self._stopping = True
            threads = self._pool.stop()
            left = [(lane, op) for lane in self._lanes for op in lane.ops]
        threads += self.recall.stop()
        deadline = time.monotonic() + max(timeout, 0.0)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))
        return left

    def emit_dropped(self, left: list[tuple[Lane, Op]]) -> None:
        """Tell observers about operations abandoned at close with no journal to keep them."""
        for lane, op in left:
            self._emit("dropped", lane, op.kind, None, "left pending at close, with no journal")

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def thread_bound(self) -> int:
        """The most threads this scheduler can ever run: lane workers with their stand-ins, and recall workers."""
        return self._pool.bound + self.recall.size

    @property
    def lane_threads(self) -> int:
        with self._lock:
            return self._pool.threads

    def gauges(self) -> dict[str, Gauge]:
        """Each backend's :class:`Gauge`: counters it keeps, plus one pass over the live lanes (those with work or
        uncommitted writes, never every session seen) for the oldest pending operation and the owed commits."""
        now = time.monotonic()
        with self._lock:
            oldest: list[float | None] = [None] * len(self._backends)
            owing = [0] * len(self._backends)
            for lane in self._lanes:
                i = lane.backend.index
                heads = [t for t in (lane.flying, lane.ops[0].at if lane.ops else None) if t is not None]
                if heads:
                    at = min(heads)
                    oldest[i] = at if (o := oldest[i]) is None else min(at, o)
                if lane.dirty and lane.backend.commits and lane.session.id:
                    owing[i] += 1
            pool, bound = self._pool, self._bound
            return {
                b.name: Gauge(
                    accepted=self._accepted[b.index],
                    pending=bound.pending[b.index],
                    spilled=bound.spilled[b.index],
                    in_flight=pool.in_flight(b.index),
                    stalled=pool.stalled(b.index),
                    owing_commit=owing[b.index],
                    journaled=0 if self._journal is None else bound.pending[b.index] + bound.spilled[b.index],
                    oldest_pending_s=None if (t := oldest[b.index]) is None else max(now - t, 0.0),
                )
                for b in self._backends
            }

    def report(self, **extra: Any) -> Report:
        with self._lock:
            return Report(
                delivered=self._counts["delivered"],
                committed=self._counts["committed"],
                failed=self._counts["failed"],
                pending=self._bound.total + self._bound.spilled_total,
                spilled=self._bound.spilled_total,
                retried=self._counts["retried"],
                replayed=self._counts["replayed"],
                taken_over=self._counts["taken_over"],
                owing_commit=sum(1 for lane in self._lanes if lane.dirty and lane.backend.commits),
                failures=tuple(self._failures),
                **extra,
            )


def _split(backend: Backend, kind: str, payload: Any) -> Sequence[Any]:
    """``payload`` as the operations ``backend`` takes: a turn longer than its ``max_write_messages`` in parts."""
    size = backend.max_write
    if kind != WRITE or size is None or len(payload) <= size:
        return (payload,)
    return [payload[k : k + size] for k in range(0, len(payload), size)]


def _parts(backend: Backend, kind: str, payload: Any) -> int:
    """How many operations :func:`_split` makes of ``payload`` for ``backend``."""
    size = backend.max_write
    if kind != WRITE or size is None:
        return 1
    return max(1, -(-len(payload) // size))

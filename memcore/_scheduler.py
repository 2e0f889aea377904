"""Lanes and the worker pool: ordering (G2), drain before commit (G3), one commit per change (G4), bounds (G8),
retries that keep order (G9), and the journal's bookkeeping (G10).

Every (backend, session) pair has a FIFO lane. A fixed pool of lane workers runs the head of each ready lane, at most
one operation in flight per lane, so writes reach a backend in call order and a commit, queued behind the writes it
covers, runs only after they finished. A transient failure puts the operation back at the head of its lane, which
waits out its backoff without holding a worker. Each backend may occupy at most its share of the lane workers, so a
hung or slow backend cannot starve the others. A call that has run longer than ``stall_after`` is stalled: it no
longer counts against the pool or its backend's share, and a worker is started in its place (at most ``max_stalled``
stalled calls per backend count so), so a few hung requests cannot hold up every other session; the extra workers
exit once the stalled calls return. Stalls are noticed when work is submitted and while flush or close wait (no timer
thread). A separate, small pool of recall workers runs urgent tasks (recall, closing backends) so that a backlog of
writes never delays recall. One lock guards the queues; no backend code runs under it.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._errors import MemoryClosed, PendingLimitExceeded, TransientError
from ._journal import Entry, Journal
from ._plugins import Backend, Observers
from ._records import Event, Failure, Report, Session
from ._retry import RetryPolicy, is_transient

log = logging.getLogger("memcore")

WRITE = "write"
NOTE = "remember"
COMMIT = "commit"
_HOOKS = {WRITE: "memcore_write", NOTE: "memcore_remember", COMMIT: "memcore_commit"}
_ARG = {WRITE: "messages", NOTE: "note"}
#: How many final failures a Report keeps (the count in ``Report.failed`` is exact).
FAILURES_KEPT = 100
#: A backend's failures are logged as warnings at most once per this many seconds (the Report counts every one).
WARN_EVERY = 30.0

Op = tuple[str, Any, int, int]  # kind, payload, epoch covered (commits) or reached (writes), journal sequence number


class Lane:
    """The FIFO of one (backend, session). Its fields are guarded by the scheduler's lock, except ``opened``, which
    only the worker holding the lane's single in-flight operation touches."""

    __slots__ = (
        "accepted",
        "attempts",
        "backend",
        "commit_target",
        "committed",
        "completed",
        "enqueued",
        "first_try",
        "opened",
        "ops",
        "queued",
        "scheduled",
        "session",
        "stalled",
        "started",
    )

    def __init__(self, backend: Backend, session: Session):
        self.backend = backend
        self.session = session
        self.ops: collections.deque[Op] = collections.deque()
        self.scheduled = False  # ready, waiting out a backoff, or running: at most one operation in flight
        self.opened = False
        self.accepted = 0  # writes and notes accepted: the lane's epoch
        self.queued = 0  # ... of which the ones in memory (the rest are spilled to the journal, to be loaded back)
        self.committed = 0  # epoch covered by the last successful commit
        self.commit_target = 0  # highest epoch a queued or running commit covers
        self.enqueued = 0
        self.started = 0.0  # when the operation in flight started (scheduler clock)
        self.stalled = False  # ... and whether it has run past stall_after
        self.completed = 0
        self.attempts = 0  # failed attempts of the head operation
        self.first_try = 0.0  # when the head operation was first tried

    @property
    def dirty(self) -> bool:
        return self.accepted > self.committed


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
        stall_after: float | None = 2.0,
        max_stalled: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        if workers < 1 or recall_workers < 1:
            raise ValueError("workers and recall_workers must be at least 1")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        share = per_backend_workers or math.ceil(workers / len(backends))
        if share < 1:
            raise ValueError("per_backend_workers must be at least 1")
        if stall_after is not None and stall_after <= 0:
            raise ValueError("stall_after must be positive (or None: never)")
        if max_stalled is not None and max_stalled < 0:
            raise ValueError("max_stalled must be at least 0")
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._urgent_ready = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._backends = backends
        self._ready: list[collections.deque[Lane]] = [collections.deque() for _ in backends]
        self._in_flight = [0] * len(backends)
        self._share = min(share, workers)
        # Stalls: calls in flight (lanes), how many of each backend's have run past stall_after, and how many of those
        # may be replaced by an extra worker; lane worker threads alive and waiting.
        self._workers = workers
        self._stall_after = stall_after
        self._stall_cap = 4 * self._share if max_stalled is None else max_stalled
        self._running: set[Lane] = set()
        self._stalled = [0] * len(backends)
        self._next_stall_check = math.inf
        self._live = workers
        self._idle = 0
        self._extra_names = itertools.count(workers)
        self._next = 0  # round-robin position over backends
        self._delayed: list[tuple[float, int, Lane]] = []  # lanes waiting out a backoff, by due time
        # Urgent tasks: (backend index or None, deadline, task). A backend may run at most its share of the recall
        # workers at once, so one whose recall hangs cannot take them all; a task whose deadline passed before it
        # ran is dropped (its recall has returned without it).
        self._urgent: collections.deque[tuple[int | None, float, Callable[[], None]]] = collections.deque()
        self._recall_busy = [0] * len(backends)
        self._recall_share = max(1, recall_workers // len(backends))
        # Only live lanes: a lane that is idle and clean is retired, so memory and the scans below grow with the
        # sessions that have work or uncommitted writes, not with every session ever seen. For backends that open
        # sessions, the ids already opened are kept (a set of strings) so that open runs once per session.
        self._lanes: dict[tuple[int, str], Lane] = {}
        self._opened: dict[int, set[str]] = {}
        self._seq = itertools.count(1)
        self._max_pending = max_pending
        self._pending = 0  # operations in lanes (queued, in backoff or in flight)
        self._spilled = 0  # operations kept only in the journal, waiting to be loaded back (G8)
        self._spill_high = 0  # sequence number of the last spilled operation
        self._loaded_seq = 0  # ... and of the last one loaded back
        self._reloading = False
        self._waiters = 0
        self._counts = collections.Counter[str]()
        self._failures: collections.deque[Failure] = collections.deque(maxlen=FAILURES_KEPT)
        self._observers = observers
        self._warned: dict[str, tuple[float, int]] = {}
        self._retry = retry
        self._journal = journal
        self._clock = clock
        self._rng = rng or random.Random()
        self._closed = False
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._lane_worker, name=f"memcore-worker-{i}", daemon=True) for i in range(workers)
        ] + [
            threading.Thread(target=self._urgent_worker, name=f"memcore-recall-{i}", daemon=True)
            for i in range(recall_workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- admission (caller threads; must stay cheap) -------------------------------------------------------------

    def submit(self, backends: tuple[Backend, ...], session: Session, kind: str, payload: Any) -> None:
        """Append one operation to the lane of ``session`` on each of ``backends``, all or nothing."""
        n = len(backends)
        journal = self._journal
        with self._lock:
            if self._closed:
                raise MemoryClosed("this Memory is closed; it accepts no new writes")
            spill = bool(self._spilled) or self._pending + n > self._max_pending
            if spill and journal is None:
                raise PendingLimitExceeded(
                    f"{self._pending} operations are pending (max_pending={self._max_pending}); nothing was accepted"
                )
            for backend in backends:
                lane = self._lane(backend, session)
                lane.accepted += 1
                seq = next(self._seq)
                if journal is not None:
                    journal.append(seq, backend.key, session, kind, payload, spilled=spill)
                if spill:
                    self._spill(seq)
                else:
                    lane.queued = lane.accepted
                    self._append(lane, (kind, payload, lane.accepted, seq))
                    self._pending += 1

    def _lane(self, backend: Backend, session: Session) -> Lane:
        lane = self._lanes.get((backend.index, session.id))
        if lane is None:
            lane = self._lanes[(backend.index, session.id)] = Lane(backend, session)
            lane.opened = session.id in self._opened.get(backend.index, ())
        return lane

    def request_commit(self, backends: Iterable[Backend], session_id: str) -> int:
        """Queue a commit of ``session_id`` on each backend where it is dirty and not already covered (G4).
        Returns how many commits were queued. After close this does nothing: close committed every dirty lane."""
        queued = 0
        with self._lock:
            if self._closed:
                return 0
            for backend in backends:
                lane = self._lanes.get((backend.index, session_id))
                if lane is not None:
                    queued += self._queue_commit(lane)
        return queued

    def _queue_commit(self, lane: Lane, *, force: bool = False) -> int:
        if not force and lane.accepted <= max(lane.committed, lane.commit_target):
            return 0
        lane.commit_target = lane.accepted
        seq = next(self._seq)
        spill = bool(self._spilled)  # behind spilled writes, so spilled too: order is kept
        if self._journal is not None:
            self._journal.append(seq, lane.backend.key, lane.session, COMMIT, None, spilled=spill)
        if spill:
            self._spill(seq)
        else:
            self._append(lane, (COMMIT, None, lane.accepted, seq))
            self._pending += 1
        return 1

    def _spill(self, seq: int) -> None:
        """Count an operation kept only in the journal (under the lock). From the first spilled operation on, every
        new one is spilled too until all are loaded back, so that order holds in every lane."""
        self._spilled += 1
        self._spill_high = seq
        if self._pending == 0 and not self._reloading:  # nothing in flight would trigger the load: ask for one
            self._reloading = True
            self._urgent.append((None, math.inf, self._reload))
            self._urgent_ready.notify()

    def _reload(self) -> None:
        """Load spilled operations back into their lanes, in order, up to half the bound (off the lock)."""
        assert self._journal is not None
        try:
            with self._lock:
                room = max(self._max_pending // 2 - self._pending, 1)
                after = self._loaded_seq
            entries = self._journal.read_spilled(after, room)
        except Exception:
            log.exception("memcore: spilled operations could not be read back from the journal")
            entries = []
        by_key = {b.key: b for b in self._backends}
        with self._lock:
            for entry in entries:
                lane = self._lane(by_key[entry.backend], entry.session)
                if entry.kind != COMMIT:
                    lane.queued += 1
                self._append(lane, (entry.kind, entry.payload, lane.queued, entry.seq))
                self._pending += 1
                self._spilled -= 1
                self._loaded_seq = entry.seq
            if not entries and self._spilled:
                log.error("memcore: %d spilled operations were not found in the journal", self._spilled)
                self._spilled = 0
            self._reloading = False
            if self._waiters:
                self._progress.notify_all()

    def _append(self, lane: Lane, op: Op) -> None:
        lane.ops.append(op)
        lane.enqueued += 1
        if not lane.scheduled:
            lane.scheduled = True
            self._ready[lane.backend.index].append(lane)
            self._work.notify()
            if not self._idle and self._clock() >= self._next_stall_check:
                self._relieve()

    def replay(self, entries: list[Entry]) -> int:
        """Queue journaled operations left by a process that is gone, in their order (they are journaled already).
        A replayed commit runs even if nothing new is written: the journal says it was asked for and never done."""
        by_key = {b.key: b for b in self._backends}
        with self._lock:
            for entry in entries:
                backend = by_key[entry.backend]
                lane = self._lane(backend, entry.session)
                if entry.kind == COMMIT:
                    if lane.commit_target >= lane.accepted and lane.ops and lane.ops[-1][0] == COMMIT:
                        self._journal_ack(entry.seq)  # a second commit in a row covers nothing new
                        continue
                    lane.commit_target = lane.accepted
                else:
                    lane.accepted += 1
                self._append(lane, (entry.kind, entry.payload, lane.accepted, entry.seq))
                self._pending += 1
                self._counts["replayed"] += 1
            if entries:
                self._seq = itertools.count(max(e.seq for e in entries) + 1)
        if self._observers:
            for entry in entries:
                self._observers.emit(
                    Event(kind="replayed", backend=entry.backend, operation=entry.kind, session_id=entry.session.id)
                )
        return len(entries)

    def next_seq(self) -> int:
        """The next journal sequence number this scheduler would use (for claiming journal rows before start)."""
        with self._lock:
            value = next(self._seq)
            self._seq = itertools.count(value)
            return value

    def run_urgent(self, task: Callable[[], None], *, backend: int | None = None, deadline: float = math.inf) -> None:
        """Run ``task`` on a recall worker (never behind lane work). A task for ``backend`` waits while that backend
        holds its share of the recall workers; one still waiting at ``deadline`` (monotonic) is dropped."""
        with self._lock:
            self._urgent.append((backend, deadline, task))
            self._urgent_ready.notify()

    # -- workers ---------------------------------------------------------------------------------------------------

    def _lane_worker(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return
                    if self._live > self._workers + self._relief():  # a stalled call came back: one worker too many
                        self._live -= 1
                        return
                    lane = self._pick()
                    if lane is not None:
                        break
                    self._idle += 1
                    try:
                        self._work.wait(self._until_next_due())
                    finally:
                        self._idle -= 1
                op = lane.ops.popleft()
                now = self._clock()
                if lane.attempts == 0:
                    lane.first_try = now
                lane.started = now
                self._running.add(lane)
                if self._stall_after is not None and self._next_stall_check == math.inf:
                    self._next_stall_check = now + self._stall_after
            error = self._execute(lane, op)
            self._finish(lane, op, error)

    def _pick(self) -> Lane | None:
        """The next lane to run (under the lock): due backoffs first become ready, then round-robin over backends
        that are under their share of the workers."""
        delayed = self._delayed
        if delayed:
            now = self._clock()
            while delayed and delayed[0][0] <= now:
                lane = heapq.heappop(delayed)[2]
                self._ready[lane.backend.index].append(lane)
        n = len(self._ready)
        for k in range(n):
            i = (self._next + k) % n
            if self._ready[i] and self._in_flight[i] - min(self._stalled[i], self._stall_cap) < self._share:
                self._next = (i + 1) % n
                self._in_flight[i] += 1
                return self._ready[i].popleft()
        return None

    def _relief(self) -> int:
        """Stalled calls that an extra worker may stand in for (under the lock)."""
        return sum(min(n, self._stall_cap) for n in self._stalled) if self._stall_cap else 0

    def _relieve(self) -> None:
        """(Under the lock.) Mark the calls that have run past ``stall_after``; while work waits and no worker is idle,
        start a worker in place of each stalled call (within ``max_stalled`` per backend)."""
        if self._stall_after is None or self._stopping:
            return
        now = self._clock()
        due = math.inf
        newly = False
        for lane in self._running:
            if not lane.stalled:
                if now - lane.started >= self._stall_after:
                    lane.stalled = newly = True
                    self._stalled[lane.backend.index] += 1
                else:
                    due = min(due, lane.started + self._stall_after)
        self._next_stall_check = due
        if newly:
            self._work.notify_all()  # stalled calls no longer count against their backend's share
        if self._idle or not any(self._ready):
            return
        while self._live < self._workers + self._relief():
            self._live += 1
            name = f"memcore-worker-{next(self._extra_names)}"
            thread = threading.Thread(target=self._lane_worker, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def _end_call(self, lane: Lane) -> None:
        """The operation in flight on ``lane`` returned (under the lock)."""
        self._in_flight[lane.backend.index] -= 1
        self._running.discard(lane)
        if lane.stalled:
            lane.stalled = False
            self._stalled[lane.backend.index] -= 1
            self._work.notify_all()  # one worker is now one too many: an idle one exits

    def _until_next_due(self) -> float | None:
        if not self._delayed:
            return None
        return max(self._delayed[0][0] - self._clock(), 0.0)

    def _execute(self, lane: Lane, op: Op) -> BaseException | None:
        kind, payload = op[0], op[1]
        backend = lane.backend
        try:
            if not lane.opened:
                if "open_session" in backend.capabilities:
                    backend.call("memcore_open_session", session=lane.session)
                lane.opened = True
            if kind == COMMIT:
                backend.call("memcore_commit", session=lane.session)
            else:
                backend.call(_HOOKS[kind], session=lane.session, **{_ARG[kind]: payload})
        except Exception as exc:
            return exc
        return None

    def _finish(self, lane: Lane, op: Op, error: BaseException | None) -> None:
        kind = op[0]
        if error is not None and is_transient(error) and self._retry_later(lane, op, error):
            return
        failure = None
        if error is not None:
            failure = Failure(backend=lane.backend.name, operation=kind, session_id=lane.session.id, error=repr(error))
            self._warn(failure)
        self._emit("failed" if failure else ("committed" if kind == COMMIT else "delivered"), lane, kind, failure)
        journal = self._journal
        if journal is not None:
            if failure is None:
                journal.ack(op[3])
            else:
                journal.fail(op[3], failure.error)
        with self._lock:
            self._end_call(lane)
            lane.completed += 1
            lane.attempts = 0
            self._pending -= 1
            if failure is not None:
                self._counts["failed"] += 1
                self._failures.append(failure)
                if kind == COMMIT:  # the session stays dirty; a later boundary or close() commits again
                    queued = [o[2] for o in lane.ops if o[0] == COMMIT]
                    lane.commit_target = max([lane.committed, *queued])
            elif kind == COMMIT:
                lane.committed = max(lane.committed, op[2])
                self._counts["committed"] += 1
            else:
                self._counts["delivered"] += 1
            self._requeue(lane)
            reload = self._spilled and not self._reloading and self._pending <= self._max_pending // 2
            if reload:
                self._reloading = True
            if self._waiters:
                self._progress.notify_all()
        if reload:
            self._reload()

    def _retry_later(self, lane: Lane, op: Op, error: BaseException) -> bool:
        """Put ``op`` back at the head of its lane to run after a backoff; False if its deadline is spent."""
        retry_after = error.retry_after if isinstance(error, TransientError) else None
        with self._lock:
            attempt = lane.attempts + 1
            delay = self._retry.delay(attempt, retry_after, self._rng)
            due = self._clock() + delay
            if self._stopping:  # closing: leave it pending (in the journal, if there is one)
                lane.ops.appendleft(op)
                self._end_call(lane)
                return True
            if due > lane.first_try + self._retry.deadline:
                return False
            lane.attempts = attempt
            lane.ops.appendleft(op)
            self._end_call(lane)
            heapq.heappush(self._delayed, (due, op[3], lane))
            self._counts["retried"] += 1
            self._work.notify()  # a waiting worker recomputes when to wake
            if self._ready[lane.backend.index]:
                self._work.notify()
        self._emit("retried", lane, op[0], None, repr(error))
        return True

    def _requeue(self, lane: Lane) -> None:
        """After an operation of ``lane`` finished (under the lock): run the next one, or let the lane go idle."""
        if lane.ops:
            self._ready[lane.backend.index].append(lane)
        else:
            lane.scheduled = False
            self._retire_if_clean(lane)
        self._work.notify()  # a worker may have skipped work because this backend was at its share

    def _retire_if_clean(self, lane: Lane) -> None:
        """Forget an idle lane with nothing left to commit (under the lock); a later write starts a fresh one."""
        if lane.dirty and "commit" in lane.backend.capabilities:
            return
        del self._lanes[(lane.backend.index, lane.session.id)]
        if lane.opened and "open_session" in lane.backend.capabilities:
            self._opened.setdefault(lane.backend.index, set()).add(lane.session.id)

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
                    session_id=lane.session.id,
                    error=failure.error if failure else error,
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

    def _urgent_worker(self) -> None:
        while True:
            with self._lock:
                while True:
                    entry = self._next_urgent()
                    if entry is not None or (self._stopping and not self._urgent):
                        break
                    # Nothing runnable: wait for work, or for a busy backend to free a worker.
                    self._urgent_ready.wait(None if not self._urgent else 0.05)
                if entry is None:
                    return
            backend, _, task = entry
            try:
                task()
            except Exception:  # tasks report their own errors; this is a last guard
                log.exception("memcore: urgent task failed")
            finally:
                if backend is not None:
                    with self._lock:
                        self._recall_busy[backend] -= 1
                        self._urgent_ready.notify()

    def _next_urgent(self) -> tuple[int | None, float, Callable[[], None]] | None:
        """The first urgent task that may run now (under the lock), dropping the ones past their deadline."""
        now = time.monotonic()
        for entry in list(self._urgent):
            backend, deadline, _ = entry
            if deadline <= now:
                self._urgent.remove(entry)
            elif backend is None or self._recall_busy[backend] < self._recall_share:
                self._urgent.remove(entry)
                if backend is not None:
                    self._recall_busy[backend] += 1
                return entry
        return None

    # -- waiting, closing, reporting ---------------------------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every operation accepted before this call has finished; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._waiters += 1
            try:
                spilled_up_to = self._spill_high if self._spilled else 0
                while self._spilled and self._loaded_seq < spilled_up_to:  # first, until those are loaded back
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._relieve()
                    self._progress.wait(self._tick(remaining))
                targets = [(lane, lane.enqueued) for lane in self._lanes.values() if lane.completed < lane.enqueued]
                while True:
                    targets = [(lane, n) for lane, n in targets if lane.completed < n]
                    if not targets:
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._relieve()
                    self._progress.wait(self._tick(remaining))
            finally:
                self._waiters -= 1

    def _tick(self, remaining: float) -> float:
        """How long a flush or close may wait before it looks for stalled calls again."""
        return remaining if self._stall_after is None else min(remaining, self._stall_after / 2)

    def close_admissions(self) -> None:
        """Refuse new work from now on and queue a commit of every dirty lane."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for lane in list(self._lanes.values()):
                if "commit" in lane.backend.capabilities:
                    self._queue_commit(lane)

    def busy_backends(self) -> set[int]:
        with self._lock:
            return {lane.backend.index for lane in self._lanes.values() if lane.scheduled}

    def stop(self, timeout: float) -> list[tuple[Lane, Op]]:
        """Let workers exit once their current operation returns; returns what is left queued (still pending)."""
        with self._lock:
            self._stopping = True
            self._work.notify_all()
            self._urgent_ready.notify_all()
            left = [(lane, op) for lane in self._lanes.values() for op in lane.ops]
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            threads = list(self._threads)  # no worker starts once stopping is set
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))
        return left

    def emit_dropped(self, left: list[tuple[Lane, Op]]) -> None:
        """Tell observers about operations abandoned at close with no journal to keep them."""
        for lane, op in left:
            self._emit("dropped", lane, op[0], None, "left pending at close, with no journal")

    @property
    def closed(self) -> bool:
        return self._closed

    def report(self, **extra: Any) -> Report:
        with self._lock:
            return Report(
                delivered=self._counts["delivered"],
                committed=self._counts["committed"],
                failed=self._counts["failed"],
                pending=self._pending + self._spilled,
                spilled=self._spilled,
                retried=self._counts["retried"],
                replayed=self._counts["replayed"],
                failures=tuple(self._failures),
                **extra,
            )

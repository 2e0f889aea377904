"""The lane workers (G8: a bounded pool; G9: one backend never holds another's work).

A fixed set of ``workers`` threads runs the head operation of ready lanes, round-robin over backends, at most one
operation in flight per lane, and each backend at most its ``share`` of the workers at once, so a slow or hung backend
cannot take them all. A lane whose operation failed transiently waits out its backoff in a heap, holding no worker.

A call that has run longer than ``stall_after`` is *stalled*: it stops counting against its backend's share, so the
backend's other sessions may run on an idle worker, and when no worker is idle a stand-in thread is started for it.
Each backend has its part of ``max_stalled`` stand-ins at most, so the lane threads never exceed
``workers + max_stalled``, however long calls hang; a stand-in exits once the call it stood in for returned. There is
no timer thread: an idle worker wakes when the next call would become stalled or the next backoff ends, and while every
worker is in a call, the next submit, flush or close looks.

Calls that do not wait (an in-process store, a loopback server answering at once) hold the GIL: more workers running
them than there are CPUs only take turns at the lock and the GIL (a replay of 100,000 operations on 2 CPUs took twice
as long with 4 workers as with 2). So while as many calls as there are CPUs started less than :data:`YOUNG` seconds
ago, a worker with runnable work waits (at most ``YOUNG``, then looks again) instead of starting another: a call that
waits on the network soon stops being young, and the work it would hold starts on the next worker.

Everything here runs under the scheduler's lock (the ``cond`` it is given), except the jobs themselves.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence

from ._lanes import Lane, Op

log = logging.getLogger("memcore")

Job = Callable[[], None]
#: Seconds (real time) for which a call in flight counts as about to return (see the module's docstring).
YOUNG = 0.002
#: What a lane call hands back to be done under the lock once it returned (its bookkeeping), in the same hold of the
#: lock in which its worker picks the next job; it may hand back a job to run once the lock is released.
Settle = Callable[[], Job | None]


class WorkerPool:
    def __init__(
        self,
        *,
        cond: threading.Condition,
        lock: threading.Lock,
        backends: int,
        workers: int,
        share: int,
        limits: Sequence[int | None] = (),
        stall_after: float | None,
        max_stalled: int,
        clock: Callable[[], float],
        run: Callable[[Lane, Op], Settle | None],
    ):
        self._cond = cond
        self._lock = lock  # cond's: a worker's hold of it that waits on nothing takes it directly (a third cheaper)
        self._clock = clock
        self._run = run
        self._workers = workers
        self._share = share
        # Each backend's ``max_concurrency`` (None: only the share): its calls in flight, stalled ones included (a
        # stalled call still holds the backend), never exceed it.
        self._limits = list(limits) or [None] * backends
        self._ready: list[collections.deque[Lane]] = [collections.deque() for _ in range(backends)]
        self._in_flight = [0] * backends
        self._next = 0  # round-robin position over backends
        self._delayed: list[tuple[float, int, Lane]] = []  # lanes waiting out a backoff, by due time
        self._chores: collections.deque[Job] = collections.deque()  # work that is no backend call (journal reloads)
        self._timer: tuple[float, Job] | None = None  # one job to run at a clock time (idle commits)
        # Stalls: each backend's part of max_stalled, its calls past stall_after, the calls in flight, when the next
        # one would stall, and how many lane threads may be alive now (workers + the stalled calls stood in for).
        self._stall_after = stall_after
        self._stall_caps = [max_stalled // backends + (i < max_stalled % backends) for i in range(backends)]
        self._stalled = [0] * backends
        self._running: dict[Lane, float] = {}  # the lanes with a call in flight, and when it started (monotonic)
        self._cpus = _cpus()
        self._next_check = math.inf
        self._allowed = workers
        self._live = 0
        self._idle = 0
        self._parked = 0  # workers waiting for a CPU (see _crowded)
        self._stopping = False
        self._names = itertools.count()
        self._threads: set[threading.Thread] = set()
        for _ in range(workers):
            self._start_thread()

    # -- what the scheduler tells the pool (under the lock) ----------------------------------------------------

    def ready(self, lane: Lane) -> None:
        """``lane`` has an operation to run."""
        self._ready[lane.backend.index].append(lane)
        if self._idle:
            self._cond.notify()
        elif self._stall_after is not None and (self._live < self._allowed or self._clock() >= self._next_check):
            self.relieve()

    def backoff(self, lane: Lane, due: float, seq: int) -> None:
        """``lane``'s head operation runs again at ``due`` (clock time)."""
        heapq.heappush(self._delayed, (due, seq, lane))
        self._cond.notify()  # a waiting worker recomputes when to wake

    def call_ended(self, lane: Lane) -> None:
        """The operation in flight on ``lane`` returned."""
        i = lane.backend.index
        was_full = not self._under_share(i)
        self._in_flight[i] -= 1
        self._running.pop(lane, None)
        lane.flying = None
        if lane.stalled:
            lane.stalled = False
            self._stalled[i] -= 1
            self._update_allowed()
            self._cond.notify()  # one thread too many now: the next to look exits
        elif was_full and self._ready[i] and self._idle:
            self._cond.notify()  # a worker skipped this backend's work while it was at its share

    def chore(self, job: Job) -> None:
        """Run ``job`` on the next free worker (before any lane)."""
        self._chores.append(job)
        self._cond.notify()

    def timer(self, due: float, job: Job) -> None:
        """Run ``job`` on a worker once the clock reaches ``due`` (one timer: a later call replaces it). An idle
        worker wakes for it; no thread of its own."""
        self._timer = (due, job)
        self._cond.notify()

    def wake(self) -> None:
        """Have waiting workers look at the clock again (after a test moved a controllable clock)."""
        self._cond.notify_all()

    def relieve(self) -> None:
        """Mark calls that have run past ``stall_after``; while runnable work waits and no worker is idle, start a
        stand-in for each stalled call within the bound."""
        if self._stall_after is None or self._stopping:
            return
        now = self._clock()
        if now >= self._next_check:
            self._mark_stalled(now)
        if self._idle or self._live >= self._allowed or not self._runnable():
            return
        while self._live < self._allowed:
            self._start_thread()

    def wait_step(self, remaining: float) -> float:
        """How long a flush or close may wait before it looks for stalled calls again."""
        return remaining if self._stall_after is None else min(remaining, self._stall_after / 2)

    def stop(self) -> list[threading.Thread]:
        """Let every worker exit once its current job returns; the threads still alive, to join."""
        self._stopping = True
        self._cond.notify_all()
        return list(self._threads)

    def withdraw(self, lane: Lane) -> None:
        """Take ``lane`` out of the ready queue and the backoff heap, if it waits there (a forget reorders it)."""
        ready = self._ready[lane.backend.index]
        if lane in ready:
            ready.remove(lane)
        if any(entry[2] is lane for entry in self._delayed):
            self._delayed = [entry for entry in self._delayed if entry[2] is not lane]
            heapq.heapify(self._delayed)

    def is_running(self, lane: Lane) -> bool:
        return lane in self._running

    @property
    def running(self) -> int:
        """Calls in flight now."""
        return len(self._running)

    @property
    def threads(self) -> int:
        """Lane threads alive now."""
        return len(self._threads)

    @property
    def bound(self) -> int:
        """The most lane threads that can ever be alive: ``workers + max_stalled``."""
        return self._workers + sum(self._stall_caps) if self._stall_after is not None else self._workers

    # -- inside ------------------------------------------------------------------------------------------------

    def _start_thread(self) -> None:
        self._live += 1
        thread = threading.Thread(target=self._worker, name=f"memcore-worker-{next(self._names)}", daemon=True)
        self._threads.add(thread)
        thread.start()

    def _update_allowed(self) -> None:
        self._allowed = self._workers + sum(min(n, cap) for n, cap in zip(self._stalled, self._stall_caps, strict=True))

    def _mark_stalled(self, now: float) -> None:
        assert self._stall_after is not None
        due = math.inf
        newly = False
        for lane in self._running:
            if lane.stalled:
                continue
            if now - lane.started >= self._stall_after:
                lane.stalled = newly = True
                self._stalled[lane.backend.index] += 1
            else:
                due = min(due, lane.started + self._stall_after)
        self._next_check = due
        if newly:
            self._update_allowed()
            self._cond.notify_all()  # stalled calls no longer count against their backend's share

    def in_flight(self, i: int) -> int:
        """(Under the lock.) Backend ``i``'s calls running now."""
        return self._in_flight[i]

    def stalled(self, i: int) -> int:
        """(Under the lock.) Those of them past ``stall_after``."""
        return self._stalled[i]

    def _under_share(self, i: int) -> bool:
        limit = self._limits[i]
        if limit is not None and self._in_flight[i] >= limit:
            return False
        return self._in_flight[i] - min(self._stalled[i], self._stall_caps[i]) < self._share

    def _runnable(self) -> bool:
        return any(ready and self._under_share(i) for i, ready in enumerate(self._ready))

    def _pick(self, now: float) -> Lane | None:
        """The next lane to run: due backoffs first become ready, then round-robin over backends under their share."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            lane = heapq.heappop(delayed)[2]
            self._ready[lane.backend.index].append(lane)
        n = len(self._ready)
        for k in range(n):
            i = (self._next + k) % n
            if self._ready[i] and self._under_share(i):
                self._next = (i + 1) % n
                self._in_flight[i] += 1
                return self._ready[i].popleft()
        return None

    def _crowded(self) -> bool:
        """(For the worker asking, which counts itself.) More workers busy than there are CPUs, not counting those in
        a call older than YOUNG seconds (it waits on something: it needs no CPU)."""
        busy = self._live - self._idle - self._parked
        if busy <= self._cpus:
            return False
        young = time.monotonic() - YOUNG
        return busy - sum(began <= young for began in self._running.values()) > self._cpus

    def _wake_in(self, now: float) -> float | None:
        due = min(
            self._delayed[0][0] if self._delayed else math.inf,
            self._next_check,
            self._timer[0] if self._timer is not None else math.inf,
        )
        return None if due == math.inf else max(due - now, 0.0)

    def _next_job(self) -> Job | tuple[Lane, Op] | None:
        """Under the lock: a chore, or a lane with its head operation taken; None when this thread should exit."""
        while True:
            if self._stopping or self._live > self._allowed:  # stopping, or a stalled call came back: one too many
                self._live -= 1
                return None
            if self._chores:
                return self._chores.popleft()
            now = self._clock()
            if self._timer is not None and self._timer[0] <= now:
                job = self._timer[1]
                self._timer = None
                return job
            if now >= self._next_check:
                self._mark_stalled(now)
            crowded = self._crowded()
            lane = None if crowded else self._pick(now)
            if lane is not None and not lane.ops:  # a forget emptied it while it waited: nothing to run
                self._in_flight[lane.backend.index] -= 1
                lane.scheduled = False
                continue
            if lane is not None:
                op = lane.ops.popleft()
                lane.flying = op.at
                if lane.attempts == 0:
                    lane.first_try = now
                lane.started = now
                self._running[lane] = time.monotonic()
                if self._stall_after is not None and self._next_check == math.inf:
                    self._next_check = now + self._stall_after
                    if self._idle:
                        self._cond.notify()  # an idle worker keeps the time
                return lane, op
            if crowded and (self._runnable() or (self._delayed and self._delayed[0][0] <= now)):
                self._parked += 1  # not idle: a lane made ready does not wake it; the busy workers run it
                try:
                    self._cond.wait(YOUNG)
                finally:
                    self._parked -= 1
                continue
            self._idle += 1
            try:
                self._cond.wait(self._wake_in(now))
            finally:
                self._idle -= 1

    def _worker(self) -> None:
        settle: Settle | None = None  # the last call's bookkeeping, done in the hold of the lock that picks the next
        try:
            while True:
                after: Job | None = None
                with self._lock:
                    if settle is not None:
                        try:
                            after = settle()
                        except Exception:  # a last guard, as for jobs
                            log.exception("memcore: a lane worker's job failed")
                        settle = None
                    job = self._next_job()
                if after is not None:
                    try:
                        after()
                    except Exception:
                        log.exception("memcore: a lane worker's job failed")
                if job is None:
                    return
                try:
                    if isinstance(job, tuple):
                        settle = self._run(*job)
                    else:
                        job()
                except Exception:  # jobs report their own errors; this is a last guard
                    log.exception("memcore: a lane worker's job failed")
        finally:
            with self._cond:
                self._threads.discard(threading.current_thread())


def _cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)

"""The recall workers: every backend can always answer recall, whatever the others do (G5, G9).

Recall never waits behind writes: it has its own threads, its own lock and a queue per backend. The pool has at least
one worker per backend and each backend may use at most ``size // backends`` of them at once, so backends whose
recall hangs hold only their own part and a healthy backend always has a worker free. A task still queued when its
recall's deadline passed is dropped (that recall has returned without it). Once the Memory closes, queued tasks are
cancelled and no new one is accepted (:class:`~memcore.MemoryClosed`); each backend's ``memcore_close`` then runs here,
but only when none of its recalls is in flight, so a backend is never closed under a running recall.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import logging
import math
import threading
import time
from collections.abc import Callable

from ._errors import MemoryClosed

log = logging.getLogger("memcore")

Task = Callable[[], None]


class _Queued:
    __slots__ = ("cancel", "deadline", "run")

    def __init__(self, run: Task, deadline: float, cancel: Task | None):
        self.run = run
        self.deadline = deadline
        self.cancel = cancel


class RecallPool:
    def __init__(self, *, backends: int, workers: int, clock: Callable[[], float] = time.monotonic):
        if workers < 1:
            raise ValueError("recall_workers must be at least 1")
        self.size = max(workers, backends)
        self._share = self.size // backends
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._queues: list[collections.deque[_Queued]] = [collections.deque() for _ in range(backends)]
        self._busy = [0] * backends
        self._next = 0
        self._closing = False
        self._closers: dict[int, Task] = {}  # backend index -> its memcore_close, run once its recalls are done
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._worker, name=f"memcore-recall-{i}", daemon=True) for i in range(self.size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, backend: int, task: Task, *, deadline: float = math.inf, cancel: Task | None = None) -> None:
        """Run ``task`` for ``backend`` on a free worker; dropped if still queued at ``deadline`` (``clock`` time);
        ``cancel`` runs instead if the pool closes first. The task runs in a copy of the caller's context
        (``contextvars``), so what observers read from it there (a tracing span...) is the caller's."""
        task = functools.partial(contextvars.copy_context().run, task)
        with self._cond:
            if self._closing:
                raise MemoryClosed("this Memory is closed; it recalls nothing")
            self._queues[backend].append(_Queued(task, deadline, cancel))
            self._cond.notify()

    def refuse_new(self) -> None:
        """Refuse new recalls from now on and cancel the queued ones (their callers are told at once)."""
        with self._cond:
            self._closing = True
            cancelled = [q for queue in self._queues for q in queue]
            for queue in self._queues:
                queue.clear()
        for queued in cancelled:
            if queued.cancel is not None:
                queued.cancel()

    def run_closers(self, closers: dict[int, Task]) -> None:
        """Run each backend's closer on a worker once none of that backend's recalls is in flight."""
        with self._cond:
            self._closers.update(closers)
            self._cond.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def stop(self) -> list[threading.Thread]:
        """Let the workers exit once what they run (and the closers) returned; the threads, to join."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        return list(self._threads)

    def _take(self) -> tuple[int, Task] | None:
        """Under the lock: the next runnable (backend, task), dropping expired ones; None when nothing can run now."""
        now = self._clock()
        for i, closer in list(self._closers.items()):
            if not self._busy[i]:
                del self._closers[i]
                self._busy[i] += 1
                return i, closer
        n = len(self._queues)
        for k in range(n):
            i = (self._next + k) % n
            queue = self._queues[i]
            while queue and queue[0].deadline <= now:
                queue.popleft()
            if queue and self._busy[i] < self._share:
                self._next = (i + 1) % n
                self._busy[i] += 1
                return i, queue.popleft().run
        return None

    def _wake_in(self) -> float | None:
        """How long an idle worker may sleep: until the first queued deadline (to drop it), or until notified."""
        deadlines = [q[0].deadline for q in self._queues if q]
        if not deadlines:
            return None
        return max(min(deadlines) - self._clock(), 0.0) if min(deadlines) != math.inf else None

    def _worker(self) -> None:
        while True:
            with self._cond:
                while True:
                    taken = self._take()
                    if taken is not None:
                        break
                    if self._stopping and not self._closers:
                        return
                    self._cond.wait(self._wake_in())
            i, task = taken
            try:
                task()
            except Exception:  # tasks report their own errors; this is a last guard
                log.exception("memcore: a recall task failed")
            finally:
                with self._cond:
                    self._busy[i] -= 1
                    self._cond.notify_all()

"""Lanes and the worker pool: ordering (G2), drain before commit (G3), one commit per change (G4), bounds (G8).

Every (backend, session) pair has a FIFO lane. A fixed pool of lane workers runs the head of each ready lane, at most
one operation in flight per lane, so writes reach a backend in call order and a commit, queued behind the writes it
covers, runs only after they finished. A separate, small pool of recall workers runs urgent tasks (recall, closing
backends) so that a backlog of writes never delays recall. One lock guards the queues; no backend code runs under it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._errors import MemoryClosed, PendingLimitExceeded
from ._plugins import Backend, Observers
from ._records import Event, Failure, Report, Session

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


class Lane:
    """The FIFO of one (backend, session). Its fields are guarded by the scheduler's lock, except ``opened``, which
    only the worker holding the lane's single in-flight operation touches."""

    __slots__ = (
        "accepted",
        "backend",
        "commit_target",
        "committed",
        "completed",
        "enqueued",
        "opened",
        "ops",
        "scheduled",
        "session",
    )

    def __init__(self, backend: Backend, session: Session):
        self.backend = backend
        self.session = session
        self.ops: collections.deque[tuple[str, Any, int]] = collections.deque()
        self.scheduled = False  # in the ready queue or running: at most one operation in flight
        self.opened = False
        self.accepted = 0  # writes and notes accepted: the lane's epoch
        self.committed = 0  # epoch covered by the last successful commit
        self.commit_target = 0  # highest epoch a queued or running commit covers
        self.enqueued = 0
        self.completed = 0

    @property
    def dirty(self) -> bool:
        return self.accepted > self.committed


class Scheduler:
    def __init__(self, *, workers: int, recall_workers: int, max_pending: int, observers: Observers):
        if workers < 1 or recall_workers < 1:
            raise ValueError("workers and recall_workers must be at least 1")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._urgent_ready = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._ready: collections.deque[Lane] = collections.deque()
        self._urgent: collections.deque[Callable[[], None]] = collections.deque()
        # Only live lanes: a lane that is idle and clean is retired, so memory and the scans below grow with the
        # sessions that have work or uncommitted writes, not with every session ever seen. For backends that open
        # sessions, the ids already opened are kept (a set of strings) so that open runs once per session.
        self._lanes: dict[tuple[int, str], Lane] = {}
        self._opened: dict[int, set[str]] = {}
        self._max_pending = max_pending
        self._pending = 0
        self._waiters = 0
        self._delivered = 0
        self._committed = 0
        self._failed = 0
        self._failures: collections.deque[Failure] = collections.deque(maxlen=FAILURES_KEPT)
        self._observers = observers
        self._warned: dict[str, tuple[float, int]] = {}
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
        sid = session.id
        with self._lock:
            if self._closed:
                raise MemoryClosed("this Memory is closed; it accepts no new writes")
            if self._pending + n > self._max_pending:
                raise PendingLimitExceeded(
                    f"{self._pending} operations are pending (max_pending={self._max_pending}); nothing was accepted"
                )
            for backend in backends:
                lane = self._lanes.get((backend.index, sid))
                if lane is None:
                    lane = self._lanes[(backend.index, sid)] = Lane(backend, session)
                    lane.opened = sid in self._opened.get(backend.index, ())
                lane.accepted += 1
                self._append(lane, (kind, payload, lane.accepted))
            self._pending += n

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

    def _queue_commit(self, lane: Lane) -> int:
        if lane.accepted <= max(lane.committed, lane.commit_target):
            return 0
        lane.commit_target = lane.accepted
        self._append(lane, (COMMIT, None, lane.accepted))
        self._pending += 1
        return 1

    def _append(self, lane: Lane, op: tuple[str, Any, int]) -> None:
        lane.ops.append(op)
        lane.enqueued += 1
        if not lane.scheduled:
            lane.scheduled = True
            self._ready.append(lane)
            self._work.notify()

    def run_urgent(self, task: Callable[[], None]) -> None:
        """Run ``task`` on a recall worker, ahead of any lane work."""
        with self._lock:
            self._urgent.append(task)
            self._urgent_ready.notify()

    # -- workers ---------------------------------------------------------------------------------------------------

    def _lane_worker(self) -> None:
        while True:
            with self._lock:
                while not self._ready and not self._stopping:
                    self._work.wait()
                if self._stopping:
                    return
                lane = self._ready.popleft()
                op = lane.ops.popleft()
            error = self._execute(lane, op)
            self._finish(lane, op, error)

    def _execute(self, lane: Lane, op: tuple[str, Any, int]) -> BaseException | None:
        kind, payload, _ = op
        backend = lane.backend
        try:
            if not lane.opened:
                if "open_session" in backend.capabilities:
                    backend.call("memcore_open_session", session=lane.session)
                lane.opened = True
            if kind is COMMIT:
                backend.call("memcore_commit", session=lane.session)
            else:
                backend.call(_HOOKS[kind], session=lane.session, **{_ARG[kind]: payload})
        except Exception as exc:
            return exc
        return None

    def _finish(self, lane: Lane, op: tuple[str, Any, int], error: BaseException | None) -> None:
        kind = op[0]
        failure = None
        if error is not None:
            failure = Failure(backend=lane.backend.name, operation=kind, session_id=lane.session.id, error=repr(error))
            self._warn(failure)
        if self._observers:  # before the operation counts as finished, so flush() returns after observers heard
            self._observers.emit(
                Event(
                    kind="failed" if failure else ("committed" if kind is COMMIT else "delivered"),
                    backend=lane.backend.name,
                    operation=kind,
                    session_id=lane.session.id,
                    error=failure.error if failure else None,
                )
            )
        with self._lock:
            lane.completed += 1
            self._pending -= 1
            if failure is not None:
                self._failed += 1
                self._failures.append(failure)
                if kind is COMMIT:  # the session stays dirty; a later boundary or close() commits again
                    queued = [e for k, _, e in lane.ops if k is COMMIT]
                    lane.commit_target = max([lane.committed, *queued])
            elif kind is COMMIT:
                lane.committed = max(lane.committed, op[2])
                self._committed += 1
            else:
                self._delivered += 1
            if lane.ops:
                self._ready.append(lane)
            else:
                lane.scheduled = False
                self._retire_if_clean(lane)
            if self._waiters:
                self._progress.notify_all()

    def _retire_if_clean(self, lane: Lane) -> None:
        """Forget an idle lane with nothing left to commit (under the lock); a later write starts a fresh one."""
        if lane.dirty and "commit" in lane.backend.capabilities:
            return
        del self._lanes[(lane.backend.index, lane.session.id)]
        if lane.opened and "open_session" in lane.backend.capabilities:
            self._opened.setdefault(lane.backend.index, set()).add(lane.session.id)

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
                while not self._urgent and not self._stopping:
                    self._urgent_ready.wait()
                if not self._urgent:
                    return
                task = self._urgent.popleft()
            try:
                task()
            except Exception:
                log.exception("memcore: urgent task failed")

    # -- waiting, closing, reporting ---------------------------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every operation accepted before this call has finished; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            targets = [(lane, lane.enqueued) for lane in self._lanes.values() if lane.completed < lane.enqueued]
            self._waiters += 1
            try:
                while True:
                    targets = [(lane, n) for lane, n in targets if lane.completed < n]
                    if not targets:
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._progress.wait(remaining)
            finally:
                self._waiters -= 1

    def close_admissions(self) -> None:
        """Refuse new work from now on and queue a commit of every dirty lane."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for lane in self._lanes.values():
                if "commit" in lane.backend.capabilities:
                    self._queue_commit(lane)

    def busy_backends(self) -> set[int]:
        with self._lock:
            return {lane.backend.index for lane in self._lanes.values() if lane.scheduled}

    def stop(self, timeout: float) -> None:
        """Let workers exit once their current operation returns; what is still queued stays pending."""
        with self._lock:
            self._stopping = True
            self._work.notify_all()
            self._urgent_ready.notify_all()
        deadline = time.monotonic() + max(timeout, 0.0)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))

    @property
    def closed(self) -> bool:
        return self._closed

    def dirty_sessions(self) -> list[tuple[str, str]]:
        """(backend, session id) pairs with writes not yet covered by a successful commit."""
        with self._lock:
            return [(lane.backend.name, lane.session.id) for lane in self._lanes.values() if lane.dirty]

    def report(self, **extra: Any) -> Report:
        with self._lock:
            return Report(
                delivered=self._delivered,
                committed=self._committed,
                failed=self._failed,
                pending=self._pending,
                failures=tuple(self._failures),
                **extra,
            )

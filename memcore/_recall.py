"""One recall across backends: results gathered as they arrive, merged by rank, cut off at a deadline (G5). A
transient failure is asked again while the deadline allows (a recall is read-only, so a retry cannot duplicate)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from ._plugins import Backend
from ._records import Recollection, Session
from ._retry import RetryPolicy, is_transient

log = logging.getLogger("memcore")
#: Waits between recall attempts: 50 ms, doubling, no jitter (the recall's own deadline bounds them).
RECALL_RETRY = RetryPolicy(initial=0.05, jitter=0.0)


class RecallCall:
    """Gathers each backend's answer; ``done`` once all answered or the deadline passed (then partial is final)."""

    def __init__(
        self,
        backends: Sequence[Backend],
        query: str,
        session: Session | None,
        limit: int,
        timeout: float,
        *,
        user_id: str | None = None,
    ):
        self._backends = tuple(backends)
        self._query = query
        self._session = session
        self._user_id = user_id
        self._limit = limit
        self._deadline = time.monotonic() + timeout
        self._answers: dict[int, list[Recollection]] = {}
        self._left = len(self._backends)
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self.errors: dict[str, str] = {}
        if not self._left:
            self._event.set()

    def tasks(self) -> list[tuple[int, Callable[[], None], Callable[[], None]]]:
        """One task per backend, to run on recall workers before :attr:`deadline`: the backend's index, the task, and
        what to call instead if the task is cancelled (the Memory closed)."""
        return [
            (b.index, functools.partial(self._ask, i, b), functools.partial(self._answer, i, [], b.name))
            for i, b in enumerate(self._backends)
        ]

    @property
    def deadline(self) -> float:
        """When the call stops waiting (``time.monotonic()``): a backend that has not started by then is skipped."""
        return self._deadline

    def _ask(self, index: int, backend: Backend) -> None:
        items: list[Recollection] = []
        attempt = 0
        while True:
            try:
                answer = backend.call(
                    "memcore_recall", query=self._query, session=self._session, limit=self._limit, user_id=self._user_id
                )
                items = [_coerce(item, backend.name) for item in (answer or ())]
                break
            except Exception as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    log.warning("memcore: recall on %s failed: %r", backend.name, exc)
                    with self._lock:
                        self.errors[backend.name] = repr(exc)
                    break
                attempt += 1
                time.sleep(delay)
        self._answer(index, items)

    def _answer(self, index: int, items: list[Recollection], cancelled: str | None = None) -> None:
        with self._lock:
            if index in self._answers:
                return
            if cancelled is not None:
                self.errors[cancelled] = "cancelled: the Memory closed"
            self._answers[index] = items
            self._left -= 1
            finished = self._left == 0
            callbacks = list(self._callbacks) if finished else []
        if finished:
            self._event.set()
            for callback in callbacks:
                callback()

    def _retry_delay(self, exc: BaseException, attempt: int) -> float | None:
        """How long to wait before asking again after ``exc``, or None: only a transient failure is retried, after
        :data:`RECALL_RETRY`'s delay (at least the service's ``retry_after``), and only while the next attempt can
        start before the call's deadline."""
        if not is_transient(exc):
            return None
        delay = RECALL_RETRY.delay(attempt + 1, getattr(exc, "retry_after", None))
        return delay if time.monotonic() + delay < self._deadline else None

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on a worker thread, or at once) when every backend has answered."""
        with self._lock:
            if self._left:
                self._callbacks.append(callback)
                return
        callback()

    @property
    def done(self) -> bool:
        return self._event.is_set() or time.monotonic() >= self._deadline

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every answer, at most ``timeout`` seconds and never past the call's own deadline."""
        remaining = self._deadline - time.monotonic()
        if timeout is not None:
            remaining = min(remaining, timeout)
        return self._event.wait(max(remaining, 0.0))

    def results(self) -> list[Recollection]:
        """What arrived so far, merged: each backend's list in its order, interleaved by rank, duplicates dropped."""
        with self._lock:
            lists = [self._answers[i] for i in sorted(self._answers)]
        merged: list[Recollection] = []
        seen: set[str] = set()
        for rank in range(max((len(x) for x in lists), default=0)):
            for items in lists:
                if rank < len(items) and items[rank].text not in seen:
                    seen.add(items[rank].text)
                    merged.append(items[rank])
        return merged[: self._limit]


def _coerce(item: Any, source: str) -> Recollection:
    if isinstance(item, str):
        return Recollection(text=item, source=source)
    if not isinstance(item, Recollection):
        raise TypeError(f"memcore_recall must return Recollection records, got {type(item).__name__}")
    return item if item.source else attrs.evolve(item, source=source)

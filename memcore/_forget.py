"""Forgetting: the handle ``Memory.forget`` returns (issue 13). Where forget's ordering is kept is the scheduler
(:meth:`memcore._scheduler.Scheduler.forget`); this module is the answer the caller waits on."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from ._records import Failure

#: What ``Forgetting.kept`` says of a backend that has no ``memcore_forget`` hook.
CANNOT_FORGET = "this backend cannot forget (it has no memcore_forget hook): it keeps everything it was given"


class Forgetting:
    """A forget in progress: of user ``user_id`` (``None``: the default user), its session ``session_id`` only or
    every session of the user when it is None.

    ``wait(timeout)`` returns True once every backend answered (erased, said what it keeps, or failed for good).
    Then ``kept`` maps a backend's name to what it says it still keeps (empty when everything was erased),
    ``failures`` lists the backends whose forget failed for good, ``dropped`` counts the operations of that scope that
    were accepted before the forget and dropped before they reached any backend, and ``ok`` is True only when every
    backend erased everything. A forget is journaled: if the process dies first, the next start finishes it (with no
    handle to tell)."""

    def __init__(self, user_id: str | None, session_id: str | None, backends: int):
        self.user_id = user_id
        self.session_id = session_id
        self.dropped = 0
        self._left = backends
        self._kept: dict[str, str] = {}
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        if not backends:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every backend answered, at most ``timeout`` seconds; whether they all did."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def kept(self) -> Mapping[str, str]:
        with self._lock:
            return dict(self._kept)

    @property
    def failures(self) -> tuple[Failure, ...]:
        with self._lock:
            return tuple(self._failures)

    @property
    def ok(self) -> bool:
        """Done, and every backend erased everything of the scope."""
        with self._lock:
            return self._done.is_set() and not self._kept and not self._failures

    def _answered(self, backend: str, kept: str | None, failure: Failure | None) -> None:
        """(Scheduler.) One backend's forget finished."""
        with self._lock:
            if kept:
                self._kept[backend] = kept
            if failure is not None:
                self._failures.append(failure)
            self._left -= 1
            if self._left <= 0:
                self._done.set()

    def __repr__(self) -> str:
        scope = f"user={self.user_id!r}" + (f" session={self.session_id!r}" if self.session_id is not None else "")
        return f"<Forgetting {scope} done={self.done} ok={self.ok}>"

"""A controllable in-test backend: records every call, and holds calls at gates the test opens."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import memcore
from memcore import Message, Note, Recollection, Session

WAIT = 10.0  # the longest a test waits for an event that must happen; reaching it fails the test


class Gate:
    """Holds matching calls until released. ``entered`` is set when the first matching call reaches it."""

    def __init__(self, match: Callable[[str, str | None, Any], bool]):
        self.match = match
        self.entered = threading.Event()
        self._open = threading.Event()
        self.count = 0

    def release(self) -> None:
        self._open.set()

    def pass_through(self) -> None:
        self.count += 1
        self.entered.set()
        if not self._open.wait(WAIT * 3):
            raise RuntimeError("gate never released")

    def wait_entered(self) -> None:
        assert self.entered.wait(WAIT), "no call reached the gate"


class RecordingBackend:
    """Implements every backend hook. ``log`` holds (hook, session id, payload) in the order calls started;
    ``violations`` lists any moment two calls of one session overlapped or a commit ran beside a write."""

    name = "rec"

    def __init__(self, name: str = "rec", recall_answer: Sequence[Recollection] = ()):
        self.name = name
        self.log: list[tuple[str, str | None, Any]] = []
        self.gates: list[Gate] = []
        self.failures: dict[str, list[BaseException]] = {}
        self.violations: list[str] = []
        self.recall_answer = list(recall_answer)
        self.recall_done = threading.Event()
        self.closed = threading.Event()
        self._in_flight: dict[str, int] = {}
        self._failed: set[int] = set()  # ids of log entries whose call raised
        self._guard = threading.Lock()  # test instrumentation only, not backend logic

    # -- test controls ----------------------------------------------------------------------------------------

    def hold(self, hook: str, session_id: str | None = None, when: Callable[[Any], bool] | None = None) -> Gate:
        """Hold calls of ``hook`` (``write``, ``commit``...) for ``session_id`` (any if None) until released."""
        gate = Gate(
            lambda h, sid, payload: (
                h == hook and (session_id is None or sid == session_id) and (when is None or when(payload))
            )
        )
        self.gates.append(gate)
        return gate

    def fail_next(self, hook: str, *errors: BaseException) -> None:
        self.failures.setdefault(hook, []).extend(errors)

    def calls(self, hook: str, session_id: str | None = None) -> list[Any]:
        """Payloads of the calls of ``hook`` that succeeded, in the order they started."""
        return [
            e[2]
            for e in list(self.log)
            if e[0] == hook and (session_id is None or e[1] == session_id) and id(e) not in self._failed
        ]

    def attempts(self, hook: str, session_id: str | None = None) -> int:
        """How many calls of ``hook`` started, failed ones included."""
        return sum(1 for h, sid, _ in list(self.log) if h == hook and (session_id is None or sid == session_id))

    def texts(self, session_id: str) -> list[str]:
        """Contents written to ``session_id``, in arrival order."""
        return [m.content for turn in self.calls("write", session_id) for m in turn]

    def commits(self, session_id: str | None = None) -> int:
        return len(self.calls("commit", session_id))

    # -- hooks ------------------------------------------------------------------------------------------------

    def _enter(self, hook: str, session: Session | None, payload: Any) -> None:
        sid = session.id if session else None
        with self._guard:
            if sid is not None and hook != "recall":
                self._in_flight[sid] = self._in_flight.get(sid, 0) + 1
                if self._in_flight[sid] > 1:
                    self.violations.append(f"{hook} of {sid} overlapped another call of that session")
            entry = (hook, sid, payload)
            self.log.append(entry)
        try:
            for gate in list(self.gates):
                if gate.match(hook, sid, payload):
                    gate.pass_through()
            errors = self.failures.get(hook)
            if errors:
                raise errors.pop(0)
        except BaseException:
            self._failed.add(id(entry))
            self._leave(hook, sid)
            raise

    def _leave(self, hook: str, sid: str | None) -> None:
        if sid is not None and hook != "recall":
            with self._guard:
                self._in_flight[sid] -= 1

    def _call(self, hook: str, session: Session | None, payload: Any = None) -> None:
        self._enter(hook, session, payload)
        self._leave(hook, session.id if session else None)

    @memcore.hookimpl
    def memcore_open_session(self, session: Session) -> None:
        self._call("open", session, session.parent_id)

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        self._call("write", session, tuple(messages))

    @memcore.hookimpl
    def memcore_remember(self, session: Session, note: Note) -> None:
        self._call("remember", session, note)

    @memcore.hookimpl
    def memcore_commit(self, session: Session) -> None:
        self._call("commit", session)

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: Session | None, limit: int) -> Sequence[Recollection]:
        try:
            self._call("recall", session, query)
            return self.recall_answer[:limit]
        finally:
            self.recall_done.set()

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._call("close", None)
        self.closed.set()

"""Observer plugins the suite puts around the backend under test: seeded latency jitter, and a probe that sees
every backend call from outside (the order of calls, writes in flight when a commit starts, commit counts, the
parent ids that reach the backend, what recall returned). Observers only wrap backend hooks (``wrapper=True``); they
never change what a call does, only when it starts."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Sequence, Sized
from typing import Any

import attrs

from .._hooks import hookimpl
from .._records import Event, Message, Note, Session

__all__ = ["CallGate", "CommitView", "EventLog", "Jitter", "ManualClock", "Probe", "RecallGate"]

Wrap = Generator[None, Any, Any]


class CallGate:
    """Holds every backend call (open, write, remember, commit) until :meth:`release`; ``entered`` is set when the
    first call reaches it, and :meth:`wait_held` waits until a number of calls are held at once. Lets a test accept
    all its work before any of it is delivered, whatever the speed, and know which calls are in flight meanwhile.
    Forget, recall, history and close calls are never held."""

    def __init__(self, name: str = "memcore-testing-gate") -> None:
        self.name = name
        self.entered = threading.Event()
        self._open = threading.Event()
        self._count = threading.Condition()
        self._held = 0

    @property
    def held(self) -> int:
        """How many calls wait at the gate now."""
        with self._count:
            return self._held

    def wait_held(self, n: int, timeout: float | None = None) -> bool:
        """Wait until at least ``n`` calls are held at once (at most ``timeout`` seconds); whether they are. Always
        True once released."""
        with self._count:
            return self._count.wait_for(lambda: self._held >= n or self._open.is_set(), timeout)

    def release(self) -> None:
        self._open.set()
        with self._count:
            self._count.notify_all()

    def _hold(self) -> None:
        if self._open.is_set():
            return
        with self._count:
            self._held += 1
            self._count.notify_all()
        self.entered.set()
        try:
            self._open.wait()
        finally:
            with self._count:
                self._held -= 1

    @hookimpl(wrapper=True)
    def memcore_open_session(self) -> Wrap:
        self._hold()
        return (yield)

    @hookimpl(wrapper=True)
    def memcore_write(self) -> Wrap:
        self._hold()
        return (yield)

    @hookimpl(wrapper=True)
    def memcore_remember(self) -> Wrap:
        self._hold()
        return (yield)

    @hookimpl(wrapper=True)
    def memcore_commit(self) -> Wrap:
        self._hold()
        return (yield)


class ManualClock:
    """A clock that moves only when told: ``Memory(clock=ManualClock())`` makes backoffs (and idle commits) wait
    until the test calls :meth:`advance` and then ``memory._scheduler.wake()``, so a test decides when each retry
    happens instead of sleeping."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class EventLog:
    """An observer that keeps every ``memcore_event`` in order; :meth:`wait` waits until there are at least ``n``."""

    def __init__(self, name: str = "memcore-testing-events") -> None:
        self.name = name
        self._events: list[Event] = []
        self._cond = threading.Condition()

    @property
    def events(self) -> list[Event]:
        with self._cond:
            return list(self._events)

    def wait(self, n: int, timeout: float | None = None) -> list[Event]:
        """The events heard once there are at least ``n`` (or when ``timeout`` passed: then fewer)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._events) >= n, timeout)
            return list(self._events)

    @hookimpl
    def memcore_event(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()


class Jitter:
    """Sleeps a seeded-random time in ``[0, max_delay]`` before every backend call (open, write, remember, commit,
    recall, close), so that races a backend or the core could lose get a chance to happen.

    ``memcore.Memory(backends=[backend], plugins=[Jitter(seed=7)])``. ``calls`` counts the calls it delayed.
    """

    def __init__(self, seed: int = 0, max_delay: float = 0.003, name: str = "memcore-testing-jitter") -> None:
        if max_delay < 0:
            raise ValueError("max_delay must be >= 0")
        self.name = name
        self.max_delay = max_delay
        self.calls = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Jitter(max_delay={self.max_delay})"

    def _pause(self) -> None:
        with self._lock:
            delay = self._rng.uniform(0.0, self.max_delay)
            self.calls += 1
        if delay:
            time.sleep(delay)

    @hookimpl(wrapper=True)
    def memcore_open_session(self) -> Wrap:
        self._pause()
        return (yield)

    @hookimpl(wrapper=True)
    def memcore_write(self) -> Wrap:
        self._pause()
        return (yield)

    @hookimpl(wrapper=True)
    def memcore_remember(self) -> Wrap:
        self._pause()
        return (yield)

    @hookimpl(wrapper=True)
    def memcore_commit(self) -> Wrap:
        self._pause()
        return (yield)

    @hookimpl(wrapper=True)
    def memcore_recall(self) -> Wrap:
        self._pause()
        return (yield)

    @hookimpl(wrapper=True)
    def memcore_close(self) -> Wrap:
        self._pause()
        return (yield)


class RecallGate:
    """Holds recall calls until released; ``entered`` is set when the first one arrives, ``finished`` when a held
    call has returned from the backend."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.entered = threading.Event()
        self.finished = threading.Event()
        self._open = threading.Event()

    def release(self) -> None:
        self._open.set()

    def hold(self) -> None:
        self.entered.set()
        self._open.wait(self.timeout)


@attrs.frozen(kw_only=True)
class CommitView:
    """What the probe saw when a commit of one session started: writes and notes of that session still in flight,
    and what the backend's read-back hook (``memcore_history``) held at that moment (``None`` without one)."""

    in_flight: int
    stored: tuple[str, ...] | None
    error: str | None = None


class Probe:
    """Sees every call to the backend under test, from outside, as an observer wrapper (``forgets`` lists the forgets
    that returned, ``recall_users`` the user of each recall).

        ``read_back`` (set by the harness) reads a session's stored messages through ``memcore_history``; the probe
        calls it when a commit starts, before the backend sees the commit (unless ``read_at_commit`` is off).
    """

    name = "memcore-testing-probe"

    def __init__(self) -> None:
        self.read_back: Callable[[Session], Sequence[Message]] | None = None
        self.read_at_commit = True
        self.gate: RecallGate | None = None
        self.calls: list[tuple[str, str | None]] = []  # (hook, session id) in the order calls started
        self.opened: list[Session] = []
        self.write_sessions: dict[str, list[Session]] = defaultdict(list)
        self.commit_views: dict[str, list[CommitView]] = defaultdict(list)
        self.commits: Counter[str] = Counter()  # commits that returned without raising
        self.recalls: list[tuple[int, int | None]] = []  # (limit asked, how many the backend returned)
        self.recall_users: list[str | None] = []  # the user each recall was asked for, in order
        self.forgets: list[tuple[str | None, str | None]] = []  # (user id, session id) of each forget that returned
        # Every recall's outcome, in the order they ended: what it returned, or the exception it raised.
        self.recall_outcomes: list[object] = []
        self.errors: list[tuple[str, BaseException]] = []  # (hook, exception) of every call that raised
        self._ended = threading.Condition()
        self.max_in_flight: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    def wait_recall_outcomes(self, n: int, timeout: float | None = None) -> list[object]:
        """The recall outcomes once at least ``n`` recalls ended (or when ``timeout`` passed: then fewer)."""
        with self._ended:
            self._ended.wait_for(lambda: len(self.recall_outcomes) >= n, timeout)
            return list(self.recall_outcomes)

    def _raised(self, hook: str, exc: BaseException) -> None:
        with self._lock:
            self.errors.append((hook, exc))

    def _start(self, hook: str, session: Session | None) -> None:
        with self._lock:
            self.calls.append((hook, session.id if session is not None else None))

    def _enter_write(self, session: Session) -> None:
        with self._lock:
            self._in_flight[session.id] += 1
            self.max_in_flight[session.id] = max(self.max_in_flight[session.id], self._in_flight[session.id])
            self.write_sessions[session.id].append(session)

    def _leave_write(self, session: Session) -> None:
        with self._lock:
            self._in_flight[session.id] -= 1

    @hookimpl(wrapper=True)
    def memcore_open_session(self, session: Session) -> Wrap:
        self._start("open_session", session)
        try:
            result = yield  # raises here if the backend's open failed: only successful opens count (retries are fine)
        except BaseException as exc:
            self._raised("open_session", exc)
            raise
        with self._lock:
            self.opened.append(session)
        return result

    @hookimpl(wrapper=True)
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> Wrap:
        self._start("write", session)
        self._enter_write(session)
        try:
            return (yield)
        except BaseException as exc:
            self._raised("write", exc)
            raise
        finally:
            self._leave_write(session)

    @hookimpl(wrapper=True)
    def memcore_remember(self, session: Session, note: Note) -> Wrap:
        self._start("remember", session)
        self._enter_write(session)
        try:
            return (yield)
        except BaseException as exc:
            self._raised("remember", exc)
            raise
        finally:
            self._leave_write(session)

    @hookimpl(wrapper=True)
    def memcore_commit(self, session: Session) -> Wrap:
        self._start("commit", session)
        with self._lock:
            in_flight = self._in_flight[session.id]
        stored: tuple[str, ...] | None = None
        error = None
        if self.read_back is not None and self.read_at_commit:
            try:
                stored = tuple(m.content for m in self.read_back(session))
            except Exception as exc:
                error = f"memcore_history raised {exc!r}"
        with self._lock:
            self.commit_views[session.id].append(CommitView(in_flight=in_flight, stored=stored, error=error))
        try:
            result = yield
        except BaseException as exc:
            self._raised("commit", exc)
            raise
        with self._lock:
            self.commits[session.id] += 1
        return result

    @hookimpl(wrapper=True)
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> Wrap:
        with self._lock:
            self.calls.append(("forget", session_id))
        result = yield
        with self._lock:
            self.forgets.append((user_id, session_id))
        return result

    @hookimpl(wrapper=True)
    def memcore_recall(self, query: str, session: Session | None, limit: int, user_id: str | None) -> Wrap:
        self._start("recall", session)
        with self._lock:
            self.recall_users.append(user_id)
        gate = self.gate
        if gate is not None:
            gate.hold()
        try:
            result = yield
        except BaseException as exc:
            self._raised("recall", exc)
            with self._ended:
                self.recall_outcomes.append(exc)
                self._ended.notify_all()
            raise
        finally:
            if gate is not None:
                gate.finished.set()
        answer = result[0] if isinstance(result, list) and result else None
        with self._lock:
            self.recalls.append((limit, len(answer) if isinstance(answer, Sized) else None))
        with self._ended:
            self.recall_outcomes.append(answer)
            self._ended.notify_all()
        return result

    def hooks_of(self, session_id: str) -> list[str]:
        """The hooks called for ``session_id``, in the order they started."""
        with self._lock:
            return [hook for hook, sid in self.calls if sid == session_id]

"""Memory: the backends, the worker pool and the lifecycles of one process."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from . import _plugins as registry
from . import _validate as check
from ._errors import BackendLoadError, MemoryClosed, PluginError, UnknownBackend, UsersNotSeparated
from ._forget import Forgetting
from ._journal import Journal
from ._journal_store import JournalStore
from ._lifecycle import SessionLifecycle
from ._paths import memcore_home
from ._recall import RecallCall
from ._records import Gauge, Message, Note, Recollection, Report, Session
from ._retry import RetryPolicy
from ._scheduler import NOTE, WRITE, Scheduler

log = logging.getLogger("memcore")

JOURNAL_FILE = "journal.sqlite3"
_live: weakref.WeakSet[Memory] = weakref.WeakSet()
_inherited: list[Any] = []


def _reset_after_fork() -> None:
    for memory in list(_live):
        memory._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

#: The budget ``close`` gets when the interpreter exits without an explicit ``close()``.
EXIT_TIMEOUT = 5.0


class Memory:
    """Long-term memory for one process: backends, a fixed worker pool, and a lifecycle per conversation.

    ``backends`` lists entry-point names (``"sqlite"``, ``"openviking"``...) or plugin instances; ``None`` means the
    embedded SQLite backend. ``settings`` maps a backend name to the keyword arguments of its class. ``plugins`` lists
    observer plugins (names in the ``memcore.plugins`` group or instances); ``None`` loads every installed one.
    A backend that fails to import or construct is skipped with its reason in ``skipped`` (``strict=True`` or
    ``MEMCORE_STRICT=1`` raises instead). ``max_pending`` bounds the operations held in memory in total, and
    ``max_pending_per_backend`` (default: an even part of ``max_pending``) each backend's: past either, with the
    journal on, that backend's new operations spill to the journal and are loaded back in order as its lanes drain
    (a hung backend fills only its own part); with the journal off, a write raises
    :class:`~memcore.PendingLimitExceeded` and accepts nothing. Never a silent loss.

    Threads (G8): ``workers`` lane workers, of which each backend may hold at most ``per_backend_workers`` (default: its
    even share), and ``max(recall_workers, number of backends)`` recall workers, an even part for each backend. A call
    that has run longer than ``stall_after`` seconds stops counting against its backend's share, and a stand-in worker
    is started in its place when no worker is idle; at most ``max_stalled`` (default ``workers``) stand-ins in all,
    split evenly between backends, so lane threads never exceed ``workers + max_stalled``. ``stall_after=None`` keeps
    the pool at ``workers``. Transient backend failures are retried per ``retry`` (a :class:`~memcore.RetryPolicy`).
    ``journal`` (default on, ``$MEMCORE_HOME/journal.sqlite3``; a path, a :class:`~memcore.journal.JournalStore`, or
    ``False`` for none) keeps every accepted operation on disk until its backend acknowledged it, and operations left
    by a process that died are replayed when the next Memory starts. ``durability="group"`` writes the journal in the
    background (the caller never waits for the disk; a crash can lose what was accepted during the one write in
    progress); ``"sync"`` makes every call wait until its operation is on disk.

    Sessions that never end (a chat gateway's, which may never see ``/new`` nor an exit): ``commit_after_turns=N``
    commits a session once ``N`` writes (turns or notes) are uncommitted, ``commit_after_idle=S`` once a dirty session
    has had no write for ``S`` seconds (one timer on the worker pool, no thread per session); with neither, a session
    is committed at its boundaries and at close only. ``clock`` (default ``time.monotonic``) is the clock the idle
    commit, stalls and backoffs read; tests give a controllable one and call ``memory._scheduler.wake()`` after moving
    it.
    """

    def __init__(
        self,
        backends: Sequence[str | Any] | None = None,
        *,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        plugins: Sequence[str | Any] | None = None,
        workers: int = 4,
        recall_workers: int = 2,
        max_pending: int = 100_000,
        max_pending_per_backend: int | None = None,
        per_backend_workers: int | None = None,
        stall_after: float | None = 2.0,
        max_stalled: int | None = None,
        retry: RetryPolicy | None = None,
        journal: bool | str | os.PathLike[str] | JournalStore = True,
        durability: str = "group",
        strict: bool | None = None,
        commit_after_turns: int | None = None,
        commit_after_idle: float | None = None,
        clock: Callable[[], float] | None = None,
    ):
        strict = registry.strict_mode() if strict is None else strict
        settings = dict(settings or {})
        if isinstance(backends, (str, bytes)):
            raise TypeError("backends must be a list of names or instances, not a single string")
        specs = list(backends) if backends is not None else ["sqlite"]
        named = [s for s in specs if isinstance(s, str)]
        doubled = sorted({s for s in named if named.count(s) > 1})
        if doubled:
            raise PluginError(f"backends named more than once: {', '.join(doubled)}")
        stray = sorted(set(settings) - set(named))
        if stray:
            raise UnknownBackend(f"settings given for backends that are not selected: {', '.join(stray)}")
        self.skipped: dict[str, str] = {}
        self._pm = pm = registry.new_manager()
        chosen: list[tuple[str, Any]] = []
        for spec in specs:
            loaded = self._load(
                pm,
                spec,
                registry.BACKENDS_GROUP,
                settings.get(spec) if isinstance(spec, str) else None,
                strict,
                backend=True,
            )
            if loaded is not None:
                chosen.append(loaded)
        if not chosen:
            raise BackendLoadError(
                "no backend could be loaded: " + "; ".join(f"{k}: {v}" for k, v in self.skipped.items())
            )
        observers = list(plugins) if plugins is not None else sorted(registry.available(registry.PLUGINS_GROUP))
        for spec in observers:
            self._load(pm, spec, registry.PLUGINS_GROUP, None, strict, backend=False)
        instances = [plugin for _, plugin in chosen]
        self._backends = tuple(
            registry.Backend(pm, plugin, name, i, instances) for i, (name, plugin) in enumerate(chosen)
        )
        self._noters = tuple(b for b in self._backends if "remember" in b.capabilities)
        self._committers = tuple(b for b in self._backends if "commit" in b.capabilities)
        self._recallers = tuple(b for b in self._backends if "recall" in b.capabilities)
        self._journal = None
        if journal is not False:
            where = memcore_home() / JOURNAL_FILE if journal is True else journal
            if isinstance(where, str) and "://" in where:  # a URL: the store its scheme's entry point names
                where = registry.journal_store(where)
            if not isinstance(where, (str, os.PathLike, JournalStore)):
                raise TypeError(
                    "journal must be True, False, a path, a URL or a memcore.journal.JournalStore, "
                    f"not {type(journal).__name__}"
                )
            self._journal = Journal(where, durability=durability)
        self._sync_each = self._journal is not None and self._journal.sync_each
        self._config: dict[str, Any] = dict(
            backends=self._backends,
            workers=workers,
            recall_workers=recall_workers,
            max_pending=max_pending,
            max_pending_per_backend=max_pending_per_backend,
            observers=registry.Observers(pm),
            retry=retry or RetryPolicy(),
            per_backend_workers=per_backend_workers,
            stall_after=stall_after,
            max_stalled=max_stalled,
            commit_after_turns=commit_after_turns,
            commit_after_idle=commit_after_idle,
            clock=clock or time.monotonic,
        )
        try:
            self._scheduler = Scheduler(journal=self._journal, **self._config)
        except BaseException:  # a bad setting: nothing is left running, the journal keeps nothing of this owner
            if self._journal is not None:
                self._journal.close(EXIT_TIMEOUT)
            raise
        if self._journal is not None:
            claim = self._journal.claim([b.key for b in self._backends], self._scheduler.reserve)
            if claim.total:
                log.info("memcore: replaying %d operations from %s", claim.total, self._journal.name)
                self._scheduler.adopt(claim)
            # A store with leases: owners whose lease expires while this Memory runs are taken over on a worker.
            self._journal.on_orphans = functools.partial(self._scheduler.chore, self._adopt)
            self._journal.on_lapse = self._scheduler.disown
        self._close_lock = threading.Lock()
        self._release_lock = threading.Lock()
        self._handoff: threading.Timer | None = None
        self._final: Report | None = None
        atexit.register(self._at_exit)
        _live.add(self)

    def _load(
        self, pm: Any, spec: Any, group: str, settings: Mapping[str, Any] | None, strict: bool, *, backend: bool
    ) -> tuple[str, Any] | None:
        if not isinstance(spec, str):
            return registry.register(pm, spec, backend=backend), spec
        try:
            plugin = registry.construct(spec, registry.load_class(spec, group), settings)
            if registry.plugin_name(plugin) != spec:  # the entry-point name is the backend's name
                with contextlib.suppress(AttributeError):
                    plugin.name = spec
            return registry.register(pm, plugin, backend=backend), plugin
        except UnknownBackend:
            raise
        except (BackendLoadError, PluginError) as exc:
            if strict:
                raise
            self.skipped[spec] = str(exc)
            log.warning("memcore: skipped %s", exc)
            return None

    # -- public API --------------------------------------------------------------------------------------------

    @property
    def backends(self) -> tuple[str, ...]:
        """Names of the backends in use, in the order given."""
        return tuple(b.name for b in self._backends)

    @property
    def capabilities(self) -> dict[str, frozenset[str]]:
        """What each backend implements (hook names without ``memcore_``)."""
        return {b.name: b.capabilities for b in self._backends}

    @property
    def plugin_manager(self) -> Any:
        """The pluggy PluginManager holding backends and observers (for introspection)."""
        return self._pm

    def lifecycle(
        self, session_id: str, parent_session_id: str | None = None, *, user_id: str | None = None
    ) -> SessionLifecycle:
        """A lifecycle for one conversation of user ``user_id`` (``None``: the default user), starting in
        ``session_id``. A user other than the default needs every backend to keep users apart
        (:class:`~memcore.UsersNotSeparated` otherwise)."""
        sid = check.session_id(session_id)
        if parent_session_id is not None:
            check.session_id(parent_session_id, "parent session id")
        user = self._user(user_id)
        return SessionLifecycle(self, Session(id=sid, parent_id=parent_session_id, user_id=user))

    def recall(
        self, query: str, limit: int = 5, timeout: float = 2.0, *, user_id: str | None = None
    ) -> list[Recollection]:
        """Recall outside any session, in what user ``user_id`` (``None``: the default user) has: never another
        user's memory. Raises :class:`~memcore.MemoryClosed` once ``close()`` was called."""
        call = self._start_recall(query, None, limit, timeout, user_id=self._user(user_id))
        call.wait()
        return call.results()

    def forget(self, *, user_id: str | None, session_id: str | None = None) -> Forgetting:
        """Erase user ``user_id``'s session ``session_id``, or everything of the user when ``session_id`` is None,
        on every backend. Returns at once with a :class:`~memcore.Forgetting` to ``wait(timeout)`` on.

        The forget is ordered behind what of that scope was accepted before it (a call in flight finishes first, what
        is queued and not yet delivered is dropped, here and in the journal) and ahead of anything accepted after it,
        which it never erases. It is journaled: if the process dies first, the next start finishes it. A backend
        that cannot erase something says what it keeps (``Forgetting.kept``); ``Forgetting.ok`` is True only when
        nothing is kept and nothing failed."""
        user = self._user(user_id)
        if session_id is not None:
            check.session_id(session_id)
        handle = self._scheduler.forget(self._backends, user, session_id)
        if self._sync_each:
            self._sync_journal()
        return handle

    def _user(self, user_id: object) -> str | None:
        """A checked user id; a user other than the default is refused unless every backend keeps users apart."""
        user = check.user_id(user_id)
        if user is not None:
            mixing = [b.name for b in self._backends if not b.users]
            if mixing:
                raise UsersNotSeparated(
                    f"user {user!r}: the backend(s) {', '.join(mixing)} cannot keep users apart (they do not declare "
                    "separates_users = True), so only the default user (user_id=None) may use this Memory"
                )
        return user

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has begun: nothing new is accepted."""
        return self._scheduler.closed

    def gauges(self) -> dict[str, Gauge]:
        """A cheap snapshot of each backend's work now, by backend name (:class:`Gauge`), for a metrics reader to
        call every few seconds: counters memcore keeps, and one pass over the live lanes (sessions with work or
        uncommitted writes). Unlike :meth:`flush` it waits for nothing and builds no failure list."""
        return self._scheduler.gauges()

    def flush(self, timeout: float = 10.0) -> Report:
        """Wait until everything accepted so far has been delivered (or failed for good), at most ``timeout``."""
        start = time.monotonic()
        drained = self._scheduler.wait_idle(timeout)
        return self._report(start, timed_out=not drained)

    def close(self, timeout: float = 10.0) -> Report:
        """Stop admissions, commit every dirty session, drain, close the backends; all within ``timeout`` (G10).
        Idempotent: later calls return the first report."""
        with self._close_lock:
            if self._final is not None:
                return self._final
            atexit.unregister(self._at_exit)
            start = time.monotonic()
            deadline = start + timeout
            self._scheduler.close_admissions()
            drained = self._scheduler.wait_idle(timeout)
            closed = self._scheduler.close_backends(deadline)
            left = self._scheduler.stop(deadline - time.monotonic())
            if self._journal is None:
                self._scheduler.emit_dropped(left)
            elif self._scheduler.when_quiet(self._release_journal):
                self._linger()
            else:
                self._release_journal(max(deadline - time.monotonic(), 0.5))
            self._final = self._report(start, timed_out=not (drained and closed))
            _live.discard(self)
            return self._final

    # -- handing the journal over (G15) -----------------------------------------------------------------------

    def _linger(self) -> None:
        """Calls outlived close's deadline: they may still reach the service, so this Memory keeps its journal rows
        (its owner stays registered, and the rows of its sessions are not replayed anywhere) until the last of them
        returned, or until the retry deadline passed, when such a call is taken as lost."""
        assert self._journal is not None
        bound = self._config["retry"].deadline
        log.warning(
            "memcore: calls are still in flight at the close deadline; the journal %s keeps their sessions' "
            "operations until they return (at most %g s), then hands them to the next Memory",
            self._journal.name,
            bound,
        )
        timer = self._handoff = threading.Timer(bound, self._release_journal)
        timer.daemon = True
        timer.name = "memcore-handoff"
        timer.start()

    def _release_journal(self, timeout: float = 5.0) -> None:
        """Close the journal (what is left in it is anyone's now) and let running Memories on the same journal file
        take it over. Idempotent."""
        journal = self._journal
        if self._handoff is not None and self._handoff is not threading.current_thread():
            self._handoff.cancel()
        with self._release_lock:  # the last call's return and the timer may both get here
            if journal is None or journal.closed:
                return
            try:
                closed = journal.close(timeout)
            except Exception as exc:  # a broken disk: the rows stay with this owner until the next start
                log.error("memcore: the journal %s could not be closed: %r", journal.name, exc)
                return
            if not closed:
                log.error("memcore: the journal writer did not finish in time; the last operations may replay twice")
                return
        for memory in list(_live):
            if memory is not self and memory._journal is not None and memory._journal.name == journal.name:
                memory._adopt()

    def _adopt(self) -> None:
        """Replay what a Memory of this process that closed with calls in flight left in the journal, now that those
        calls returned (its rows were not claimable before)."""
        journal = self._journal
        if journal is None or self._scheduler.closed:
            return
        try:
            claim = journal.claim([b.key for b in self._backends], self._scheduler.reserve, fresh=True)
        except Exception:
            log.exception("memcore: operations handed over in %s could not be claimed", journal.name)
            return
        if claim.total:
            log.info("memcore: replaying %d operations handed over in %s", claim.total, journal.name)
            self._scheduler.adopt(claim)

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Memory backends={list(self.backends)} closed={self._scheduler.closed}>"

    # -- used by SessionLifecycle ----------------------------------------------------------------------------

    def _write(self, session: Session, turn: tuple[Message, ...]) -> None:
        self._scheduler.submit(self._backends, session, WRITE, turn)
        if self._sync_each:
            self._sync_journal()

    def _remember(self, session: Session, note: Note) -> None:
        if self._noters:
            self._scheduler.submit(self._noters, session, NOTE, note)
            if self._sync_each:
                self._sync_journal()

    def _sync_journal(self) -> None:
        """``durability="sync"``: return once the operation just accepted is on disk. When it cannot be (the journal
        cannot be written: ``Report.journal_error`` says why), the call still returns, since the operation is accepted
        and will be delivered (raising would invite the caller to send it twice), and the log says so (rate-limited)."""
        assert self._journal is not None
        if not self._journal.wait_durable():
            self._journal.warn_not_durable()

    def _rewind(self, session: Session, turns: int) -> None:
        self._scheduler.rewind(self._backends, session, turns)
        if self._sync_each:
            self._sync_journal()

    def _commit(self, session: Session) -> None:
        self._scheduler.request_commit(self._committers, session)

    def _start_recall(
        self, query: str, session: Session | None, limit: int, timeout: float, *, user_id: str | None = None
    ) -> RecallCall:
        check.text(query, "query")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        if not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number, not {timeout!r}")
        if self._scheduler.closed:
            raise MemoryClosed("this Memory is closed; it recalls nothing")
        user = session.user_id if session is not None else user_id
        call = RecallCall(self._recallers, query, session, limit, timeout, user_id=user)
        for index, task, cancel in call.tasks():
            self._scheduler.run_recall(index, task, deadline=call.deadline, cancel=cancel)
        return call

    # -- internals ---------------------------------------------------------------------------------------------

    def _report(self, start: float, *, timed_out: bool) -> Report:
        report = self._scheduler.report(
            skipped_backends=self.skipped, elapsed=time.monotonic() - start, timed_out=timed_out
        )
        journal = self._journal
        return attrs.evolve(
            report,
            journaled=report.pending if journal is not None else 0,
            journal_error=journal.error if journal is not None else None,
        )

    def _after_fork_in_child(self) -> None:
        """A forked child starts with empty lanes, fresh workers and no journal: the parent's work stays the
        parent's (its pending operations are in the parent's lanes and journal rows). The child does not touch the
        journal because SQLite state inherited through fork() must not be used (nor a new connection opened beside
        it); a child that needs a journal creates its own Memory."""
        if self._journal is not None:
            _inherited.append(self._journal)  # never used nor closed in the child: the parent owns its connection
            self._journal = None
            self._sync_each = False
        self._scheduler = Scheduler(journal=None, **self._config)
        self._close_lock = threading.Lock()

    def _at_exit(self) -> None:
        report = self.close(timeout=EXIT_TIMEOUT)
        if not report.ok:
            log.warning("memcore: exit with %d pending and %d failed operations", report.pending, report.failed)

"""The backend contract: memcore's pluggy hook specifications.

Every hook is called from one of memcore's worker threads, never from the agent's thread, and never concurrently for
the same (backend, session). Every session belongs to a user (``session.user_id``, ``None`` for the default user); a
backend that declares ``separates_users = True`` keeps users apart (recall as one user never returns another's
memory) and memcore refuses any user but the default one for a backend that does not. A backend keeps no lifecycle
state of its own: no threads, no locks, no session ids cached
from earlier calls. Raising :class:`memcore.TransientError` marks a failure as worth retrying; any other exception is
final for that operation. Either way the failure is recorded (``Report.failures``, the ``memcore_event`` hook) and
never reaches the agent.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from ._records import Event, Message, Note, Recollection, Session

PROJECT = "memcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The hooks a backend may implement; the ones it does are its capabilities (without the ``memcore_`` prefix).
BACKEND_HOOKS = (
    "memcore_open_session",
    "memcore_write",
    "memcore_remember",
    "memcore_commit",
    "memcore_recall",
    "memcore_history",
    "memcore_forget",
    "memcore_rewind",
    "memcore_close",
)


class BackendSpec:
    """Hook specifications. Backends implement these as methods marked with ``@memcore.hookimpl``."""

    @hookspec
    def memcore_open_session(self, session: Session) -> None:
        """Open ``session`` on the service. Called on a lane worker before the first write, note or commit of that
        session reaches the backend in this process (again in a new process, after a replay, and for a session whose
        lane was retired long ago: it must be idempotent). If it raises, the operation that needed it fails and the
        next operation of the session tries to open it again."""

    @hookspec
    def memcore_write(self, session: Session, messages: Sequence[Message], key: str, attempt: int) -> None:
        """Store one turn's ``messages`` in ``session``. Called on a lane worker, in the order the runtime made the
        calls, one at a time per (backend, session). Required: every backend implements it.

        ``key`` (take it by naming it; optional) is the operation's idempotency key: unique, and the same on every
        retry and every replay after a crash, so a backend that stores it once per key stores a turn once even when
        a call reached the service and its reply was lost. ``attempt`` (optional too) is 1 when no call with this key
        can have reached the service before, and more when one may have: a retry after a transient failure (the
        failure may have come after the service stored it), or an operation taken over from a process that is gone.
        A backend whose service keeps no keys may check, when ``attempt > 1``, whether the earlier call landed. The
        same holds for notes and commits."""

    @hookspec
    def memcore_remember(self, session: Session, note: Note, key: str, attempt: int) -> None:
        """Store a note the agent chose to remember, made while ``session`` was current. Ordered with the session's
        writes, on a lane worker. ``key`` and ``attempt``: as for ``memcore_write``."""

    @hookspec
    def memcore_commit(self, session: Session, key: str, attempt: int) -> None:
        """Commit ``session``: the service may now extract memories from it. Called on a lane worker only after
        every write and note accepted for the session before the commit was asked for has finished, and never while
        one of them is in flight. Called at most once per change: not again until something new is written."""

    @hookspec
    def memcore_recall(
        self, query: str, session: Session | None, limit: int, user_id: str | None
    ) -> Sequence[Recollection]:
        """Return at most ``limit`` recollections relevant to ``query``, best first, of user ``user_id`` only (``None``:
        the default user; it equals ``session.user_id`` when there is a session). ``session`` is the session the
        runtime is in (``None`` outside any), which a backend that keeps sessions apart may use to scope the search.
        Called on a recall worker, possibly while writes of the same session run."""
        raise NotImplementedError

    @hookspec
    def memcore_history(self, session: Session) -> Sequence[Message]:
        """Optional read-back: the messages stored for ``session``, in the order they were stored. Used by tests and
        the conformance suite to check order and placement. A TransientError (the service still settling) makes
        the suite ask again within its retry deadline."""
        raise NotImplementedError

    @hookspec
    def memcore_rewind(self, session: Session, turns: int) -> None:
        """Remove the last ``turns`` turns (writes) stored in ``session``: the runtime undid them (``/undo``). Called on
        a lane worker after the session's earlier operations finished; turns that had not reached the backend yet
        were dropped by the core and are not counted in ``turns``. Optional: a backend without it keeps undone turns
        that were already delivered."""

    @hookspec
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        """Erase what the service holds of user ``user_id`` (``None``: the default user): of its session
        ``session_id`` only, or everything of that user when ``session_id`` is None (turns, notes, and the memories
        extracted from them, as far as the service allows). Called on a lane worker after every operation of that
        scope accepted before the forget finished, and before any accepted after it starts. Return None when all is
        erased, else a short text saying exactly what the service keeps (reported in ``Forgetting.kept``). Optional;
        a backend without it keeps everything, and ``Forgetting.kept`` says so."""

    @hookspec
    def memcore_close(self) -> None:
        """Release the backend's resources. Called once by ``Memory.close()`` after its lanes drained (or the close
        deadline passed)."""


class ObserverSpec:
    """Hooks for observer plugins (entry-point group ``memcore.plugins``)."""

    @hookspec
    def memcore_event(self, event: Event) -> None:
        """Hear what happened to an operation: delivered, committed, failed, retried, replayed or dropped. Called on
        the worker thread that ran the operation; keep it quick. An observer that raises is logged and otherwise
        ignored."""

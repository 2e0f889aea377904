"""SessionLifecycle: one conversation's view of memory (G1, G5, G6, G7)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import attrs

from . import _validate as check
from ._errors import InvalidSwitch, UnknownSwitchReason
from ._forget import Forgetting
from ._recall import RecallCall
from ._records import Message, Note, Recollection, Session

if TYPE_CHECKING:
    from ._memory import Memory

#: The reasons ``switch`` knows. ``new``, ``branch``, ``resume`` and a rotating ``compress`` move to another id and
#: commit the old session; ``compress`` with the same id commits and keeps the session; ``rewind`` keeps the id,
#: invalidates recall and commits nothing.
SWITCH_REASONS = frozenset({"new", "branch", "resume", "compress", "rewind"})


class _State(NamedTuple):
    """The current session and generation, swapped as one object so that readers never see half a switch."""

    session: Session
    generation: int


#: What :meth:`SessionLifecycle.take_prefetch_result` found; see :class:`PrefetchResult`.
PrefetchState = Literal["ready", "pending", "stale", "none"]


@attrs.frozen(kw_only=True)
class PrefetchResult:
    """What :meth:`SessionLifecycle.take_prefetch_result` found, and the recollections if it found them.

    ``state`` is one of:

    - ``"ready"``: the prefetch queued in the current session and generation has finished (every backend answered,
      or its own timeout passed and what arrived by then is final). ``recollections`` is its answer, possibly empty:
      an empty ``ready`` means the search ran and found nothing. Handed out once; the next take finds ``"none"``.
    - ``"pending"``: that prefetch is still running after ``timeout``. Nothing is consumed: take again later.
    - ``"stale"``: a prefetch was queued, but a switch or rewind came after it (G6). It was dropped and is never
      handed out; reported once, then ``"none"``.
    - ``"none"``: no prefetch was queued since the last one was taken (or reported stale).

    Only ``ready`` carries recollections.
    """

    state: PrefetchState
    recollections: tuple[Recollection, ...] = ()


class _Prefetch(NamedTuple):
    """A queued prefetch: the state object it was asked under and its recall."""

    state: _State
    call: RecallCall


class SessionLifecycle:
    """One conversation's lifecycle. Every method but ``recall`` returns at once (G5); writes are bound to the session
    that is current when the method is called (G1). Safe to use from several threads."""

    __slots__ = ("__weakref__", "_dropped", "_lock", "_memory", "_prefetch", "_state")

    def __init__(self, memory: Memory, session: Session):
        self._memory = memory
        self._state = _State(session, 0)
        self._lock = threading.Lock()
        self._prefetch: _Prefetch | None = None
        self._dropped = False  # a switch dropped a prefetch that was never taken: the next take says "stale"

    @property
    def session_id(self) -> str:
        """The current session id."""
        return self._state.session.id

    @property
    def session(self) -> Session:
        """The current session record (id and parent id)."""
        return self._state.session

    @property
    def user_id(self) -> str | None:
        """Whose conversation this is (``None``: the default user); kept across switches."""
        return self._state.session.user_id

    @property
    def generation(self) -> int:
        """Bumped by every switch and rewind; recall asked for an older generation is never handed out (G6)."""
        return self._state.generation

    # -- writes ------------------------------------------------------------------------------------------------

    def sync_turn(
        self,
        user_content: str,
        assistant_content: str,
        messages: Iterable[Mapping[str, Any] | Message] | None = None,
    ) -> None:
        """Write one finished turn to the current session. ``messages``, if given, are the turn's OpenAI-style
        messages (tool calls included) and are written instead of the two texts."""
        user = check.text(user_content, "user_content")
        assistant = check.text(assistant_content, "assistant_content")
        turn: tuple[Message, ...]
        if messages is None:
            turn = (Message(role="user", content=user), Message(role="assistant", content=assistant))
        else:
            turn = check.messages(messages)
        self._memory._write(self._state.session, turn)

    def remember(self, text: str, kind: str = "note", metadata: Mapping[str, Any] | None = None) -> None:
        """Write a note (a preference, a fact...) in the current session's lane, ordered with its turns."""
        note = Note(text=check.text(text, "text"), kind=check.text(kind, "kind"), metadata=check.metadata(metadata))
        self._memory._remember(self._state.session, note)

    def end(self) -> None:
        """Ask for a commit of the current session (queued behind its writes; nothing happens if it is clean)."""
        self._memory._commit(self._state.session)

    def switch(
        self, session_id: str, reason: str = "new", parent_session_id: str | None = None, *, turns: int | None = None
    ) -> None:
        """Move to ``session_id`` for ``reason`` (one of :data:`SWITCH_REASONS`); see G7. Bad input raises and
        changes nothing.

        ``turns`` (rewind only): how many of the session's latest turns the runtime undid. They are undone in
        memory too: those not yet delivered are dropped, and a backend with ``memcore_rewind`` removes the ones it
        already has (one without keeps them). ``None``: the rewind only invalidates recall, as before."""
        if reason not in SWITCH_REASONS:
            raise UnknownSwitchReason(f"unknown switch reason {reason!r}; expected one of {sorted(SWITCH_REASONS)}")
        if turns is not None and (
            reason != "rewind" or not isinstance(turns, int) or isinstance(turns, bool) or turns < 1
        ):
            raise InvalidSwitch(f"turns is for a rewind, and a positive integer: got turns={turns!r} for {reason!r}")
        new_id = check.session_id(session_id, "new session id")
        if parent_session_id is not None:
            check.session_id(parent_session_id, "parent session id")
        with self._lock:
            old = self._state.session
            if reason == "rewind":
                if new_id != old.id:
                    raise InvalidSwitch(f"rewind keeps the session: got {new_id!r} while in {old.id!r}")
                commit = False
                new = old
            elif new_id == old.id:
                commit = reason == "compress"  # in-place compression: commit what was written, stay, re-armed
                new = old
            else:
                commit = True
                parent = parent_session_id
                if parent is None and reason in ("branch", "compress"):
                    parent = old.id
                new = Session(id=new_id, parent_id=parent, user_id=old.user_id)
            self._state = _State(new, self._state.generation + 1)
            if self._prefetch is not None:
                self._prefetch = None
                self._dropped = True
        if commit:
            self._memory._commit(old)
        if turns is not None:
            self._memory._rewind(old, turns)

    def forget(self) -> Forgetting:
        """Erase the current session (of this lifecycle's user) on every backend; see :meth:`Memory.forget`. Recall
        asked for before it is never handed out after it (the generation moves on, as for a rewind)."""
        session = self._state.session
        handle = self._memory.forget(user_id=session.user_id, session_id=session.id)  # raises: nothing changed
        with self._lock:
            self._state = _State(self._state.session, self._state.generation + 1)
            if self._prefetch is not None:
                self._prefetch = None
                self._dropped = True
        return handle

    # -- recall ------------------------------------------------------------------------------------------------

    def recall(self, query: str, limit: int = 5, timeout: float = 2.0) -> list[Recollection]:
        """Recall across backends for the current session, returning within ``timeout`` what has arrived."""
        call = self._memory._start_recall(query, self._state.session, limit, timeout)
        call.wait()
        return call.results()

    async def arecall(self, query: str, limit: int = 5, timeout: float = 2.0) -> list[Recollection]:
        """``recall`` for asyncio: awaits the answers without blocking the event loop."""
        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(arrived.set)

        call = self._memory._start_recall(query, self._state.session, limit, timeout)
        call.add_done_callback(wake)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(arrived.wait(), timeout)
        return call.results()

    def queue_prefetch(self, query: str, limit: int = 5, timeout: float = 5.0) -> None:
        """Start a recall in the background for the next turn, replacing any prefetch not yet taken;
        ``take_prefetch_result`` (or ``take_prefetch``) hands it out."""
        with self._lock:
            state = self._state
            self._prefetch = _Prefetch(state, self._memory._start_recall(query, state.session, limit, timeout))
            self._dropped = False

    def take_prefetch_result(self, timeout: float = 0.0) -> PrefetchResult:
        """The prefetch queued in this session and generation, waiting at most ``timeout`` seconds for it to finish,
        with its state: ``ready`` (handed out once; possibly no recollections), ``pending`` (still running; not
        consumed), ``stale`` (dropped by a switch or rewind, G6) or ``none`` (nothing queued). See
        :class:`PrefetchResult`."""
        slot = self._prefetch
        if slot is not None and timeout > 0 and not slot.call.done:
            slot.call.wait(timeout)
        with self._lock:
            slot = self._prefetch  # again: a switch or a newer queue_prefetch may have replaced it meanwhile
            if slot is None or slot.state is not self._state:
                state: PrefetchState = "stale" if self._dropped or slot is not None else "none"
                self._prefetch = None
                self._dropped = False
                return PrefetchResult(state=state)
            if not slot.call.done:
                return PrefetchResult(state="pending")
            self._prefetch = None
        return PrefetchResult(state="ready", recollections=tuple(slot.call.results()))

    def take_prefetch(self, timeout: float = 0.0) -> list[Recollection]:
        """The prefetched recollections, waiting at most ``timeout`` for them. Empty if none was queued, if it is not
        ready yet, if it found nothing, or if it was asked for before a switch or rewind (G6); handed out once.
        ``take_prefetch_result`` tells these apart."""
        return list(self.take_prefetch_result(timeout).recollections)

    def __repr__(self) -> str:
        return f"<SessionLifecycle session={self.session_id!r} generation={self.generation}>"

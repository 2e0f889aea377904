"""``MemcoreMemoryService``: a google-adk ``BaseMemoryService`` on any memcore backend."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import memcore
from google.adk.memory import BaseMemoryService
from google.adk.memory.base_memory_service import SearchMemoryResponse
from google.adk.memory.memory_entry import MemoryEntry
from google.genai import types

from ._events import event_key, event_messages, memory_text, turn_texts, turns

if TYPE_CHECKING:
    from google.adk.events.event import Event
    from google.adk.sessions.session import Session

log = logging.getLogger("memcore_adk")

#: The memcore session that ``add_events_to_memory`` writes to when ADK names none.
EVENTS_SESSION = "adk:events"
#: The memcore session that ``add_memory`` keeps its notes in (memcore notes belong to a session).
MEMORIES_SESSION = "adk:memories"


def default_user_id(app_name: str, user_id: str) -> str:
    """memcore's user for ADK's (app, user): ``"<app>/<user>"``, the app name percent-encoded (``quote(app,
    safe="")``: only ``/``, ``%`` and other reserved characters change), so that no two (app, user) pairs meet."""
    return f"{quote(app_name, safe='')}/{user_id}"


def memory_id(session_id: str, item: object = None) -> str:
    """The ``MemoryEntry.id`` of a recollection: the memcore session it came from (percent-encoded) and, after
    ``#``, the backend's own id of the item. :meth:`MemcoreMemoryService.delete_memory` erases that session."""
    sid = quote(session_id, safe="")
    return sid if item is None else f"{sid}#{item}"


def session_of(memory_id: str) -> str:
    """The memcore session a memory id names (the inverse of :func:`memory_id`'s first part)."""
    return unquote(memory_id.split("#", 1)[0])


class MemoryNotForgotten(RuntimeError):
    """A delete that a backend could not carry out in full: ``forgetting`` says what it kept or why it failed."""

    def __init__(self, message: str, forgetting: memcore.Forgetting):
        super().__init__(message)
        self.forgetting = forgetting


class MemcoreMemoryService(BaseMemoryService):
    """ADK's long-term memory on memcore: ``MemcoreMemoryService(memcore.Memory(...))``, or
    ``MemcoreMemoryService(backends=[...], settings={...}, ...)`` with the arguments of :class:`memcore.Memory`
    (then :meth:`close` closes it). Every backend must keep users apart (``separates_users``): ADK's users become
    memcore users (:func:`default_user_id`, or ``user_id=`` a function of ``(app_name, user_id)``).

    Writing: ``add_session_to_memory`` and ``add_events_to_memory`` write each event once, as turns (a turn begins
    at a user message), then ask for a commit (``SessionLifecycle.end``, in the background). memcore's idempotency
    keys cover one accepted operation, not an ADK event handed over again, so this service remembers the keys of the
    events it wrote (:func:`~memcore_adk._events.event_key`: the event id) in one LRU of ``max_seen_events`` keys,
    refreshed each time an event is handed over. An event is written again only if it comes back after that many
    other events were handed over since it last was, or after a restart. ``max_sessions`` bounds the lifecycles kept
    (one per ADK session seen recently) and the deleted sessions remembered.

    Deleting: memcore erases whole sessions or users, not single items. A memory id (``MemoryEntry.id``) names the
    session its memory came from, and ``delete_memory`` erases that whole session; :meth:`forget` erases a session
    or everything of a user. Events of an erased session or user that ADK hands over again are not written back
    (while the deletion is among the last ``max_sessions`` remembered, in this process).
    """

    def __init__(
        self,
        memory: memcore.Memory | None = None,
        *,
        user_id: Callable[[str, str], str] | None = None,
        recall_limit: int = 10,
        recall_timeout: float = 2.0,
        forget_timeout: float = 10.0,
        max_seen_events: int = 100_000,
        max_sessions: int = 1024,
        **memory_args: Any,
    ):
        if memory is not None and memory_args:
            raise TypeError(f"give a memcore.Memory or the arguments to make one, not both: {sorted(memory_args)}")
        if max_seen_events < 1 or max_sessions < 1:
            raise ValueError("max_seen_events and max_sessions must be positive")
        self._owns = memory is None
        self.memory = memory if memory is not None else memcore.Memory(**memory_args)
        self._user_id = user_id or default_user_id
        self.recall_limit = recall_limit
        self.recall_timeout = recall_timeout
        self.forget_timeout = forget_timeout
        self.max_seen_events = max_seen_events
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._lifecycles: OrderedDict[tuple[str, str], memcore.SessionLifecycle] = OrderedDict()
        self._forgotten: OrderedDict[tuple[str, str | None], float] = OrderedDict()
        try:  # refuse at once a Memory whose backends would mix users (a lifecycle object costs no I/O)
            self.memory.lifecycle("memcore-adk", user_id="memcore-adk")
        except memcore.UsersNotSeparated:
            if self._owns:
                self.memory.close(timeout=1.0)
            raise

    # -- ids ---------------------------------------------------------------------------------------------------

    def user_id(self, app_name: str, user_id: str) -> str:
        """memcore's user id for ADK's (``app_name``, ``user_id``), checked as memcore checks it."""
        if not isinstance(app_name, str) or not isinstance(user_id, str) or not app_name or not user_id:
            raise memcore.InvalidSessionId(f"app_name and user_id must be non-empty strings: {app_name!r}, {user_id!r}")
        user = self._user_id(app_name, user_id)
        if len(user) > 256:
            raise memcore.InvalidSessionId(
                f"app {app_name!r} and user {user_id!r} make a memcore user id of {len(user)} characters; at most 256"
            )
        return user

    # -- writing -----------------------------------------------------------------------------------------------

    async def add_session_to_memory(self, session: Session) -> None:
        """Write the session's events not written yet, as turns, and commit the session (in the background)."""
        user = self.user_id(session.app_name, session.user_id)
        self._ingest(user, session.id, session.events)

    async def add_events_to_memory(
        self,
        *,
        app_name: str,
        user_id: str,
        events: Sequence[Event],
        session_id: str | None = None,
        custom_metadata: Mapping[str, object] | None = None,
    ) -> None:
        """Write ``events`` (those not written yet) to ``session_id`` (:data:`EVENTS_SESSION` when None), as turns,
        and commit it. ``custom_metadata`` is not kept: memcore's messages carry none."""
        user = self.user_id(app_name, user_id)
        self._ingest(user, session_id or EVENTS_SESSION, events)

    async def add_memory(
        self,
        *,
        app_name: str,
        user_id: str,
        memories: Sequence[MemoryEntry],
        custom_metadata: Mapping[str, object] | None = None,
    ) -> None:
        """Keep each memory as a memcore note (``kind="memory"``; author, timestamp, id and both metadata as the
        note's metadata) in the user's :data:`MEMORIES_SESSION`, once per entry id, and commit that session."""
        user = self.user_id(app_name, user_id)
        with self._lock:
            lc = self._lifecycle(user, MEMORIES_SESSION)
            for entry in memories:
                text = memory_text(entry)
                key = (user, MEMORIES_SESSION, entry.id) if entry.id else None
                if not text or (key is not None and self._was_seen(key)):
                    continue
                meta: dict[str, Any] = dict(custom_metadata or {})
                meta.update(entry.custom_metadata)
                meta.update({k: v for k, v in (("author", entry.author), ("timestamp", entry.timestamp)) if v})
                if entry.id:
                    meta["id"] = entry.id
                lc.remember(text, kind="memory", metadata=meta or None)
                if key is not None:
                    self._see(key)
            lc.end()

    def _ingest(self, user: str, session_id: str, events: Sequence[Event]) -> None:
        # One lock around the whole batch: two concurrent hand-overs of one session must not both find an event
        # unwritten. What it holds costs microseconds (sync_turn only queues).
        with self._lock:
            lc = self._lifecycle(user, session_id)
            floor = max(self._forgotten.get((user, session_id), 0.0), self._forgotten.get((user, None), 0.0))
            fresh: list[Event] = []
            for event in events:
                key = (user, session_id, event_key(event))
                if self._was_seen(key):
                    continue
                if floor and event.timestamp <= floor:  # erased: ADK still has it, memory must not get it back
                    self._see(key)
                    continue
                fresh.append(event)
            for turn in turns(fresh):
                messages = [m for event in turn for m in event_messages(event)]
                if messages:
                    user_text, assistant_text = turn_texts(messages)
                    lc.sync_turn(user_text, assistant_text, messages=messages)  # raises: nothing of it marked
                for event in turn:
                    self._see((user, session_id, event_key(event)))
            lc.end()

    def _was_seen(self, key: tuple[str, str, str]) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        return False

    def _see(self, key: tuple[str, str, str]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_seen_events:
            self._seen.popitem(last=False)

    def _lifecycle(self, user: str, session_id: str) -> memcore.SessionLifecycle:
        key = (user, session_id)
        lc = self._lifecycles.get(key)
        if lc is None:
            lc = self._lifecycles[key] = self.memory.lifecycle(session_id, user_id=user)
            while len(self._lifecycles) > self.max_sessions:  # memcore keeps its work; only this handle goes
                self._lifecycles.popitem(last=False)
        else:
            self._lifecycles.move_to_end(key)
        return lc

    # -- recall ------------------------------------------------------------------------------------------------

    async def search_memory(self, *, app_name: str, user_id: str, query: str) -> SearchMemoryResponse:
        """Recall ``query`` in this user's memory (never another user's), at most ``recall_limit`` memories within
        ``recall_timeout`` seconds, whatever the backends do."""
        user = self.user_id(app_name, user_id)
        found = await asyncio.to_thread(self.memory.recall, query, self.recall_limit, self.recall_timeout, user_id=user)
        return SearchMemoryResponse(memories=[self._entry(r) for r in found])

    @staticmethod
    def _entry(rec: memcore.Recollection) -> MemoryEntry:
        meta = dict(rec.metadata)
        kind = meta.get("kind")
        author = "user" if kind == "user" else "model" if kind == "assistant" else None
        extra: dict[str, Any] = {"source": rec.source, "score": rec.score, "session_id": rec.session_id, **meta}
        timestamp = meta.get("timestamp") or meta.get("created_at")
        return MemoryEntry(
            content=types.Content(role="user" if author == "user" else "model", parts=[types.Part(text=rec.text)]),
            custom_metadata={k: v for k, v in extra.items() if v is not None},
            id=memory_id(rec.session_id, meta.get("id")) if rec.session_id else None,
            author=author,
            timestamp=str(timestamp) if timestamp is not None else None,
        )

    # -- forgetting --------------------------------------------------------------------------------------------

    def forget(self, app_name: str, user_id: str, session_id: str | None = None) -> memcore.Forgetting:
        """Erase this user's session ``session_id``, or everything of the user when None, on every backend; returns
        memcore's :class:`~memcore.Forgetting` at once (``wait(timeout)``, ``ok``, ``kept``)."""
        user = self.user_id(app_name, user_id)
        with self._lock:
            self._forgotten[(user, session_id)] = time.time()
            self._forgotten.move_to_end((user, session_id))
            while len(self._forgotten) > self.max_sessions:
                self._forgotten.popitem(last=False)
            return self.memory.forget(user_id=user, session_id=session_id)

    async def delete_memory(self, *, app_name: str, user_id: str, memory_id: str | None = None) -> None:
        """Erase the memory ``memory_id`` names, that is the whole memcore session it came from (memcore's smallest
        unit of erasure), and wait for it (``forget_timeout``). Raises :class:`MemoryNotForgotten` if a backend
        kept or failed to erase it, ``TimeoutError`` if it is still running (it is journaled and finishes later)."""
        if not memory_id:
            raise ValueError("delete_memory needs the id of a memory from search_memory; forget() erases a user")
        handle = self.forget(app_name, user_id, session_of(memory_id))
        if not await asyncio.to_thread(handle.wait, self.forget_timeout):
            raise TimeoutError(f"forgetting {memory_id!r} is still running after {self.forget_timeout} s")
        if not handle.ok:
            raise MemoryNotForgotten(f"memory {memory_id!r} was not erased in full: {handle!r}", handle)

    # -- shutdown ----------------------------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> memcore.Report:
        """Wait until everything written so far is delivered (commits included)."""
        return self.memory.flush(timeout)

    def close(self, timeout: float = 10.0) -> memcore.Report:
        """Close the Memory if this service made it (commits, drains, closes its backends), else flush it."""
        return self.memory.close(timeout) if self._owns else self.memory.flush(timeout)

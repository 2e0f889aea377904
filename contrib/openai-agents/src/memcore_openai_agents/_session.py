"""``MemorySession``: an openai-agents ``Session`` that keeps the history in an inner session and writes each finished
turn to long-term memory through a memcore ``SessionLifecycle``."""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import memcore

from . import _items

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.memory import Session, SessionSettings

log = logging.getLogger("memcore_openai_agents")


def _accepts_wrapper(method: Any) -> bool:
    try:
        parameter = inspect.signature(method).parameters.get("wrapper")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)


class _Written:
    """A turn written to memory: how many of its history items are still in the history, and whether a pop
    reached it (it was then rewound in memory, once)."""

    __slots__ = ("items", "rewound")

    def __init__(self, items: int, *, in_memory: bool):
        self.items = items
        self.rewound = not in_memory  # nothing of it reached memory: a pop has nothing to undo there


class MemorySession:
    """A ``Session`` for ``Runner.run(..., session=)`` that adds long-term memory to any history session.

    History: every protocol call goes to ``inner`` (``SQLiteSession``, a database session, your own); the SDK sees
    exactly the inner session's history. Memory: the items of each run are gathered into one turn and written with
    ``SessionLifecycle.sync_turn`` (user text, assistant text, tool calls and outputs as OpenAI-style messages) when
    the run has finished: its items end in an assistant message and every tool call has its output. A run that
    stopped before that (an error, an interruption, max turns) is written when the next user message arrives, or at
    :meth:`end` or ``clear_session``. Writing never blocks the run nor raises into it (memcore's errors are logged).

    Commits: :meth:`end` and ``clear_session`` ask memcore to commit the session (the backend extracts memories);
    sessions that never end use ``memcore.Memory(commit_after_turns=..., commit_after_idle=...)``.

    ``pop_item`` (an undo) that reaches a turn already written rewinds that whole turn in memory
    (``switch(reason="rewind", turns=1)``) on its first pop; items of the run still gathering are just dropped.

    Recall: :meth:`recall`, and for the agent :func:`~memcore_openai_agents.memory_instructions` and
    :data:`~memcore_openai_agents.recall_memory`, which find this session through the run's context
    (``Runner.run(..., session=s, context=s)``, or a context object with a ``memory_session`` attribute).

    Bounds: the gathered run is written early once it holds ``max_turn_items`` items; ``max_undo_turns`` written
    turns are remembered for ``pop_item``.

    ``inner`` must be a local history session: the SDK treats server-managed conversations
    (``OpenAIConversationsSession``) and compaction sessions specially, which it cannot see through a wrapper.
    """

    def __init__(
        self,
        inner: Session,
        memory: memcore.Memory,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        recall_limit: int = 5,
        recall_timeout: float = 2.0,
        max_turn_items: int = 1000,
        max_undo_turns: int = 100,
    ):
        self.inner = inner
        self.session_id = inner.session_id
        self.memory = memory
        #: The memcore lifecycle (its session id is ``session_id``, default the inner session's id).
        self.lifecycle = memory.lifecycle(session_id or inner.session_id, user_id=user_id)
        self.recall_limit = recall_limit
        self.recall_timeout = recall_timeout
        self.max_turn_items = max_turn_items
        self._lock = threading.Lock()
        self._run: list[Any] = []  # the items of the run being gathered
        self._written: deque[_Written] = deque(maxlen=max_undo_turns)
        self._turn = 0  # counts user messages that began a run: the key of the turn's recall
        self._query = ""  # the user's text in the current run
        self._recalled: tuple[int, list[memcore.Recollection]] | None = None
        self._wrapped = all(
            _accepts_wrapper(getattr(inner, name, None))
            for name in ("get_items", "add_items", "pop_item", "clear_session")
        )

    def __repr__(self) -> str:
        return f"MemorySession({self.inner!r}, lifecycle={self.lifecycle!r})"

    @property
    def session_settings(self) -> SessionSettings | None:
        return getattr(self.inner, "session_settings", None)

    @session_settings.setter
    def session_settings(self, value: SessionSettings | None) -> None:
        self.inner.session_settings = value

    def _pass(self, wrapper: Any) -> dict[str, Any]:
        return {"wrapper": wrapper} if wrapper is not None and self._wrapped else {}

    # -- the Session protocol ----------------------------------------------------------------------------------

    async def get_items(self, limit: int | None = None, *, wrapper: Any = None) -> list[TResponseInputItem]:
        return await self.inner.get_items(limit, **self._pass(wrapper))

    async def add_items(self, items: list[TResponseInputItem], *, wrapper: Any = None) -> None:
        await self.inner.add_items(items, **self._pass(wrapper))
        with self._lock:
            for item in items:
                k = _items.kind(item)
                if k == "user" and any(_items.kind(i) not in ("user", "system") for i in self._run):
                    self._write_run()  # a run that never finished: it still happened
                if k == "user" and not any(_items.kind(i) == "user" for i in self._run):
                    self._turn += 1
                    self._query = ""
                if k == "user":
                    text = _items.text_of(_items.as_mapping(item).get("content"))
                    self._query = f"{self._query}\n{text}".strip() if self._query else text
                self._run.append(item)
                if len(self._run) >= self.max_turn_items:
                    self._write_run()
            if _items.finished(self._run):
                self._write_run()

    async def pop_item(self, *, wrapper: Any = None) -> TResponseInputItem | None:
        item = await self.inner.pop_item(**self._pass(wrapper))
        if item is None:
            return None
        with self._lock:
            if self._run:
                self._run.pop()
            elif self._written:
                last = self._written[-1]
                if not last.rewound:
                    last.rewound = True
                    self._rewind(1)
                last.items -= 1
                if last.items <= 0:
                    self._written.pop()
            else:  # a turn from before this process: no count to undo, but its recall is stale
                self._rewind(None)
        return item

    async def clear_session(self, *, wrapper: Any = None) -> None:
        await self.inner.clear_session(**self._pass(wrapper))
        with self._lock:
            self._write_run()
            self._written.clear()
        self.end()

    # -- memory ------------------------------------------------------------------------------------------------

    def end(self) -> None:
        """Write the run still gathering, if any, and ask memcore to commit the session (in the background)."""
        with self._lock:
            self._write_run()
        try:
            self.lifecycle.end()
        except memcore.MemcoreError as exc:
            log.warning("memcore: commit of %s not queued: %r", self.lifecycle.session_id, exc)

    def flush_turn(self) -> None:
        """Write the run still gathering now, finished or not (e.g. after an interrupted run you will not resume)."""
        with self._lock:
            self._write_run()

    async def recall(
        self, query: str, limit: int | None = None, timeout: float | None = None
    ) -> list[memcore.Recollection]:
        """Recall ``query`` in this user's long-term memory (never another user's), within ``timeout``."""
        return await self.lifecycle.arecall(
            query,
            limit=self.recall_limit if limit is None else limit,
            timeout=self.recall_timeout if timeout is None else timeout,
        )

    async def turn_recollections(self) -> list[memcore.Recollection]:
        """What memory holds about the current run's user message: one search per turn, however many model calls
        the run makes (each asks for its instructions again). Never raises: a failed recall is logged, and empty."""
        with self._lock:
            turn, query, recalled = self._turn, self._query, self._recalled
        if recalled is not None and recalled[0] == turn:
            return recalled[1]
        try:
            found = await self.recall(query) if query else []
        except memcore.MemcoreError as exc:  # the run goes on without memory
            log.warning("memcore: recall for %s failed: %r", self.lifecycle.session_id, exc)
            found = []
        with self._lock:
            if self._turn == turn:
                self._recalled = (turn, found)
        return found

    def _write_run(self) -> None:
        run, self._run = self._run, []
        if not run:
            return
        turn = _items.messages(run)
        written = False
        if turn:
            user, assistant = _items.turn_texts(turn)
            try:
                self.lifecycle.sync_turn(user, assistant, messages=turn)
                written = True
            except memcore.MemcoreError as exc:
                log.warning("memcore: turn of %s not written: %r", self.lifecycle.session_id, exc)
        self._written.append(_Written(len(run), in_memory=written))

    def _rewind(self, turns: int | None) -> None:
        sid = self.lifecycle.session_id
        try:
            self.lifecycle.switch(sid, reason="rewind", turns=turns)
        except memcore.MemcoreError as exc:
            log.warning("memcore: rewind of %s not queued: %r", sid, exc)

"""MemcoreMemoryProvider: hermes-agent's MemoryProvider hooks mapped onto one memcore SessionLifecycle.

Threads (hermes-agent 0.19.0): ``sync_turn`` and ``queue_prefetch`` run on the MemoryManager's single background
worker, possibly after the agent has already switched session; ``prefetch`` runs on a per-call daemon thread that the
manager abandons after 8 s; ``on_session_switch`` runs inline on the agent's thread (``/branch``, ``/resume``,
compression, ``/undo``) or on the background worker behind ``on_session_end`` (``/new`` with history). Every hook here
returns at once (memcore's G5) except ``prefetch``/the recall tool (bounded by ``prefetch_timeout``/``recall_timeout``)
and ``shutdown`` (bounded by ``shutdown_timeout``), and none lets an exception reach hermes-agent.

Many conversations in one process (hermes' gateway keeps a provider per chat): every provider with the same Memory
configuration shares one :class:`memcore.Memory` (``_shared``), and hermes' ``user_id`` is the memcore user.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import memcore

from ._shared import Lease, registry

try:  # hermes-agent is an optional dependency: the class must import without it (entry points, the CLI, docs).
    from agent.memory_provider import MemoryProvider as _Base
except ImportError:  # pragma: no cover - exercised only without hermes-agent
    _Base = object  # type: ignore[assignment,misc,unused-ignore]

log = logging.getLogger("memcore_hermes")

PROVIDER_NAME = "memcore"
#: Where the provider's settings live in ``$HERMES_HOME/config.yaml`` (hermes' convention for plugin settings).
CONFIG_SECTION = ("plugins", "memcore")
RECALL_TOOL = "memcore_recall"

DEFAULTS: dict[str, Any] = {
    "backends": ["sqlite"],
    "settings": {},
    "journal": True,
    "workers": 4,  # memcore's lane workers: requests in flight at once (a hung request holds one)
    "recall_limit": 5,
    "prefetch_timeout": 2.0,  # below MemoryManager's 8 s prefetch cut-off
    "recall_timeout": 3.0,
    "shutdown_timeout": 5.0,  # MemoryManager.shutdown_all drains its own queue for 5 s before this
    "write_contexts": ["primary"],
    "durability": "group",  # memcore's journal: "group" (background writes) or "sync" (every call waits for disk)
    "commit_after_turns": None,  # commit a session once this many writes are uncommitted (gateway chats never end)
    "commit_after_idle": None,  # commit a dirty session after this many seconds without a write
    "user_scope": "user",  # memcore user: hermes' user_id ("user"), "<platform>:<user_id>" ("platform"), none ("none")
}

#: The settings that make a Memory: providers that agree on them (and on ``$MEMCORE_HOME``) share one.
MEMORY_SETTINGS = (
    "backends",
    "settings",
    "journal",
    "workers",
    "durability",
    "commit_after_turns",
    "commit_after_idle",
)
USER_SCOPES = ("user", "platform", "none")

#: hermes-agent's ``reason`` strings (and flags) to memcore switch reasons.
_REASONS = {
    "new_session": "new",
    "new": "new",
    "reset": "new",
    "branch": "branch",
    "fork": "branch",
    "resume": "resume",
    "compression": "compress",
    "compress": "compress",
    "rewind": "rewind",
    "undo": "rewind",
}


def switch_reason(new_session_id: str, current_id: str, *, reason: str, reset: bool, rewound: bool) -> str:
    """The memcore reason for one hermes ``on_session_switch`` call."""
    if rewound and new_session_id == current_id:
        return "rewind"
    mapped = _REASONS.get(reason.strip().lower()) if reason else None
    if mapped == "rewind" and new_session_id != current_id:
        mapped = None
    if mapped is not None:
        return mapped
    if reset:
        return "new"
    return "resume"  # another id, no reset, no known reason: the logical conversation continues elsewhere


def load_hermes_config(hermes_home: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``plugins.memcore`` from ``$HERMES_HOME/config.yaml`` ({} if absent or unreadable)."""
    if not hermes_home:
        return {}
    path = Path(hermes_home) / "config.yaml"
    if not path.is_file():
        return {}
    try:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except Exception as exc:
        log.warning("memcore: could not read %s: %r", path, exc)
        return {}
    for key in CONFIG_SECTION:
        data = data.get(key) if isinstance(data, Mapping) else None
    return dict(data) if isinstance(data, Mapping) else {}


def resolve_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults completed by ``config``; ``backend: name`` is accepted for ``backends: [name]``."""
    merged = dict(DEFAULTS)
    raw = dict(config or {})
    if "backend" in raw and "backends" not in raw:
        raw["backends"] = [raw.pop("backend")]
    raw.pop("backend", None)
    merged.update(raw)
    backends = merged["backends"]
    if isinstance(backends, str):
        backends = [b.strip() for b in backends.split(",") if b.strip()]
    merged["backends"] = list(backends)
    merged["settings"] = {str(k): dict(v or {}) for k, v in dict(merged["settings"] or {}).items()}
    for key in ("prefetch_timeout", "recall_timeout", "shutdown_timeout"):
        merged[key] = float(merged[key])
    merged["recall_limit"] = int(merged["recall_limit"])
    merged["workers"] = int(merged["workers"])
    if merged["commit_after_turns"] is not None:
        merged["commit_after_turns"] = int(merged["commit_after_turns"])
    if merged["commit_after_idle"] is not None:
        merged["commit_after_idle"] = float(merged["commit_after_idle"])
    if not isinstance(merged["journal"], bool):
        merged["journal"] = str(merged["journal"])
    merged["durability"] = str(merged["durability"])
    merged["user_scope"] = str(merged["user_scope"] or "none").strip().lower()
    if merged["user_scope"] not in USER_SCOPES:
        raise ValueError(f"user_scope must be one of {', '.join(USER_SCOPES)}: got {merged['user_scope']!r}")
    return merged


def memory_key(config: Mapping[str, Any]) -> str:
    """Which shared Memory a resolved config uses: its Memory settings and the memcore home (where the default
    store and the journal live), as canonical JSON."""
    wanted = {key: config[key] for key in MEMORY_SETTINGS}
    wanted["memcore_home"] = str(memcore.memcore_home())
    return json.dumps(wanted, sort_keys=True, default=repr)


def open_memory(config: Mapping[str, Any]) -> memcore.Memory:
    """A Memory for a resolved config."""
    return memcore.Memory(
        backends=config["backends"],
        settings=config["settings"] or None,
        journal=config["journal"],
        workers=config["workers"],
        durability=config["durability"],
        commit_after_turns=config["commit_after_turns"],
        commit_after_idle=config["commit_after_idle"],
    )


def memcore_user(config: Mapping[str, Any], init: Mapping[str, Any]) -> str | None:
    """The memcore user for hermes' ``initialize`` keyword arguments: hermes' gateway passes ``user_id`` (the
    platform's sender id, from ``AIAgent(user_id=...)``) and ``platform``; the CLI passes neither (the default user)."""
    scope = config["user_scope"]
    user = str(init.get("user_id") or "").strip()
    if scope == "none" or not user:
        return None
    if scope == "platform":
        platform = str(init.get("platform") or "").strip()
        return f"{platform}:{user}" if platform else user
    return user


def _plain_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """The fields memcore keeps, with non-text content parts (images, audio) dropped instead of refused."""
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(
            str(p.get("text", "")) if isinstance(p, Mapping) else str(p)
            for p in content
            if isinstance(p, str) or (isinstance(p, Mapping) and p.get("type", "text") == "text")
        )
    out: dict[str, Any] = {"role": message.get("role"), "content": content}
    for key in ("name", "tool_calls", "tool_call_id"):
        if message.get(key) is not None:
            out[key] = message[key]
    return out


def current_turn(messages: Sequence[Any], user_content: str, assistant_content: str) -> list[dict[str, Any]]:
    """Slice the finished turn out of hermes' whole transcript: from the user message that opened it to the final
    assistant message, tool calls and tool results included. Empty if no such span is found."""

    def text(message: Mapping[str, Any]) -> str:
        content = message.get("content")
        if isinstance(content, list):
            return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        return content if isinstance(content, str) else ""

    items = [m for m in messages if isinstance(m, Mapping)]
    ends = [i for i, m in enumerate(items) if m.get("role") == "assistant"]
    if not ends:
        return []
    end = next((i for i in reversed(ends) if text(items[i]).strip() == assistant_content.strip()), ends[-1])
    starts = [i for i in range(end, -1, -1) if items[i].get("role") == "user"]
    if not starts:
        return []
    start = next((i for i in starts if text(items[i]).strip() == user_content.strip()), starts[0])
    return [_plain_message(m) for m in items[start : end + 1]]


def format_recollections(recollections: Sequence[memcore.Recollection]) -> str:
    """The prompt block hermes-agent wraps in ``<memory-context>``."""
    if not recollections:
        return ""
    lines = ["Long-term memory (memcore):"]
    for r in recollections:
        text = " ".join(r.text.split())
        if len(text) > 500:
            text = text[:497] + "..."
        lines.append(f"- {text}")
    return "\n".join(lines)


class MemcoreMemoryProvider(_Base):  # type: ignore[misc,valid-type,unused-ignore]
    """A hermes-agent memory provider backed by any memcore backend (embedded SQLite by default).

    ``config`` is the ``plugins.memcore`` section of hermes' config.yaml (read at ``initialize`` when not given):
    ``backends`` (or ``backend``), ``settings`` (per backend), ``journal``, ``recall_limit``, ``prefetch_timeout``,
    ``recall_timeout``, ``shutdown_timeout``, ``write_contexts``, ``durability``, ``commit_after_turns``,
    ``commit_after_idle``, ``user_scope``.

    Providers of one process whose Memory settings agree share one :class:`memcore.Memory`, opened by the first
    ``initialize`` and closed by the last ``shutdown`` (or at interpreter exit); a provider's ``shutdown`` commits its
    own sessions and closes the Memory only when no other provider holds it. ``memory`` injects a ready Memory
    (tests, embedding runtimes): it is shared the same way by every provider given it, and closed by the last one.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, *, memory: memcore.Memory | None = None):
        self._given_config = dict(config) if config is not None else None
        self._config = resolve_config(self._given_config)
        self._given_memory = memory
        self._lease: Lease | None = None
        self._memory: memcore.Memory | None = None  # the lease's Memory; kept after shutdown for late hooks
        self._user: str | None = None
        self._lc: memcore.SessionLifecycle | None = None
        self._parents: dict[str, str | None] = {}  # every session this conversation was in or wrote to
        self._writes = True
        self._turns_here = 0  # on_turn_start calls since the lifecycle last switched
        self._left: str | None = None  # the session the agent left while hermes' worker still holds its switch
        self._asked: str | None = None  # the query of the latest turn's prefetch (hermes queues the next with it)
        self._lock = threading.Lock()  # guards initialize/shutdown only; the hooks use the lifecycle's own safety
        self._closed: memcore.Report | None = None

    # -- identity and setup -------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    def is_available(self) -> bool:
        """memcore is installed and the configured backends are known; no network."""
        try:
            return bool(self._config["backends"])
        except Exception:
            return False

    @property
    def memory(self) -> memcore.Memory | None:
        """The (shared) Memory this provider writes to; None before ``initialize`` or if it could not start."""
        return self._memory

    @property
    def user_id(self) -> str | None:
        """The memcore user of this conversation (None: the default user)."""
        return self._user

    @property
    def lifecycle(self) -> memcore.SessionLifecycle | None:
        return self._lc

    def initialize(self, session_id: str, **kwargs: Any) -> None:
        """Take a lease on the shared Memory of the config (opening it if this is the first) and start this
        conversation's lifecycle in ``session_id``, as hermes' ``user_id`` (the default user without one)."""
        with self._lock:
            self._release(self._config["shutdown_timeout"])  # initialized again: the previous lease ends first
            self._lc = None
            try:
                if self._given_config is None:
                    self._config = resolve_config(load_hermes_config(kwargs.get("hermes_home")))
                context = kwargs.get("agent_context") or "primary"
                self._writes = context in self._config["write_contexts"]
                self._user = memcore_user(self._config, kwargs)
                given = self._given_memory
                if given is not None:
                    lease = registry.acquire(
                        ("given", id(given)), lambda: given, timeout=self._config["shutdown_timeout"]
                    )
                else:
                    config = self._config
                    lease = registry.acquire(
                        memory_key(config), lambda: open_memory(config), timeout=config["shutdown_timeout"]
                    )
                self._lease, self._memory = lease, lease.memory
                parent = kwargs.get("parent_session_id") or None
                self._lc = lease.memory.lifecycle(session_id, parent_session_id=parent, user_id=self._user)
                self._parents = {session_id: parent}
            except Exception as exc:
                if isinstance(exc, memcore.UsersNotSeparated):
                    log.error(
                        "memcore: provider disabled: %s. Use a backend that keeps users apart, or set "
                        "plugins.memcore.user_scope: none to give every hermes user the default user's memory.",
                        exc,
                    )
                else:
                    log.warning("memcore: provider disabled, could not start: %r", exc)
                self._release(self._config["shutdown_timeout"])
                self._lc = None

    def get_config_schema(self) -> list[dict[str, Any]]:
        return [
            {
                "key": "backend",
                "description": "memcore backend (entry-point name in memcore.backends); sqlite is embedded",
                "default": "sqlite",
            },
            {
                "key": "path",
                "description": "SQLite database file (sqlite backend only); default $MEMCORE_HOME/memory.sqlite3",
                "default": "",
            },
            {"key": "recall_limit", "description": "recollections injected per turn", "default": 5},
            {"key": "prefetch_timeout", "description": "seconds a turn waits for recall", "default": 2.0},
            {"key": "shutdown_timeout", "description": "seconds shutdown waits to commit and drain", "default": 5.0},
            {"key": "workers", "description": "requests in flight at once (a hung request holds one)", "default": 4},
        ]

    def save_config(self, values: dict[str, Any], hermes_home: str) -> None:
        """Write the setup answers under ``plugins.memcore`` in config.yaml (secrets are hermes' .env business)."""
        import yaml

        values = dict(values)
        section: dict[str, Any] = {}
        backend = str(values.pop("backend", "") or "sqlite")
        section["backends"] = [backend]
        path = values.pop("path", "")
        if path:
            section["settings"] = {backend: {"path": str(path)}}
        section.update({k: v for k, v in values.items() if v not in ("", None)})
        config_path = Path(hermes_home) / "config.yaml"
        data: dict[str, Any] = {}
        if config_path.exists():
            data = yaml.safe_load(config_path.read_text(encoding="utf-8-sig")) or {}
        data.setdefault(CONFIG_SECTION[0], {})[CONFIG_SECTION[1]] = section
        config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def system_prompt_block(self) -> str:
        if self._lc is None or self._memory is None:
            return ""
        return (
            "# Long-term memory (memcore)\n"
            f"Backends: {', '.join(self._memory.backends)}. Memories relevant to each message are recalled "
            f"automatically. Use the `{RECALL_TOOL}` tool to search long-term memory for anything else."
        )

    # -- writes -------------------------------------------------------------------------------------------------

    def _lifecycle_for(self, session_id: str) -> memcore.SessionLifecycle | None:
        """The current lifecycle, or a view bound to ``session_id`` when hermes named another session: hermes runs
        ``sync_turn`` on a background worker, so a turn may arrive after the switch that followed it (G1)."""
        lc = self._lc
        if lc is None or self._memory is None:
            return None
        if not session_id or session_id == lc.session_id:
            return lc
        parent = self._parents.setdefault(session_id, None)
        return self._memory.lifecycle(session_id, parent_session_id=parent, user_id=lc.user_id)

    def sync_turn(
        self,
        user_content: str,
        assistant_content: str,
        *,
        session_id: str = "",
        messages: list[dict[str, Any]] | None = None,
    ) -> None:
        if not self._writes:
            return
        try:
            lc = self._lifecycle_for(session_id)
            if lc is None:
                return
            turn = current_turn(messages, user_content, assistant_content) if messages else []
            if turn:
                try:
                    lc.sync_turn(user_content, assistant_content, messages=turn)
                    return
                except memcore.InvalidContent as exc:
                    log.debug("memcore: turn messages refused (%s); writing the two texts", exc)
            lc.sync_turn(user_content, assistant_content)
        except Exception as exc:
            log.warning("memcore: sync_turn dropped: %r", exc)

    def on_memory_write(self, action: str, target: str, content: str, metadata: dict[str, Any] | None = None) -> None:
        """Mirror hermes' built-in memory tool as a memcore note: ``kind`` is the target (``memory``/``user``), or
        ``<target>-removed`` for a removal (memcore has no delete; the backend sees the retraction in order)."""
        if not self._writes or not content:
            return
        try:
            meta = {k: v for k, v in dict(metadata or {}).items() if isinstance(v, (str, int, float, bool))}
            lc = self._lifecycle_for(str(meta.get("session_id") or ""))
            if lc is None:
                return
            meta["action"] = action
            kind = f"{target or 'memory'}-removed" if action == "remove" else (target or "memory")
            lc.remember(content, kind=kind, metadata=meta)
        except Exception as exc:
            log.warning("memcore: on_memory_write dropped: %r", exc)

    def on_delegation(self, task: str, result: str, *, child_session_id: str = "", **kwargs: Any) -> None:
        """A subagent's task and answer, kept as a note in the parent's session."""
        if not self._writes or self._lc is None or not (task or result):
            return
        try:
            meta = {"child_session_id": child_session_id} if child_session_id else None
            self._lc.remember(f"Delegated: {task}\nResult: {result}", kind="delegation", metadata=meta)
        except Exception as exc:
            log.warning("memcore: on_delegation dropped: %r", exc)

    # -- boundaries ---------------------------------------------------------------------------------------------

    def on_session_switch(
        self,
        new_session_id: str,
        *,
        parent_session_id: str = "",
        reset: bool = False,
        rewound: bool = False,
        **kwargs: Any,
    ) -> None:
        lc = self._lc
        if lc is None or not new_session_id:
            return
        try:
            reason = switch_reason(
                new_session_id, lc.session_id, reason=str(kwargs.get("reason") or ""), reset=reset, rewound=rewound
            )
            # memcore lineage: a branch and a rotating compression descend from the session they leave; /new and
            # /resume do not (hermes passes the id being left as parent_session_id there too).
            parent: str | None = None
            if reason in ("branch", "compress") and new_session_id != lc.session_id:
                parent = parent_session_id or lc.session_id
            if new_session_id != lc.session_id:
                self._parents.setdefault(new_session_id, parent)
            # /undo: hermes 0.19.0 says that the transcript was truncated, not by how much, and calls this inline while
            # the undone turn's sync_turn may still wait on its background worker: undoing "the last turn" here could
            # take back the turn before it. So turns are undone only when hermes names how many (a newer hermes may);
            # otherwise the rewind invalidates recall and the undone turn stays in memory (it is committed later).
            undone = kwargs.get("turns_undone") if reason == "rewind" else None
            if not isinstance(undone, int) or isinstance(undone, bool) or undone < 1:
                undone = None
            lc.switch(new_session_id, reason=reason, parent_session_id=parent, turns=undone)
            self._turns_here = 0
        except Exception as exc:
            log.warning("memcore: on_session_switch to %r failed: %r", new_session_id, exc)

    def on_turn_start(self, turn_number: int, message: str, **kwargs: Any) -> None:
        """hermes counts turns per session (``/new`` resets the count) and calls this inline, before a
        ``prefetch_all`` that names no session, while ``/new``'s switch waits on its background worker. Turn 1 after
        turns in the lifecycle's session means the agent has left that session: its recall must not be handed out."""
        lc = self._lc
        if lc is None:
            return
        if turn_number <= 1 and self._turns_here > 0:
            self._left = lc.session_id
        self._turns_here += 1

    def on_session_end(self, messages: list[dict[str, Any]]) -> None:
        """Commit the current session (queued behind its writes; nothing if it is clean)."""
        if self._lc is None or not self._writes:
            return
        try:
            self._lc.end()
        except Exception as exc:
            log.warning("memcore: on_session_end failed: %r", exc)

    def on_pre_compress(self, messages: list[dict[str, Any]]) -> str:
        """Commit what was written so far, before hermes discards it: ``end()`` keeps the session and its recall
        (compression may still fail or be skipped); the ``on_session_switch(reason="compression")`` that follows
        then moves or re-arms the session and commits only what arrived in between (G4)."""
        self.on_session_end(messages)
        return ""

    # -- recall -------------------------------------------------------------------------------------------------

    def queue_prefetch(self, query: str, *, session_id: str = "") -> None:
        """Start the next turn's search (hermes queues it with the query of the turn that just ended). Skipped when it
        is no longer the latest turn's: for a session the agent has left, or when a later turn already searched
        (hermes' worker runs behind the agent), since the next turn would get that later turn's prefetch anyway."""
        lc = self._lc
        if lc is None or not query:
            return
        if session_id and session_id != lc.session_id:
            return  # asked for a session the agent has already left: its recall would be stale
        asked = self._asked
        if asked is not None and query != asked:
            return  # a later turn's prefetch already ran; its own queue_prefetch follows on hermes' worker
        try:
            lc.queue_prefetch(query, limit=self._config["recall_limit"], timeout=self._config["prefetch_timeout"])
        except Exception as exc:
            log.debug("memcore: queue_prefetch failed: %r", exc)

    def prefetch(self, query: str, *, session_id: str = "") -> str:
        """This turn's recall, one search at most, within ``prefetch_timeout``: the prefetch queued after the previous
        turn if it was queued in this session and generation, whatever it found (nothing included), and even if it is
        still running when the budget ends (then nothing is injected); a live recall only when none was queued or a
        switch made it stale."""
        lc, memory = self._lc, self._memory
        if lc is None or memory is None or not query:
            return ""
        self._asked = query
        try:
            budget = self._config["prefetch_timeout"]
            limit = self._config["recall_limit"]
            if (session_id and session_id != lc.session_id) or self._left == lc.session_id:
                # The agent is ahead of hermes' worker (a /new whose switch is still queued there): the lifecycle is
                # in the old session, so recall for the user, not for a session the agent has left.
                return format_recollections(memory.recall(query, limit=limit, timeout=budget, user_id=lc.user_id))
            prefetched = lc.take_prefetch_result(timeout=budget)
            if prefetched.state in ("none", "stale"):
                return format_recollections(lc.recall(query, limit=limit, timeout=budget))
            return format_recollections(prefetched.recollections)  # ready (perhaps empty), or pending past the budget
        except Exception as exc:
            log.debug("memcore: prefetch failed: %r", exc)
            return ""

    def get_tool_schemas(self) -> list[dict[str, Any]]:
        return [
            {
                "name": RECALL_TOOL,
                "description": (
                    "Search long-term memory (past conversations, saved facts and preferences) for what is relevant "
                    "to a query. Returns the best matches, most relevant first."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "what to look for"},
                        "limit": {"type": "integer", "description": "how many results (1-20)", "default": 5},
                    },
                    "required": ["query"],
                },
            }
        ]

    def handle_tool_call(self, tool_name: str, args: dict[str, Any], **kwargs: Any) -> str:
        if tool_name != RECALL_TOOL:
            return json.dumps({"error": f"unknown tool {tool_name!r}"})
        lc = self._lc
        if lc is None:
            return json.dumps({"error": "memcore is not initialized"})
        query = str(args.get("query") or "").strip()
        if not query:
            return json.dumps({"error": "query is required"})
        try:
            limit = max(1, min(int(args.get("limit") or self._config["recall_limit"]), 20))
            found = lc.recall(query, limit=limit, timeout=self._config["recall_timeout"])
        except Exception as exc:
            return json.dumps({"error": f"recall failed: {exc}"})
        results = [{"text": r.text, "score": r.score, "source": r.source, "session_id": r.session_id} for r in found]
        return json.dumps({"results": results, "count": len(results)}, ensure_ascii=False)

    # -- exit ---------------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """End this conversation: commit its sessions (queued behind their writes, journaled) and give the shared
        Memory back. The last provider to give it back closes it: every dirty session committed and drained within
        ``shutdown_timeout`` (memcore's close, G10); any other returns at once, the Memory's workers deliver the
        commit while the other conversations go on."""
        with self._lock:
            if self._lease is None:
                return
            lc, memory = self._lc, self._memory
            if lc is not None and memory is not None and self._writes:
                for sid, parent in list(self._parents.items()):
                    try:
                        if sid == lc.session_id:
                            lc.end()
                        else:  # a session this conversation left, written again by a late turn: dirty perhaps
                            memory.lifecycle(sid, parent_session_id=parent, user_id=lc.user_id).end()
                    except Exception as exc:
                        log.warning("memcore: committing %r at shutdown failed: %r", sid, exc)
            report = self._release(self._config["shutdown_timeout"])
        if report is not None and not report.ok:
            log.warning(
                "memcore: shutdown left %d pending (journaled: %d) and %d failed operations",
                report.pending,
                report.journaled,
                report.failed,
            )

    def _release(self, timeout: float) -> memcore.Report | None:
        lease, self._lease = self._lease, None
        if lease is None:
            return None
        try:
            report = lease.release(timeout)
        except Exception as exc:
            log.warning("memcore: close failed: %r", exc)
            return None
        if report is not None:
            self._closed = report
        return report

    @property
    def report(self) -> memcore.Report | None:
        """The close report if this provider's ``shutdown`` closed the shared Memory (it was the last to hold it);
        None before, or when other conversations still hold it."""
        return self._closed

    def backup_paths(self) -> list[str]:
        """The memcore home (SQLite store, journal) when it lives outside the hermes home."""
        try:
            return [str(memcore.memcore_home())]
        except Exception:
            return []

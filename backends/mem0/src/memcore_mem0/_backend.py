"""The mem0 backend, local mode: one ``mem0.Memory`` on a local Qdrant store and an OpenAI-compatible endpoint. No
threads, no locks, no session state: what a commit must extract is read back from the store. See ``README.md``."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, cast

import httpx
import memcore

from ._ids import decode_id, encode_id
from ._transient import mapped

__all__ = ["Mem0Backend"]

#: mem0's telemetry (PostHog, and a second Qdrant store under ``~/.mem0``) is off unless the environment says
#: otherwise. mem0 reads the variable once, when it is first imported, so it is set before that.
os.environ.setdefault("MEM0_TELEMETRY", "False")

TURN, NOTE, MEMORY = "turn", "note", "memory"  #: ``memcore_kind`` of a stored turn message, a note, an extracted fact
#: get_all's page: large enough that a session's records come back in one call.
ALL = 1_000_000
#: Texts mem0 stores in place of an empty message (an embedding of "" is refused by OpenAI); read back as "".
EMPTY = "(empty message)"


class Mem0Backend:
    """memcore backend over mem0's open-source ``Memory`` (mem0ai 2.2.x) in local mode.

    Settings (keyword arguments): ``path`` (the directory of the Qdrant store and mem0's history database; default
    ``$MEMCORE_HOME/mem0``), ``collection`` (default ``memcore``), ``base_url`` and ``api_key`` of the
    OpenAI-compatible endpoint for embeddings and extraction (else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``),
    ``embedding_model`` and ``embedding_dims`` (default ``text-embedding-3-small``, 1536), ``llm_model`` (default
    ``gpt-4.1-nano``), ``default_user`` (the mem0 ``user_id`` of memcore's default user, default ``memcore``),
    ``agent_id`` (optional: every record carries it and recall filters on it), ``scope`` (``"user"``, default:
    recall searches the whole user; ``"session"``: recall in a session searches only that session's run),
    ``threshold`` (mem0's least semantic score for search, default 0.1), ``timeout`` (seconds per model request,
    default 30), ``transport`` (an ``httpx.BaseTransport`` under the model client) and ``config`` (a mapping merged
    over the mem0 configuration this class builds, for anything else).
    """

    name = "mem0"
    #: Users are mem0 user ids (memcore's default user is ``default_user``; an explicit user of that id is refused).
    separates_users = True
    #: Qdrant's local mode is not thread-safe: memcore runs one call of this backend at a time (set to 1 in
    #: ``__init__`` for a local Qdrant store; None, any number, for a Qdrant server). See README, "Threads".
    max_concurrency: int | None = None

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        collection: str = "memcore",
        base_url: str | None = None,
        api_key: str | None = None,
        embedding_model: str = "text-embedding-3-small",
        embedding_dims: int = 1536,
        llm_model: str = "gpt-4.1-nano",
        default_user: str = "memcore",
        agent_id: str | None = None,
        scope: str = "user",
        threshold: float = 0.1,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if scope not in ("user", "session"):
            raise ValueError(f"scope must be 'user' or 'session', not {scope!r}")
        import mem0  # here, not at the top: the environment above is set first
        from openai import OpenAI

        self.path = Path(path) if path is not None else memcore.memcore_home() / "mem0"
        self.path.mkdir(parents=True, exist_ok=True)
        self.collection = collection
        self.default_user = encode_id(default_user)
        self.agent_id = encode_id(agent_id) if agent_id else None
        self.scope = scope
        self.threshold = threshold
        self.history_db = self.path / "history.db"
        url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self._base_url = url
        model = {"api_key": key or "unset", "openai_base_url": url}
        built: dict[str, Any] = {
            "vector_store": {
                "provider": "qdrant",
                "config": {
                    "collection_name": collection,
                    "path": str(self.path / "qdrant"),
                    "embedding_model_dims": embedding_dims,
                    "on_disk": True,
                },
            },
            "embedder": {
                "provider": "openai",
                "config": {**model, "model": embedding_model, "embedding_dims": embedding_dims},
            },
            "llm": {"provider": "openai", "config": {**model, "model": llm_model}},
            "history_db_path": str(self.history_db),
        }
        for section, value in (config or {}).items():
            if isinstance(value, Mapping) and isinstance(built.get(section), dict):
                built[section] = {**built[section], **value}
            else:
                built[section] = value
        self._memory = mem0.Memory.from_config(built)
        self._closed = False
        # The model clients: memcore's timeout per request and no retries of their own (memcore retries, in order).
        http = httpx.Client(transport=transport, timeout=timeout) if transport is not None else None
        # (openai 3.x types http_client as an httpx2.Client and takes an httpx.Client too, as its docs say)
        self._client = OpenAI(
            api_key=key or "unset", base_url=url, timeout=timeout, max_retries=0, http_client=cast(Any, http)
        )
        store = self._memory.vector_store
        if getattr(store, "is_local", False) and built["vector_store"].get("provider") == "qdrant":
            self.max_concurrency = 1  # local Qdrant is not thread-safe: the core runs our calls one at a time
        if built["embedder"].get("provider") == "openai":
            self._memory.embedding_model.client = self._client
        if built["llm"].get("provider") == "openai":
            self._memory.llm.client = self._client

    def __repr__(self) -> str:
        return f"Mem0Backend(path={str(self.path)!r}, collection={self.collection!r})"

    @property
    def journal_key(self) -> str:
        return f"{self.name}:{self.path.resolve()}:{self.collection}"

    # -- scopes ------------------------------------------------------------------------------------------------------

    def _user(self, user_id: str | None) -> str:
        if user_id is None:
            return self.default_user
        encoded = encode_id(user_id)
        if encoded == self.default_user:
            raise ValueError(f"user {user_id!r} is the mem0 user id of memcore's default user (default_user)")
        return encoded

    def _ids(self, session: memcore.Session) -> dict[str, str]:
        ids = {"user_id": self._user(session.user_id), "run_id": encode_id(session.id)}
        if self.agent_id:
            ids["agent_id"] = self.agent_id
        return ids

    def _records(self, ids: Mapping[str, str], **match: Any) -> list[dict[str, Any]]:
        """Every record of the scope ``ids`` whose metadata has the values ``match``."""
        with mapped():
            found = self._memory.get_all(filters={**ids, **match}, top_k=ALL)
        return list(found.get("results") or ())

    def _turns(self, ids: Mapping[str, str]) -> list[dict[str, Any]]:
        """The session's stored messages, in the order they were written."""
        turns = self._records(ids, memcore_kind=TURN)
        turns.sort(key=lambda r: (_meta(r).get("memcore_stamp", 0), _meta(r).get("memcore_index", 0)))
        return turns

    def _add(self, ids: Mapping[str, str], role: str, text: str, metadata: Mapping[str, Any]) -> None:
        with mapped():
            self._memory.add([{"role": role, "content": text}], **ids, metadata=dict(metadata), infer=False)

    # -- hooks -------------------------------------------------------------------------------------------------------

    @memcore.hookimpl
    def memcore_write(
        self, session: memcore.Session, messages: Sequence[memcore.Message], key: str, attempt: int
    ) -> None:
        """Each message as one raw mem0 record (``infer=False``), tagged with the write's key, its index in the turn
        and a time stamp that orders the session. A retry adds only the messages the earlier attempt did not."""
        ids = self._ids(session)
        stamp, present = time.time_ns(), set()
        if attempt > 1:
            earlier = self._records(ids, memcore_kind=TURN, memcore_key=key)
            present = {_meta(r).get("memcore_index") for r in earlier}
            stamp = min((_meta(r).get("memcore_stamp", stamp) for r in earlier), default=stamp)
        for index, message in enumerate(messages):
            if index in present:
                continue
            metadata: dict[str, Any] = {
                "memcore_kind": TURN,
                "memcore_key": key,
                "memcore_index": index,
                "memcore_stamp": stamp,
                "memcore_role": message.role,
            }
            if message.name is not None:
                metadata["memcore_name"] = message.name
            if message.tool_calls:
                metadata["memcore_tool_calls"] = json.dumps([dict(c) for c in message.tool_calls], ensure_ascii=False)
            if message.tool_call_id is not None:
                metadata["memcore_tool_call_id"] = message.tool_call_id
            text = message.content
            if not text:
                metadata["memcore_empty"] = True
                text = _stand_in(message)
            # mem0 drops system messages from raw adds: they are stored under the user role, read back as system.
            self._add(ids, "user" if message.role == "system" else message.role, text, metadata)

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note, key: str, attempt: int) -> None:
        ids = self._ids(session)
        if attempt > 1 and self._records(ids, memcore_kind=NOTE, memcore_key=key):
            return
        metadata: dict[str, Any] = {"memcore_kind": NOTE, "memcore_key": key, "memcore_note_kind": note.kind}
        if note.metadata:
            metadata["memcore_note_metadata"] = json.dumps(dict(note.metadata), ensure_ascii=False)
        self._add(ids, "user", note.text or EMPTY, metadata)

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session, key: str, attempt: int) -> int:
        """mem0's extraction (``infer=True``) over the session's turns that no commit extracted yet; then each of them
        is marked with this commit's key. Returns how many messages were new. A retry whose extraction had landed
        (facts carrying this key exist) only marks."""
        ids = self._ids(session)
        new = [r for r in self._turns(ids) if not _meta(r).get("memcore_extracted")]
        if not new:
            return 0
        landed = attempt > 1 and bool(self._records(ids, memcore_kind=MEMORY, memcore_commit=key))
        conversation = [
            {"role": _meta(r).get("memcore_role", "user"), "content": r.get("memory", "")}
            for r in new
            if not _meta(r).get("memcore_empty") and _meta(r).get("memcore_role") in ("user", "assistant", "system")
        ]
        if conversation and not landed:
            metadata = {"memcore_kind": MEMORY, "memcore_commit": key}
            with mapped():
                self._memory.add(conversation, **ids, metadata=metadata, infer=True)
        store = self._memory.vector_store
        for record in new:
            with mapped():
                stored = store.get(vector_id=record["id"])
                if stored is not None:
                    store.update(vector_id=record["id"], payload={**stored.payload, "memcore_extracted": key})
        return len(new)

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: memcore.Session | None, limit: int, user_id: str | None
    ) -> Sequence[memcore.Recollection]:
        filters: dict[str, Any] = {"user_id": self._user(user_id)}
        if self.agent_id:
            filters["agent_id"] = self.agent_id
        if session is not None and self.scope == "session":
            filters["run_id"] = encode_id(session.id)
        if not query.strip() or limit <= 0:
            return []
        with mapped():
            found = self._memory.search(query, top_k=limit * 2 + 5, filters=filters, threshold=self.threshold)
        distinct: dict[str, memcore.Recollection] = {}
        for hit in found.get("results") or ():
            meta = _meta(hit)
            kind = meta.get("memcore_kind")
            text = "" if meta.get("memcore_empty") else hit.get("memory", "")
            if not text or text in distinct:
                continue
            origin, label = {
                TURN: ("message", meta.get("memcore_role", hit.get("role", ""))),
                NOTE: ("note", meta.get("memcore_note_kind", "note")),
            }.get(str(kind), ("memory", "fact"))
            run = hit.get("run_id")
            distinct[text] = memcore.Recollection(
                text=text,
                score=hit.get("score"),
                session_id=decode_id(run) if isinstance(run, str) else None,
                metadata={"origin": origin, "kind": label, "id": hit.get("id", "")},
            )
        return list(distinct.values())[:limit]

    @memcore.hookimpl
    def memcore_history(self, session: memcore.Session) -> Sequence[memcore.Message]:
        return [_message(r) for r in self._turns(self._ids(session))]

    @memcore.hookimpl
    def memcore_rewind(self, session: memcore.Session, turns: int) -> None:
        """Delete the records of the session's last ``turns`` writes (by key, in write order)."""
        keys: dict[str, list[str]] = {}
        for record in self._turns(self._ids(session)):
            keys.setdefault(str(_meta(record).get("memcore_key")), []).append(record["id"])
        for key in list(keys)[len(keys) - turns :] if turns > 0 else ():
            for memory_id in keys[key]:
                with mapped():
                    self._memory.delete(memory_id)

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        """``delete_all`` on the scope (the user, or one of its runs), then the rows mem0's history database kept of
        them: each deleted record's change log and the scope's last messages (the extraction context)."""
        user = self._user(user_id)
        scope: dict[str, str] = {"user_id": user}
        if session_id is not None:
            scope["run_id"] = encode_id(session_id)
        doomed = [r["id"] for r in self._records(scope)]
        with mapped():
            self._memory.delete_all(**scope)
        self._purge_history(doomed, user, scope.get("run_id"))
        return None

    @memcore.hookimpl
    def memcore_close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._memory.close()
        client = getattr(self._memory.vector_store, "client", None)
        if client is not None:
            client.close()  # releases the store's lock file: the path can be opened again
        self._client.close()

    # -- mem0's history database -------------------------------------------------------------------------------------

    def _purge_history(self, memory_ids: Sequence[str], user: str, run: str | None) -> None:
        """Remove what mem0's SQLite history keeps of a forgotten scope: the change log (with the old texts) of each
        deleted record and the scope's last messages. Its own connection, with a lock timeout."""
        with mapped(), closing(sqlite3.connect(self.history_db, timeout=10.0)) as db, db:
            db.executemany("DELETE FROM history WHERE memory_id = ?", [(m,) for m in memory_ids])
            user_part = "user_id=" + _scope_escape(user)
            if run is not None:
                # mem0's scope key: sorted ``key=value`` pairs joined by ``&`` (agent_id, run_id, user_id).
                run_part = "run_id=" + _scope_escape(run)
                rows = db.execute("SELECT DISTINCT session_scope FROM messages").fetchall()
                for (scope,) in rows:
                    parts = str(scope).split("&")
                    if run_part in parts and user_part in parts:
                        db.execute("DELETE FROM messages WHERE session_scope = ?", (scope,))
            else:
                rows = db.execute("SELECT DISTINCT session_scope FROM messages").fetchall()
                for (scope,) in rows:
                    if user_part in str(scope).split("&"):
                        db.execute("DELETE FROM messages WHERE session_scope = ?", (scope,))


def _meta(record: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = record.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _scope_escape(value: str) -> str:
    """mem0's escaping of a value in its session scope key (``_escape_scope_value``)."""
    return value.replace("%", "%25").replace("&", "%26").replace("=", "%3D")


def _stand_in(message: memcore.Message) -> str:
    """What mem0 embeds for a message without text: its tool calls (``name(arguments)``), else a placeholder."""
    calls = []
    for call in message.tool_calls:
        function = call.get("function") or {}
        calls.append(f"{function.get('name', '')}({function.get('arguments', '')})")
    return " ".join(calls) or EMPTY


def _message(record: Mapping[str, Any]) -> memcore.Message:
    meta = _meta(record)
    calls = json.loads(meta["memcore_tool_calls"]) if meta.get("memcore_tool_calls") else []
    return memcore.Message(
        role=str(meta.get("memcore_role") or record.get("role") or "user"),
        content="" if meta.get("memcore_empty") else str(record.get("memory", "")),
        name=meta.get("memcore_name"),
        tool_calls=tuple(calls),
        tool_call_id=meta.get("memcore_tool_call_id"),
    )

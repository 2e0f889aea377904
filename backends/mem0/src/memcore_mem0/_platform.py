"""The mem0 backend, platform mode: mem0's hosted API (the endpoints ``MemoryClient`` calls) over httpx through
``memcore.http``. The same records as local mode; no threads, no locks, no session state. See ``README.md``."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import memcore
from memcore.http import mapped, quote_segment, raise_for_status, redact_url

from ._backend import EMPTY, MEMORY, NOTE, TURN, _message, _meta, _stand_in
from ._ids import decode_id, encode_id

__all__ = ["Mem0PlatformBackend"]

COMMIT = "commit"  #: ``memcore_kind`` of a commit's checkpoint record
PAGE = 200  #: the largest ``page_size`` of ``POST /v3/memories/``
ROLES = ("user", "assistant", "system")  #: the roles ``/v3/memories/add/`` takes


class Mem0PlatformBackend:
    """memcore backend for mem0's platform (``https://api.mem0.ai``), token auth.

    Settings: ``api_key`` (else ``MEM0_API_KEY``), ``url`` (default ``https://api.mem0.ai``), ``default_user``,
    ``agent_id``, ``scope``, ``threshold`` (as in local mode), ``timeout`` (seconds per request, default 30) and
    ``transport`` (an ``httpx.BaseTransport``).
    """

    name = "mem0_platform"
    separates_users = True

    def __init__(
        self,
        api_key: str | None = None,
        url: str = "https://api.mem0.ai",
        default_user: str = "memcore",
        agent_id: str | None = None,
        scope: str = "user",
        threshold: float = 0.1,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if scope not in ("user", "session"):
            raise ValueError(f"scope must be 'user' or 'session', not {scope!r}")
        key = api_key if api_key is not None else os.environ.get("MEM0_API_KEY", "")
        if not key:
            raise ValueError("mem0 platform mode needs an api_key (or MEM0_API_KEY)")
        self.url = url.rstrip("/")
        self.default_user = encode_id(default_user)
        self.agent_id = encode_id(agent_id) if agent_id else None
        self.scope = scope
        self.threshold = threshold
        self._project = hashlib.sha256(key.encode()).hexdigest()[:12]  # names the store in journal_key, not a secret
        headers = {"Authorization": f"Token {key}", "Accept": "application/json"}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"Mem0PlatformBackend(url={redact_url(self.url)!r})"

    @property
    def journal_key(self) -> str:
        return f"{self.name}:{redact_url(self.url)}:{self._project}"

    # -- the wire ----------------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: object = None, **kwargs: Any) -> Any:
        with mapped():
            response = raise_for_status(self._client.request(method, path, json=body, **kwargs))
        return response.json() if response.content else None

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

    def _records(self, ids: Mapping[str, str], kind: str | None = None) -> list[dict[str, Any]]:
        """Every record of the scope (``POST /v3/memories/``, page by page), of ``memcore_kind`` ``kind`` if given."""
        body = {"filters": {"AND": [{k: v} for k, v in ids.items()]}}
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self._call("POST", "/v3/memories/", body, params={"page": page, "page_size": PAGE}) or {}
            found += answer.get("results") or ()
            if not answer.get("next"):
                break
            page += 1
        return [r for r in found if kind is None or _meta(r).get("memcore_kind") == kind]

    def _turns(self, ids: Mapping[str, str]) -> list[dict[str, Any]]:
        return _ordered(self._records(ids, TURN))

    def _add(
        self, ids: Mapping[str, str], messages: list[dict[str, str]], metadata: Mapping[str, Any], infer: bool
    ) -> Any:
        body = {"messages": messages, **ids, "metadata": dict(metadata), "infer": infer}
        return self._call("POST", "/v3/memories/add/", body)

    # -- hooks -------------------------------------------------------------------------------------------------------

    @memcore.hookimpl
    def memcore_write(
        self, session: memcore.Session, messages: Sequence[memcore.Message], key: str, attempt: int
    ) -> None:
        """One ``add(infer=False)`` per message (stored verbatim, at once), tagged as in local mode; a retry adds
        only the messages the earlier attempt did not."""
        ids = self._ids(session)
        stamp, present = time.time_ns(), set()
        if attempt > 1:
            earlier = [r for r in self._records(ids, TURN) if _meta(r).get("memcore_key") == key]
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
            role = message.role if message.role in ROLES else "assistant"  # the API takes no tool role
            self._add(ids, [{"role": role, "content": text}], metadata, infer=False)

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note, key: str, attempt: int) -> None:
        ids = self._ids(session)
        if attempt > 1 and any(_meta(r).get("memcore_key") == key for r in self._records(ids, NOTE)):
            return
        metadata: dict[str, Any] = {"memcore_kind": NOTE, "memcore_key": key, "memcore_note_kind": note.kind}
        if note.metadata:
            metadata["memcore_note_metadata"] = json.dumps(dict(note.metadata), ensure_ascii=False)
        self._add(ids, [{"role": "user", "content": note.text or EMPTY}], metadata, infer=False)

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session, key: str, attempt: int) -> str | None:
        """The platform's extraction (``add(infer=True)``, queued: returns its event id) over the session's turns
        after the last checkpoint, then a checkpoint: a record of its own (``memcore_kind=commit``) naming the commit's
        key and the last turn it took. Three requests, whatever the session's length; a retry whose checkpoint landed
        does nothing, one whose extraction landed (facts carrying the key) only writes the checkpoint."""
        ids = self._ids(session)
        records = self._records(ids)
        checkpoints = [_meta(r) for r in records if _meta(r).get("memcore_kind") == COMMIT]
        if any(c.get("memcore_commit") == key for c in checkpoints):
            return None
        upto = max((tuple(c.get("memcore_upto") or (0, 0)) for c in checkpoints), default=(0, 0))
        new = [r for r in _ordered(records) if _position(r) > upto]
        if not new:
            return None
        landed = any(_meta(r).get("memcore_kind") == MEMORY and _meta(r).get("memcore_commit") == key for r in records)
        conversation = [
            {"role": _meta(r)["memcore_role"], "content": r.get("memory", "")}
            for r in new
            if not _meta(r).get("memcore_empty") and _meta(r).get("memcore_role") in ROLES
        ]
        event: str | None = None
        if conversation and not landed:
            answer = self._add(ids, conversation, {"memcore_kind": MEMORY, "memcore_commit": key}, infer=True) or {}
            event = answer.get("event_id")
        checkpoint = {"memcore_kind": COMMIT, "memcore_commit": key, "memcore_upto": list(_position(new[-1]))}
        self._add(ids, [{"role": "system", "content": f"memcore commit {key}"}], checkpoint, infer=False)
        return event

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: memcore.Session | None, limit: int, user_id: str | None
    ) -> Sequence[memcore.Recollection]:
        filters: list[dict[str, str]] = [{"user_id": self._user(user_id)}]
        if self.agent_id:
            filters.append({"agent_id": self.agent_id})
        if session is not None and self.scope == "session":
            filters.append({"run_id": encode_id(session.id)})
        if not query.strip() or limit <= 0:
            return []
        body = {"query": query, "filters": {"AND": filters}, "top_k": limit * 2 + 5, "threshold": self.threshold}
        found = self._call("POST", "/v3/memories/search/", body) or {}
        distinct: dict[str, memcore.Recollection] = {}
        for hit in found.get("results") or ():
            meta = _meta(hit)
            text = "" if meta.get("memcore_empty") else hit.get("memory", "")
            if not text or text in distinct or meta.get("memcore_kind") == COMMIT:
                continue
            origin, label = {
                TURN: ("message", meta.get("memcore_role", "")),
                NOTE: ("note", meta.get("memcore_note_kind", "note")),
            }.get(str(meta.get("memcore_kind")), ("memory", "fact"))
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
        keys: dict[str, list[str]] = {}
        for record in self._turns(self._ids(session)):
            keys.setdefault(str(_meta(record).get("memcore_key")), []).append(record["id"])
        for key in list(keys)[len(keys) - turns :] if turns > 0 else ():
            for memory_id in keys[key]:
                self._call("DELETE", f"/v1/memories/{quote_segment(memory_id)}/")

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        """``DELETE /v1/memories/?user_id=...[&run_id=...]``: the platform queues the deletion and runs it in the
        background."""
        params = {"user_id": self._user(user_id)}
        if session_id is not None:
            params["run_id"] = encode_id(session_id)
        self._call("DELETE", "/v1/memories/", params=params)
        return None

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._client.close()


def _position(record: Mapping[str, Any]) -> tuple[int, int]:
    """Where a turn's message stands in its session: (stamp, index in the turn)."""
    meta = _meta(record)
    return int(meta.get("memcore_stamp", 0)), int(meta.get("memcore_index", 0))


def _ordered(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns among ``records``, in the order they were written."""
    return sorted((r for r in records if _meta(r).get("memcore_kind") == TURN), key=_position)

"""The Hindsight backend: one httpx client, no threads, no locks, no session state. See ``README.md``."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import memcore
from memcore.http import HTTPStatusError, mapped, quote_segment, raise_for_status, redact_url

__all__ = ["HindsightBackend", "decode_id", "encode_id"]

API = "/v1/default/banks"
SESSION_TAG = "session:"  #: a turn's and a note's tag: the id of the session they were made in
NOTE_TAG = "memcore:note"
PAGE = 100
BANK_MAX = 192  #: Hindsight's longest bank id, in bytes of UTF-8
KEPT = (
    "Hindsight's LLM request traces of those retains (GET /v1/default/banks/{bank}/llm-requests; on by default, kept "
    "HINDSIGHT_API_LLM_TRACE_RETENTION_DAYS days, 1 by default) and the bank's entities named in them"
)


def encode_id(raw: str) -> str:
    """The id Hindsight stores for a session (a document id) or a user (a bank id suffix): ``%`` becomes ``%25`` and
    ``/`` becomes ``%2F`` inside the id, and the whole ids ``.`` and ``..`` become ``%2E`` and ``%2E%2E``. Hindsight's
    router decodes a path before matching it, so a ``/`` in an id would reach another endpoint (``x/chunks``); every
    other id is stored as it is. Reversible: :func:`decode_id`."""
    encoded = raw.replace("%", "%25").replace("/", "%2F")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def decode_id(stored: str) -> str:
    """The inverse of :func:`encode_id`."""
    return re.sub(r"%(25|2F|2E)", lambda m: {"25": "%", "2F": "/", "2E": "."}[m.group(1)], stored)


class HindsightBackend:
    """memcore backend for a Hindsight server (1.1), over its HTTP API through plain httpx.

    Settings (keyword arguments, else environment variables): ``url`` (``HINDSIGHT_API_URL``, default
    ``http://127.0.0.1:8888``), ``api_key`` (``HINDSIGHT_API_KEY``, sent as a bearer token), ``bank`` (the default
    user's bank, default ``memcore``; user ``u`` gets ``<bank>--<u>``), ``scoped_recall`` (recall in a session searches
    that session only; default False: a user's memory spans sessions), ``budget`` (recall's ``low``/``mid``/``high``),
    ``timeout`` (seconds per request, default 60: a write waits for Hindsight's fact extraction) and ``transport``.
    """

    name = "hindsight"
    separates_users = True  #: every user has a bank of its own

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        bank: str = "memcore",
        scoped_recall: bool = False,
        budget: str = "mid",
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("HINDSIGHT_API_URL") or "http://127.0.0.1:8888").rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("HINDSIGHT_API_KEY", "")
        if not bank or "/" in bank or bank in (".", "..") or bank[0] == "_" or len(bank.encode()) > BANK_MAX - 68:
            raise ValueError(f"bank must be an id without '/', not starting with '_', of 1 to 124 bytes: {bank!r}")
        self.bank, self.scoped_recall, self.budget = bank, scoped_recall, budget
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"HindsightBackend(url={redact_url(self.url)!r}, bank={self.bank!r})"

    @property
    def journal_key(self) -> str:
        return f"hindsight:{redact_url(self.url)}/{self.bank}"

    # -- the wire ----------------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: object = None, missing: Any = ..., **kwargs: Any) -> Any:
        """One request; its JSON answer. 404 answers ``missing`` when given. Transport errors, 408/429/5xx:
        TransientError; other 4xx: HTTPStatusError with Hindsight's ``detail`` (never a header or the key)."""
        with mapped():
            response = self._client.request(method, path, json=body, **kwargs)
            if response.status_code == 404 and missing is not ...:
                return missing
            try:
                raise_for_status(response)
            except HTTPStatusError as exc:
                detail = _detail(response).replace(self._api_key, "***") if self._api_key else _detail(response)
                raise HTTPStatusError(exc.status_code, exc.method, exc.path, detail) from None
        return response.json() if response.content else None

    def _bank(self, user_id: str | None) -> str:
        """User ``u``'s bank, ``<bank>--<u>``; ``<bank>--%H<sha256 of u>`` past Hindsight's 192 bytes (``%H`` is in no
        encoded id, so the two forms never meet)."""
        bank = self.bank if user_id is None else f"{self.bank}--{encode_id(user_id)}"
        if len(bank.encode()) > BANK_MAX:
            bank = f"{self.bank}--%H{hashlib.sha256(str(user_id).encode()).hexdigest()}"
        return f"{API}/{quote_segment(bank)}"

    def _document(self, session: memcore.Session) -> str:
        return f"{self._bank(session.user_id)}/documents/{quote_segment(encode_id(session.id))}"

    def _retain(self, session: memcore.Session, item: dict[str, Any]) -> None:
        """A synchronous retain: it returns once Hindsight has extracted, embedded and stored the item."""
        item["tags"] = [SESSION_TAG + session.id, *item.get("tags", ())]
        self._call("POST", f"{self._bank(session.user_id)}/memories", {"items": [item], "async": False})

    def _turns(self, session: memcore.Session) -> list[dict[str, Any]]:
        document = self._call("GET", self._document(session), missing=None)
        try:
            stored = json.loads((document or {}).get("original_text") or "[]")
        except ValueError:
            return []
        return [m for m in stored if isinstance(m, dict)] if isinstance(stored, list) else []

    # -- hooks -------------------------------------------------------------------------------------------------------

    @memcore.hookimpl
    def memcore_write(
        self, session: memcore.Session, messages: Sequence[memcore.Message], key: str, attempt: int
    ) -> None:
        """Append the turn to the session's document (``update_mode: append``), each message tagged with the turn's
        key. A retry (``attempt > 1``) first reads the document: if its last message carries this key, the earlier
        call landed and nothing is sent again."""
        if attempt > 1 and (stored := self._turns(session)) and stored[-1].get("turn") == key:
            return
        turn = json.dumps([{**_to_wire(m), "turn": key} for m in messages], ensure_ascii=False)
        item = {"content": turn, "document_id": encode_id(session.id), "update_mode": "append"}
        self._retain(session, {**item, "context": "conversation"})

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note, key: str) -> None:
        """A retained item of its own, with the note's kind as its context; its document id comes from the key, so a
        retry replaces the note with itself."""
        metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in note.metadata.items()}
        item = {"content": note.text, "context": note.kind, "metadata": {**metadata, "kind": note.kind}}
        document = "note-" + hashlib.sha256(f"{session.id}\0{key}".encode()).hexdigest()[:32]
        self._retain(session, {**item, "document_id": document, "tags": [NOTE_TAG]})

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> str | None:
        """Queue a consolidation of the user's bank (observations from the new facts); returns its operation id."""
        answer = self._call("POST", f"{self._bank(session.user_id)}/consolidate", {}) or {}
        return answer.get("operation_id")

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: memcore.Session | None, limit: int, user_id: str | None
    ) -> Sequence[memcore.Recollection]:
        body: dict[str, Any] = {"query": query, "budget": self.budget}
        if session is not None and self.scoped_recall:
            body.update(tags=[SESSION_TAG + session.id], tags_match="all_strict")
        found = self._call("POST", f"{self._bank(user_id)}/memories/recall", body, missing={}) or {}
        distinct: dict[str, dict[str, Any]] = {}  # one per text: memcore merges identical texts anyway
        for hit in found.get("results") or ():
            distinct.setdefault(hit.get("text") or "", hit)
        return [_recollection(hit) for hit in list(distinct.values())[:limit]]

    @memcore.hookimpl
    def memcore_history(self, session: memcore.Session) -> Sequence[memcore.Message]:
        return [_from_wire(m) for m in self._turns(session)]

    @memcore.hookimpl
    def memcore_rewind(self, session: memcore.Session, turns: int) -> None:
        """Retain the document again (``update_mode: replace``) without its last ``turns`` turns; delete it if none
        is left. Hindsight drops the removed chunks' facts and the observations made from them."""
        stored = self._turns(session)
        starts = [i for i, m in enumerate(stored) if i == 0 or m.get("turn") != stored[i - 1].get("turn")]
        if turns <= 0 or not stored:
            return
        kept = stored[: starts[-turns]] if turns < len(starts) else []
        if not kept:
            self._call("DELETE", self._document(session), missing=None)
            return
        item = {"content": json.dumps(kept, ensure_ascii=False), "document_id": encode_id(session.id)}
        self._retain(session, {**item, "update_mode": "replace", "context": "conversation"})

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        """A user: delete the bank (documents, facts, observations, entities, traces). A session: delete its
        document and its notes' documents (their facts and the observations made from them go with them)."""
        bank = self._bank(user_id)
        if session_id is None:
            self._call("DELETE", bank)
            return None
        params = {"tags": [SESSION_TAG + session_id], "tags_match": "all_strict", "limit": PAGE}
        while listed := (self._call("GET", f"{bank}/documents", params=params, missing={}) or {}).get("items"):
            for document in listed:
                self._call("DELETE", f"{bank}/documents/{quote_segment(document['id'])}", missing=None)
        return KEPT

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._client.close()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
        text = detail if isinstance(detail, str) else json.dumps(detail)
    except (ValueError, AttributeError):
        text = response.text
    return " ".join(text.split())[:300]


def _to_wire(message: memcore.Message) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name is not None:
        wire["name"] = message.name
    if message.tool_calls:
        wire["tool_calls"] = [dict(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    return wire


def _from_wire(stored: Mapping[str, Any]) -> memcore.Message:
    return memcore.Message(
        role=str(stored.get("role", "")),
        content=str(stored.get("content", "")),
        name=stored.get("name"),
        tool_calls=tuple(stored.get("tool_calls") or ()),
        tool_call_id=stored.get("tool_call_id"),
    )


def _recollection(hit: Mapping[str, Any]) -> memcore.Recollection:
    """A recall result: a fact (``world``, ``experience``) or an ``observation``, labelled with its session's tag."""
    tags = hit.get("tags") or ()
    sessions = {t[len(SESSION_TAG) :] for t in tags if t.startswith(SESSION_TAG)}
    origin = "note" if NOTE_TAG in tags else hit.get("type") or ""
    metadata = {"origin": origin, "kind": hit.get("context") or "", "id": hit.get("id", "")}
    if hit.get("document_id"):
        metadata["document_id"] = hit["document_id"]
    score = (hit.get("scores") or {}).get("final")
    session_id = sessions.pop() if len(sessions) == 1 else None
    return memcore.Recollection(text=hit.get("text") or "", score=score, session_id=session_id, metadata=metadata)

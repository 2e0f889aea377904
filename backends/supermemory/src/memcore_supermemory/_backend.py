"""The Supermemory backend: one httpx client, no threads, no locks, no session state. See ``README.md``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import memcore
from memcore.http import HTTPStatusError, mapped, quote_segment, raise_for_status, redact_url

__all__ = ["SupermemoryBackend", "namespace_for"]

NAMESPACE_MAX = 100  #: Supermemory's longest namespace
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_:-]+")  #: and the characters it takes
SETTING_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")  #: the ``namespace`` setting: no ``:``, room for a user
KEPT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
HASHED = "_h"  #: the start of a hashed user: ``_`` is always followed by two hex digits in an encoded one
PAGE = 100  #: the largest page of a list, and the most ids a delete takes
SEARCH_MAX = 100  #: the most results a search is asked for
TURN, NOTE, SESSION = "turn", "note", "session"  #: ``metadata.memcore``: what a document is to memcore
SEARCH_MODES = ("hybrid", "memories", "chunks")
SESSION_KEPT = (
    "memories Supermemory formed from this session together with other documents of the namespace (dynamic "
    "dreaming groups related documents), and the namespace profile built from memories, may still reflect it"
)


def _encode(raw: str) -> str:
    """Letters, digits and ``-`` as they are; every other character (``_`` and ``:`` included) as ``_`` and two
    lower-case hex digits per UTF-8 byte. Injective, and never yields ``:``."""
    return "".join(ch if ch in KEPT_CHARS else "".join(f"_{b:02x}" for b in ch.encode()) for ch in raw)


def namespace_for(base: str, user_id: str | None) -> str:
    """The Supermemory namespace of a memcore user: the default user's is ``base``; user ``u``'s is
    ``<base>:<encoded u>``, or ``<base>:_h<sha256 of u, 48 hex digits>`` past Supermemory's 100 characters. ``base``
    has no ``:``, so no user's namespace is another's or the default one."""
    if user_id is None:
        return base
    encoded = f"{base}:{_encode(user_id)}"
    if len(encoded) <= NAMESPACE_MAX:
        return encoded
    return f"{base}:{HASHED}{hashlib.sha256(user_id.encode()).hexdigest()[:48]}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:48]


def _sid(session_id: str) -> str:
    """What documents of a session carry (``memcore_sid``) and filters match: a hash, so that no case folding or
    normalisation of metadata strings by the service can make two session ids meet."""
    return _digest(session_id)


def _doc_id(key: str) -> str:
    """The document of a write or a note: named by the operation's idempotency key."""
    return f"memcore-{_digest(key)}"


def _session_doc_id(session_id: str) -> str:
    """The document a commit writes: the session's transcript, one per session."""
    return f"memcore-session-{_sid(session_id)}"


def _render(messages: Sequence[memcore.Message]) -> str:
    """A turn as text for Supermemory to chunk, search and learn from: ``role: content`` per message."""
    lines = []
    for m in messages:
        if m.content:
            lines.append(f"{m.role}: {m.content}")
        elif m.tool_calls:
            names = [str((call.get("function") or {}).get("name") or call.get("name") or "?") for call in m.tool_calls]
            lines.append(f"{m.role}: (calls {', '.join(names)})")
    return "\n\n".join(lines) or "(an empty turn)"


def _message_json(m: memcore.Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [dict(call) for call in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _message(stored: Mapping[str, Any]) -> memcore.Message:
    return memcore.Message(
        role=str(stored.get("role", "user")),
        content=str(stored.get("content", "")),
        name=stored.get("name"),
        tool_calls=tuple(stored.get("tool_calls") or ()),
        tool_call_id=stored.get("tool_call_id"),
    )


def _eq(field: str, value: str) -> dict[str, Any]:
    return {"field": field, "operator": "eq", "value": value, "caseSensitive": True}


class SupermemoryBackend:
    """memcore backend for Supermemory's v5 API (``/ns/{namespace}/...``), over plain httpx.

    Settings (keyword arguments, else environment variables): ``url`` (``SUPERMEMORY_BASE_URL``, default
    ``https://api.supermemory.ai``), ``api_key`` (``SUPERMEMORY_API_KEY``, sent as a bearer token), ``namespace``
    (the default user's namespace, default ``memcore``; user ``u`` gets ``<namespace>:<encoded u>``),
    ``scoped_recall`` (recall in a session searches that session's documents only; default False),
    ``search_mode`` (``hybrid``, the default, ``memories`` or ``chunks``), ``threshold`` (the search's minimum
    similarity, 0 to 1; default: the service's), ``commit`` (``document``: write the session's transcript as a
    document Supermemory learns memories from; ``none``), ``dreaming`` (``dynamic`` or ``instant`` for the commit's
    document; default: the service's), ``timeout`` (seconds per request, default 30) and ``transport``.
    """

    name = "supermemory"
    separates_users = True  #: every user has a namespace of its own

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        namespace: str = "memcore",
        scoped_recall: bool = False,
        search_mode: str = "hybrid",
        threshold: float | None = None,
        commit: str = "document",
        dreaming: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("SUPERMEMORY_BASE_URL") or "https://api.supermemory.ai").rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("SUPERMEMORY_API_KEY", "")
        if not SETTING_PATTERN.fullmatch(namespace):
            raise ValueError(f"namespace must be 1 to 40 of [A-Za-z0-9_-] (no ':'): {namespace!r}")
        if search_mode not in SEARCH_MODES:
            raise ValueError(f"search_mode must be one of {SEARCH_MODES}, not {search_mode!r}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {threshold!r}")
        if commit not in ("document", "none"):
            raise ValueError(f"commit must be 'document' or 'none', not {commit!r}")
        if dreaming not in (None, "dynamic", "instant"):
            raise ValueError(f"dreaming must be 'dynamic' or 'instant', not {dreaming!r}")
        self.namespace, self.scoped_recall, self.search_mode = namespace, scoped_recall, search_mode
        self.threshold, self.commit, self.dreaming = threshold, commit, dreaming
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"SupermemoryBackend(url={redact_url(self.url)!r}, namespace={self.namespace!r})"

    @property
    def journal_key(self) -> str:
        return f"supermemory:{redact_url(self.url)}/{self.namespace}"

    # -- the wire ----------------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: object = None, missing: Any = ..., **kwargs: Any) -> Any:
        """One request; its JSON answer. 404 answers ``missing`` when given. Transport errors, 408/429/5xx and 409
        (a document or namespace busy with another operation): TransientError; other 4xx: HTTPStatusError with
        Supermemory's error text (never a header or the key)."""
        with mapped():
            response = self._client.request(method, path, json=body, **kwargs)
            if response.status_code == 404 and missing is not ...:
                return missing
            if response.status_code == 409:
                raise memcore.TransientError(f"{method} {path}: 409 {self._detail(response)}")
            try:
                raise_for_status(response)
            except HTTPStatusError as exc:
                raise HTTPStatusError(exc.status_code, exc.method, exc.path, self._detail(response)) from None
        return response.json() if response.content else None

    def _detail(self, response: httpx.Response) -> str:
        try:
            body = response.json()
            error = body.get("error")
            if isinstance(error, list):  # a validation error: [{"message", "path"}]
                text = "; ".join(f"{'.'.join(map(str, e.get('path') or ()))}: {e.get('message')}" for e in error)
            else:
                text = " ".join(str(part) for part in (error, body.get("details")) if part)
        except (ValueError, AttributeError):
            text = response.text
        text = " ".join(text.split())[:300]
        return text.replace(self._api_key, "***") if self._api_key else text

    def _ns(self, user_id: str | None) -> str:
        return f"/ns/{quote_segment(namespace_for(self.namespace, user_id))}"

    def _documents(self, ns: str, where: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Every document of the namespace matching all of ``where``, page by page."""
        page = 1
        flt: dict[str, Any] = where[0] if len(where) == 1 else {"operator": "and", "operands": list(where)}
        while True:
            params = {"page": page, "limit": PAGE, "sort": "createdAt", "order": "asc"}
            found = self._call("POST", f"{ns}/list/documents", {"filter": flt}, missing={}, params=params) or {}
            yield from found.get("documents") or ()
            if page >= int((found.get("pagination") or {}).get("totalPages") or 0):
                return
            page += 1

    def _turns(self, session: memcore.Session) -> list[dict[str, Any]]:
        """The session's turn documents, in the order they were written (``memcore_at``, then creation)."""
        ns = self._ns(session.user_id)
        docs = list(self._documents(ns, [_eq("memcore_sid", _sid(session.id)), _eq("memcore", TURN)]))
        return sorted(docs, key=lambda d: str((d.get("metadata") or {}).get("memcore_at") or ""))

    @staticmethod
    def _turn_messages(doc: Mapping[str, Any]) -> list[memcore.Message]:
        try:
            stored = json.loads(str((doc.get("metadata") or {}).get("memcore_messages") or "[]"))
        except ValueError:
            stored = []
        return [_message(m) for m in stored if isinstance(m, dict)]

    def _exists(self, ns: str, doc_id: str) -> bool:
        return self._call("GET", f"{ns}/document/{quote_segment(doc_id)}", missing=None) is not None

    def _delete(self, ns: str, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), PAGE):
            done = self._call("DELETE", f"{ns}/document", {"ids": list(ids[start : start + PAGE])}) or {}
            failed = [e for e in done.get("errors") or () if "not found" not in str(e.get("error", "")).lower()]
            if failed:
                raise memcore.TransientError(f"Supermemory could not delete {len(failed)} documents: {failed[0]}")

    def _add(self, session: memcore.Session, doc_id: str, content: str, metadata: dict[str, Any], task: str) -> None:
        body: dict[str, Any] = {"content": content, "id": doc_id, "metadata": metadata, "taskType": task}
        if self.dreaming is not None:
            body["dreaming"] = self.dreaming
        self._call("POST", f"{self._ns(session.user_id)}/document", body)

    def _base_metadata(self, session: memcore.Session, kind: str) -> dict[str, Any]:
        return {
            "memcore": kind,
            "memcore_sid": _sid(session.id),
            "memcore_session": session.id,
            "memcore_at": f"{time.time_ns():020d}",
        }

    def _transcript(self, session: memcore.Session) -> str:
        return "\n\n".join(_render(self._turn_messages(d)) for d in self._turns(session))

    # -- hooks -------------------------------------------------------------------------------------------------------

    @memcore.hookimpl
    def memcore_write(
        self, session: memcore.Session, messages: Sequence[memcore.Message], key: str, attempt: int
    ) -> None:
        """One document per turn, named by the turn's key, for retrieval only (``taskType: superrag``: chunked and
        searchable, no memories until the commit): the turn as text, the exact messages in its metadata. A retry
        (``attempt > 1``) first looks whether the document is already there."""
        doc_id = _doc_id(key)
        if attempt > 1 and self._exists(self._ns(session.user_id), doc_id):
            return
        metadata = {
            **self._base_metadata(session, TURN),
            "memcore_key": key,
            "memcore_messages": json.dumps([_message_json(m) for m in messages], ensure_ascii=False),
        }
        self._add(session, doc_id, _render(messages), metadata, "superrag")

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note, key: str, attempt: int) -> None:
        """A document of its own (``taskType: memory``: Supermemory learns from it at once), its kind and metadata
        in the document's metadata. Retries deduplicated as writes are."""
        doc_id = _doc_id(key)
        if attempt > 1 and self._exists(self._ns(session.user_id), doc_id):
            return
        metadata: dict[str, Any] = {**self._base_metadata(session, NOTE), "memcore_key": key, "kind": note.kind}
        for k, v in note.metadata.items():
            metadata[f"note_{k}"] = v if isinstance(v, (str, bool, int, float)) else json.dumps(v, ensure_ascii=False)
        text = note.text
        if re.fullmatch(r"https?://\S+", text.strip()):  # a bare URL would be fetched and ingested as a web page
            text = f"note: {text}"
        self._add(session, doc_id, text, metadata, "memory")

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        """``commit="document"``: the session's transcript so far as one document (``taskType: memory``), under the
        session's stable id. Re-adding a document under its id is how Supermemory takes a growing conversation: it
        processes only what is new, and an unchanged transcript is a duplicate that changes nothing."""
        if self.commit == "none":
            return
        transcript = self._transcript(session)
        if not transcript:
            return
        self._add(session, _session_doc_id(session.id), transcript, self._base_metadata(session, SESSION), "memory")

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: memcore.Session | None, limit: int, user_id: str | None
    ) -> Sequence[memcore.Recollection]:
        """The namespace's search (hybrid by default: learned memories and source chunks), scoped to the session's
        documents with ``scoped_recall``. Chunks of commit transcripts are left out (the turns' own chunks say the
        same), as are repeated texts; cut to ``limit``."""
        body: dict[str, Any] = {
            "query": query,
            "limit": max(1, min(SEARCH_MAX, 2 * limit)),
            "searchMode": self.search_mode,
        }
        if self.threshold is not None:
            body["threshold"] = self.threshold
        if session is not None and self.scoped_recall:
            body["filter"] = _eq("memcore_sid", _sid(session.id))
        found = self._call("POST", f"{self._ns(user_id)}/search", body, missing={}) or {}
        out: list[memcore.Recollection] = []
        seen: set[str] = set()
        for result in found.get("results") or ():
            metadata = result.get("metadata") or {}
            memory, chunk = result.get("memory"), result.get("chunk")
            if memory is None and metadata.get("memcore") == SESSION:
                continue
            text = str(memory if memory is not None else chunk or "")
            if not text or text in seen:
                continue
            seen.add(text)
            raw_session = metadata.get("memcore_session")
            out.append(
                memcore.Recollection(
                    text=text,
                    session_id=raw_session if isinstance(raw_session, str) else None,
                    score=float(result["similarity"]) if isinstance(result.get("similarity"), (int, float)) else None,
                    metadata={
                        "origin": "memory" if memory is not None else "chunk",
                        "kind": str(metadata.get("kind") or metadata.get("memcore") or ""),
                        "id": str(result.get("id", "")),
                    },
                )
            )
            if len(out) == limit:
                break
        return out

    @memcore.hookimpl
    def memcore_history(self, session: memcore.Session) -> Sequence[memcore.Message]:
        """The session's turns in order, from the messages each turn document keeps in its metadata."""
        return [m for doc in self._turns(session) for m in self._turn_messages(doc)]

    @memcore.hookimpl
    def memcore_rewind(self, session: memcore.Session, turns: int) -> None:
        """Delete the session's last ``turns`` turn documents (and what Supermemory derived from them); a committed
        transcript is replaced by what is left (``PATCH``: replaced and reprocessed), or deleted if nothing is."""
        if turns <= 0:
            return
        ns, docs = self._ns(session.user_id), self._turns(session)
        undone, kept = docs[len(docs) - min(turns, len(docs)) :], docs[: len(docs) - min(turns, len(docs))]
        if not undone:
            return
        self._delete(ns, [str(d["id"]) for d in undone])
        doc_id = _session_doc_id(session.id)
        if self._exists(ns, doc_id):
            transcript = "\n\n".join(_render(self._turn_messages(d)) for d in kept)
            if transcript:
                self._call("PATCH", f"{ns}/document/{quote_segment(doc_id)}", {"content": transcript})
            else:
                self._delete(ns, [doc_id])

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        """A session: delete every document of it (turns, notes, the commit's transcript; Supermemory removes their
        chunks and memories with them), until none is listed. A user: delete the namespace (every document and
        memory of it, at once)."""
        ns = self._ns(user_id)
        if session_id is not None:
            where = [_eq("memcore_sid", _sid(session_id))]
            self._delete(ns, [str(d["id"]) for d in self._documents(ns, where)])
            if any(True for _ in self._documents(ns, where)):  # one added while the list was paged
                raise memcore.TransientError("documents of the session are still listed after their deletion")
            return SESSION_KEPT
        self._call("DELETE", ns, missing=None)
        return None

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._client.close()

"""The OpenViking backend: one httpx client, no threads, no locks, no session state. See ``README.md``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import memcore
from memcore.http import HTTPStatusError, mapped, quote_segment, raise_for_status, redact_url

__all__ = ["OpenVikingBackend", "decode_session_id", "encode_session_id"]

API = "/api/v1"
BATCH = 100  #: OpenViking refuses a batch of more than 100 messages (400)
RAW_ARGUMENTS = "__memcore_raw_arguments__"  #: tool_input key for arguments that are not a JSON object
NOTES = "memories/notes"
_NOTE_NAME = re.compile(r"/memories/notes/s-([a-z2-7]+)-[0-9a-f]+\.md$")


def encode_session_id(session_id: str) -> str:
    """The id OpenViking stores for ``session_id``: ``%`` becomes ``%25`` and ``/`` becomes ``%2F`` inside the id
    itself, and the whole ids ``.`` and ``..`` become ``%2E`` and ``%2E%2E``. OpenViking keeps a session as a
    directory named by its id, so an id with ``/`` would become nested directories it cannot reach again, and ``..``
    is refused. Reversible (:func:`decode_session_id`); every other id is stored as it is."""
    encoded = session_id.replace("%", "%25").replace("/", "%2F")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def decode_session_id(stored: str) -> str:
    """The inverse of :func:`encode_session_id`."""
    return re.sub(r"%(25|2F|2E)", lambda m: {"25": "%", "2F": "/", "2E": "."}[m.group(1)], stored)


class OpenVikingBackend:
    """memcore backend for an OpenViking server (0.5.x), talking to its HTTP API through plain httpx.

    Settings (keyword arguments, else the environment variables OpenViking's own clients read): ``url``
    (``OPENVIKING_URL``, default ``http://127.0.0.1:1933``), ``api_key`` (``OPENVIKING_API_KEY``), ``account``
    (``OPENVIKING_ACCOUNT``) and ``user`` (``OPENVIKING_USER``) for trusted mode's headers, ``agent`` (the actor
    peer id), ``timeout`` (seconds, per request) and ``transport`` (any ``httpx.BaseTransport``).
    """

    name = "openviking"
    #: OpenViking takes at most 100 messages a batch: memcore splits longer turns into writes of this size, so a retry
    #: resends only the batch that failed.
    max_write_messages = BATCH

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        account: str | None = None,
        user: str | None = None,
        agent: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("OPENVIKING_URL") or "http://127.0.0.1:1933").rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("OPENVIKING_API_KEY", "")
        self.account = account if account is not None else os.environ.get("OPENVIKING_ACCOUNT", "")
        self.user = user if user is not None else os.environ.get("OPENVIKING_USER", "")
        self.agent = agent or ""
        headers = {"X-API-Key": self._api_key} if self._api_key else {}
        for header, value in (
            ("X-OpenViking-Account", self.account),
            ("X-OpenViking-User", self.user),
            ("X-OpenViking-Actor-Peer", self.agent),
        ):
            if value:
                headers[header] = value
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"OpenVikingBackend(url={redact_url(self.url)!r}, account={self.account!r}, user={self.user!r})"

    # -- the wire ----------------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: object = None, **kwargs: Any) -> Any:
        """One request; returns the envelope's ``result``. Transport errors, 408/429/5xx: TransientError; other
        4xx: HTTPStatusError carrying OpenViking's error code and message (never a header or the key)."""
        with mapped():
            response = self._client.request(method, API + path, json=body, **kwargs)
            try:
                raise_for_status(response)
            except HTTPStatusError as exc:
                raise HTTPStatusError(exc.status_code, exc.method, exc.path, self._envelope_error(response)) from None
        envelope = response.json() if response.content else {}
        if isinstance(envelope, dict) and envelope.get("status") == "error":
            raise HTTPStatusError(response.status_code, method, path, self._envelope_error(response))
        return envelope.get("result") if isinstance(envelope, dict) else envelope

    def _envelope_error(self, response: httpx.Response) -> str:
        try:
            error = response.json().get("error") or {}
            text = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
        except (ValueError, AttributeError):
            text = " ".join(response.text.split())
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text[:300]

    @staticmethod
    def _session_path(session: memcore.Session) -> str:
        return f"/sessions/{quote_segment(encode_session_id(session.id))}"

    # -- hooks -------------------------------------------------------------------------------------------------------

    @memcore.hookimpl
    def memcore_open_session(self, session: memcore.Session) -> None:
        try:
            self._call("POST", "/sessions", {"session_id": encode_session_id(session.id)})
        except HTTPStatusError as exc:
            if exc.status_code != 409:  # ALREADY_EXISTS: a retry, a resume, or a restart
                raise

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        if len(messages) > BATCH:  # memcore never asks for more (max_write_messages); a direct caller might
            raise ValueError(f"OpenViking takes at most {BATCH} messages a write, not {len(messages)}")
        wire = [_to_wire(m) for m in messages]
        self._call("POST", self._session_path(session) + "/messages/batch", {"messages": wire})

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> str | None:
        """Archive the session and start extraction; returns OpenViking's task id (``None`` if nothing was new)."""
        result = self._call("POST", self._session_path(session) + "/commit", {}) or {}
        return result.get("task_id")

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: memcore.Session | None, limit: int) -> Sequence[memcore.Recollection]:
        body: dict[str, Any] = {"query": query, "limit": limit + 10}  # room for the directory placeholders we drop
        if session is not None:
            body["session_id"] = encode_session_id(session.id)
        found = self._call("POST", "/search/search" if session is not None else "/search/find", body) or {}
        hits = [h for kind in ("memories", "resources", "skills") for h in found.get(kind) or () if h.get("level") == 2]
        hits.sort(key=lambda h: -(h.get("score") or 0.0))
        # One per text: memcore merges identical texts into one, and the same fact can be stored twice (an extraction
        # of a commit whose reply was lost and that was sent again), so ``limit`` counts distinct recollections.
        distinct: dict[str, dict[str, Any]] = {}
        for h in hits:
            distinct.setdefault(h.get("abstract") or "", h)
        hits = list(distinct.values())
        return [
            memcore.Recollection(
                text=h.get("abstract") or "",
                score=h.get("score"),
                session_id=_note_session(h.get("uri", "")),
                metadata={"uri": h.get("uri", ""), "context_type": h.get("context_type", "")},
            )
            for h in hits[:limit]
        ]

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note) -> None:
        digest = hashlib.sha256(json.dumps([session.id, note.kind, note.text]).encode()).hexdigest()[:32]
        label = base64.b32encode(session.id.encode()).decode().rstrip("=").lower()
        name = f"s-{label}-{digest}" if len(label) <= 160 else digest  # file names stay under 255 bytes
        uri = f"viking://user/{self.user or 'default'}/{NOTES}/{name}.md"
        self._call("POST", "/content/write", {"uri": uri, "content": note.text, "mode": "replace", "wait": False})

    @memcore.hookimpl
    def memcore_history(self, session: memcore.Session) -> Sequence[memcore.Message]:
        """Completed archives in order, then the live context (which holds archives still being extracted)."""
        path = self._session_path(session)
        context = self._call("GET", path + "/context", params={"token_budget": 1 << 40}) or {}
        stored: dict[str, Mapping[str, Any]] = {}
        for index in range(1, int((context.get("stats") or {}).get("totalArchives") or 0) + 1):
            try:
                archive = self._call("GET", f"{path}/archives/archive_{index:03d}") or {}
            except HTTPStatusError as exc:
                if exc.status_code == 404:  # not completed yet: its messages are in the context
                    continue
                raise
            stored.update((m["id"], m) for m in archive.get("messages") or ())
        stored.update((m["id"], m) for m in context.get("messages") or () if m["id"] not in stored)
        return [_from_wire(m) for m in stored.values()]

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._client.close()


def _to_wire(message: memcore.Message) -> dict[str, Any]:
    """A memcore message as an OpenViking message: a text part, tool calls as tool parts (status ``pending``), and a
    tool result as a tool part (status ``completed``) carrying the call id, the tool name and the output."""
    if message.role == "tool" and message.tool_call_id is not None:
        part = {"type": "tool", "tool_id": message.tool_call_id, "tool_name": message.name or ""}
        return {"role": "tool", "parts": [{**part, "tool_output": message.content, "tool_status": "completed"}]}
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for call in message.tool_calls:
        function = call.get("function") or {}
        arguments = function.get("arguments", "")
        try:
            parsed = json.loads(arguments)
        except (TypeError, ValueError):
            parsed = None
        exact = isinstance(parsed, dict) and json.dumps(parsed, ensure_ascii=False) == arguments
        if not exact or RAW_ARGUMENTS in parsed:  # keep arguments that would not survive a JSON round trip as given
            parsed = {RAW_ARGUMENTS: arguments}
        tool = {"type": "tool", "tool_id": call.get("id", ""), "tool_name": function.get("name", "")}
        parts.append({**tool, "tool_input": parsed, "tool_status": "pending"})
    return {"role": message.role, "parts": parts or [{"type": "text", "text": ""}]}


def _from_wire(stored: Mapping[str, Any]) -> memcore.Message:
    parts = stored.get("parts") or ()
    text = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
    tools = [p for p in parts if p.get("type") == "tool"]
    if stored.get("role") == "tool" and tools and tools[0].get("tool_status") == "completed":
        result = tools[0]
        content = text + result.get("tool_output", "")
        name = result.get("tool_name") or None
        return memcore.Message(role="tool", content=content, name=name, tool_call_id=result.get("tool_id"))
    calls = []
    for p in tools:
        given = p.get("tool_input") or {}
        arguments = given[RAW_ARGUMENTS] if RAW_ARGUMENTS in given else json.dumps(given, ensure_ascii=False)
        function = {"name": p.get("tool_name", ""), "arguments": arguments}
        calls.append({"id": p.get("tool_id", ""), "type": "function", "function": function})
    return memcore.Message(role=stored.get("role", ""), content=text, tool_calls=tuple(calls))


def _note_session(uri: str) -> str | None:
    """The session a note was remembered in, from its file name (notes only; extracted memories have none)."""
    match = _NOTE_NAME.search(uri)
    if match is None:
        return None
    label = match.group(1).upper()
    return base64.b32decode(label + "=" * (-len(label) % 8)).decode()

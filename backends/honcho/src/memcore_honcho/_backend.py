"""The Honcho backend: one httpx client, no threads, no locks, no session state. See ``README.md``."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import memcore
from memcore.http import HTTPStatusError, mapped, quote_segment, raise_for_status, redact_url

__all__ = ["HonchoBackend", "decode_id", "encode_id"]

API = "/v3/workspaces"
ID_MAX = 512  #: Honcho's longest workspace, peer and session id
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")  #: and the characters it takes
KEPT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
HASHED = "_h"  #: the start of a hashed id: ``_`` is always followed by two hex digits in an encoded one
MAX_CONTENT = 25_000  #: Honcho's MAX_MESSAGE_SIZE default: characters per message
PAGE = 100  #: Honcho's largest page
TURN, NOTE = "turn", "note"  #: ``metadata.memcore``: what a message is to memcore
REWOUND = "memcore_rewound"  #: metadata flag of a message taken back by a rewind
NOT_REWOUND = {"NOT": [{"metadata": {REWOUND: True}}]}
SESSION_KEPT = (
    "the user peer's card and representation, and conclusions Honcho's dreams derived without a session, which may "
    "draw on the forgotten session's messages"
)


def encode_id(raw: str) -> str:
    """The Honcho id of a memcore session or user id. Honcho ids take only ``[A-Za-z0-9_-]``: letters, digits and
    ``-`` stay as they are, every other character (``_`` included) becomes ``_`` and two lower-case hex digits per
    UTF-8 byte (``a/b`` -> ``a_2fb``, ``a_b`` -> ``a_5fb``). Injective and reversible (:func:`decode_id`)."""
    return "".join(ch if ch in KEPT_CHARS else "".join(f"_{b:02x}" for b in ch.encode()) for ch in raw)


def decode_id(stored: str) -> str | None:
    """The inverse of :func:`encode_id`; ``None`` for a hashed id (or one no memcore id encodes to)."""
    if stored.startswith(HASHED) or not ID_PATTERN.fullmatch(stored):
        return None
    out, i = bytearray(), 0
    while i < len(stored):
        if stored[i] == "_":
            try:
                out.append(int(stored[i + 1 : i + 3], 16))
            except ValueError:
                return None
            i += 3
        else:
            out += stored[i].encode()
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        return None


def _fit(prefix: str, raw: str) -> str:
    """``prefix + encode_id(raw)``, or ``prefix + _h<sha256 of raw>`` past Honcho's 512 characters."""
    encoded = prefix + encode_id(raw)
    return encoded if len(encoded) <= ID_MAX else prefix + HASHED + hashlib.sha256(raw.encode()).hexdigest()


class HonchoBackend:
    """memcore backend for a Honcho server (API v3), over its HTTP API through plain httpx.

    Settings (keyword arguments, else environment variables): ``url`` (``HONCHO_URL``, default
    ``http://localhost:8000``), ``api_key`` (``HONCHO_API_KEY``, sent as a bearer token), ``workspace`` (the default
    user's workspace, default ``memcore``; user ``u`` gets ``<workspace>--<encoded u>``), ``user_peer`` and
    ``assistant_peer`` (the two peers of every session, default ``user`` and ``assistant``), ``scoped_recall``
    (recall in a session searches that session only; default False), ``conclusions`` (recall also queries the user
    peer's conclusions; default True), ``commit`` (``dream``: schedule a dream of the user peer scoped to the
    session; ``none``: a commit sends nothing), ``timeout`` (seconds per request, default 30) and ``transport``.
    """

    name = "honcho"
    separates_users = True  #: every user has a workspace of its own
    max_write_messages = 100  #: MessageBatchCreate takes at most 100 messages

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        workspace: str = "memcore",
        user_peer: str = "user",
        assistant_peer: str = "assistant",
        scoped_recall: bool = False,
        conclusions: bool = True,
        commit: str = "dream",
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("HONCHO_URL") or "http://localhost:8000").rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("HONCHO_API_KEY", "")
        if not ID_PATTERN.fullmatch(workspace) or "--" in workspace or len(workspace) > ID_MAX - 68:
            raise ValueError(f"workspace must be 1 to 444 of [A-Za-z0-9_-], without '--': {workspace!r}")
        for peer in (user_peer, assistant_peer):
            if not ID_PATTERN.fullmatch(peer) or len(peer) > ID_MAX:
                raise ValueError(f"peer ids must be 1 to 512 of [A-Za-z0-9_-]: {peer!r}")
        if user_peer == assistant_peer:
            raise ValueError("user_peer and assistant_peer must differ")
        if commit not in ("dream", "none"):
            raise ValueError(f"commit must be 'dream' or 'none', not {commit!r}")
        self.workspace, self.user_peer, self.assistant_peer = workspace, user_peer, assistant_peer
        self.scoped_recall, self.conclusions, self.commit = scoped_recall, conclusions, commit
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"HonchoBackend(url={redact_url(self.url)!r}, workspace={self.workspace!r})"

    @property
    def journal_key(self) -> str:
        return f"honcho:{redact_url(self.url)}/{self.workspace}"

    # -- the wire ----------------------------------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, body: object = None, missing: Any = ..., gone: str = "", **kwargs: Any
    ) -> Any:
        """One request; its JSON answer. 404 answers ``missing`` when given, or raises TransientError when ``gone``
        says why the resource may come back (a session being deleted). Transport errors, 408/429/5xx:
        TransientError; other 4xx: HTTPStatusError with Honcho's ``detail`` (never a header or the key)."""
        with mapped():
            response = self._client.request(method, path, json=body, **kwargs)
            if response.status_code == 404 and missing is not ...:
                return missing
            if response.status_code == 404 and gone:
                raise memcore.TransientError(f"{method} {path}: 404 {_detail(response)} ({gone})")
            try:
                raise_for_status(response)
            except HTTPStatusError as exc:
                detail = _detail(response).replace(self._api_key, "***") if self._api_key else _detail(response)
                raise HTTPStatusError(exc.status_code, exc.method, exc.path, detail) from None
        return response.json() if response.content else None

    def _workspace(self, user_id: str | None) -> str:
        """User ``u``'s workspace id: ``<workspace>--<encoded u>``; the setting has no ``--``, so no two meet."""
        return self.workspace if user_id is None else _fit(self.workspace + "--", user_id)

    def _session_path(self, session: memcore.Session) -> str:
        workspace = quote_segment(self._workspace(session.user_id))
        return f"{API}/{workspace}/sessions/{quote_segment(_fit('', session.id))}"

    def _messages(self, session: memcore.Session, reverse: bool = False) -> Iterator[dict[str, Any]]:
        """Every stored message of the session, in order (page by page)."""
        page = 1
        while True:
            params = {"page": page, "size": PAGE, "reverse": str(reverse).lower()}
            found = self._call("POST", f"{self._session_path(session)}/messages/list", {}, params=params) or {}
            yield from found.get("items") or ()
            if page >= int(found.get("pages") or 0):
                return
            page += 1

    def _last_key(self, session: memcore.Session) -> str | None:
        """The memcore key of the session's last message (the lane is ours: a call that landed is the last one)."""
        params = {"page": 1, "size": 1, "reverse": "true"}
        found = self._call("POST", f"{self._session_path(session)}/messages/list", {}, params=params) or {}
        items = found.get("items") or ()
        return (items[0].get("metadata") or {}).get("memcore_key") if items else None

    def _post_messages(self, session: memcore.Session, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            if len(message["content"]) > MAX_CONTENT:
                raise ValueError(
                    f"a message of {len(message['content'])} characters: Honcho takes at most {MAX_CONTENT} (its "
                    "MAX_MESSAGE_SIZE); nothing of this write was stored"
                )
        gone = "the session is being deleted"
        self._call("POST", f"{self._session_path(session)}/messages", {"messages": messages}, gone=gone)

    def _peer(self, role: str) -> str:
        return self.user_peer if role == "user" else self.assistant_peer

    # -- hooks -------------------------------------------------------------------------------------------------------

    @memcore.hookimpl
    def memcore_open_session(self, session: memcore.Session) -> None:
        """Get or create the user's workspace, then the session with its two peers (the assistant unobserved).
        A session still being deleted (after a forget) answers 404: retried until Honcho has finished."""
        workspace = self._workspace(session.user_id)
        self._call("POST", API, {"id": workspace, "metadata": {"memcore_user": session.user_id}})
        body = {
            "id": _fit("", session.id),
            "metadata": {"memcore_session": session.id, "memcore_user": session.user_id},
            "peers": {self.user_peer: {}, self.assistant_peer: {"observe_me": False}},
        }
        self._call("POST", f"{API}/{quote_segment(workspace)}/sessions", body, gone="the session is being deleted")

    @memcore.hookimpl
    def memcore_write(
        self, session: memcore.Session, messages: Sequence[memcore.Message], key: str, attempt: int
    ) -> None:
        """One batch of messages (the user's from the user peer, the rest from the assistant peer), each carrying
        the turn's key, its role and tool fields in metadata. A retry (``attempt > 1``) first reads the session's
        last message: if it carries this key, the earlier call landed (a batch is stored whole or not at all)."""
        if attempt > 1 and self._last_key(session) == key:
            return
        wire = [
            {"peer_id": self._peer(m.role), "content": m.content, "metadata": _metadata(session, m, key)}
            for m in messages
        ]
        self._post_messages(session, wire)

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note, key: str, attempt: int) -> None:
        """A message of the user peer marked ``memcore: note`` with its kind (Honcho's deriver reasons over it as
        something about the user); history leaves it out, recall finds it. Retries deduplicated as writes are."""
        if attempt > 1 and self._last_key(session) == key:
            return
        metadata = {
            "memcore": NOTE,
            "memcore_key": key,
            "memcore_session": session.id,
            "kind": note.kind,
            "note": {k: v if isinstance(v, str) else json.dumps(v) for k, v in note.metadata.items()},
        }
        self._post_messages(session, [{"peer_id": self.user_peer, "content": note.text, "metadata": metadata}])

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        """Honcho derives conclusions from each message in the background on its own; a commit (``commit="dream"``)
        schedules a dream of the user peer scoped to the session, which consolidates them at once."""
        if self.commit == "none":
            return
        body = {
            "observer": self.user_peer,
            "observed": self.user_peer,
            "dream_type": "omni",
            "session_id": _fit("", session.id),
        }
        self._call("POST", f"{API}/{quote_segment(self._workspace(session.user_id))}/schedule_dream", body)

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: memcore.Session | None, limit: int, user_id: str | None
    ) -> Sequence[memcore.Recollection]:
        """The workspace's message search (Honcho's hybrid full-text and semantic search), rewound messages left
        out, and, with ``conclusions``, the user peer's conclusions for the query; interleaved, cut to ``limit``."""
        workspace = quote_segment(self._workspace(user_id))
        filters: dict[str, Any] = dict(NOT_REWOUND)
        scoped = session is not None and self.scoped_recall
        if session is not None and scoped:
            filters = {"AND": [{"session_id": _fit("", session.id)}, NOT_REWOUND]}
        body = {"query": query, "limit": max(1, min(PAGE, limit)), "filters": filters}
        found = self._call("POST", f"{API}/{workspace}/search", body) or []
        messages = [_from_message(m, self.user_peer) for m in found]
        concluded: list[memcore.Recollection] = []
        if self.conclusions:
            where: dict[str, Any] = {"observer_id": self.user_peer, "observed_id": self.user_peer}
            if session is not None and scoped:
                where["session_id"] = _fit("", session.id)
            body = {"query": query, "top_k": max(1, min(PAGE, limit)), "filters": where}
            concluded = [_from_conclusion(c) for c in self._call("POST", f"{API}/{workspace}/conclusions/query", body)]
        merged = [r for pair in _zip_longest(messages, concluded) for r in pair]
        return merged[:limit]

    @memcore.hookimpl
    def memcore_history(self, session: memcore.Session) -> Sequence[memcore.Message]:
        """The session's messages in order, notes and rewound messages left out."""
        return [_to_message(m, self.user_peer) for m in self._messages(session) if _is_live_turn(m)]

    @memcore.hookimpl
    def memcore_rewind(self, session: memcore.Session, turns: int) -> None:
        """Honcho deletes no single message: the last ``turns`` writes (by key) get ``memcore_rewound: true`` in
        their metadata, which history and recall leave out. Honcho's conclusions from them stay."""
        if turns <= 0:
            return
        live = [m for m in self._messages(session) if _is_live_turn(m) and (m.get("metadata") or {}).get("memcore")]
        keys: list[str] = []
        for m in reversed(live):
            key = m["metadata"].get("memcore_key")
            if key not in keys:
                if len(keys) == turns:
                    break
                keys.append(key)
        for m in live:
            if m["metadata"].get("memcore_key") in keys:
                path = f"{self._session_path(session)}/messages/{quote_segment(m['id'])}"
                self._call("PUT", path, {"metadata": {**m["metadata"], REWOUND: True}})

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        """A session: delete it (Honcho marks it inactive and deletes its messages, conclusions and embeddings in
        the background). A user: delete every session, then the workspace (peers, cards, everything). Honcho
        deletes asynchronously, so until the data is gone this raises TransientError and memcore asks again."""
        workspace = quote_segment(self._workspace(user_id))
        if session_id is not None:
            session = memcore.Session(id=session_id, user_id=user_id)
            self._call("DELETE", self._session_path(session), missing=None)
            params = {"page": 1, "size": 1}
            left = self._call("POST", f"{self._session_path(session)}/messages/list", {}, params=params) or {}
            if left.get("items"):
                raise memcore.TransientError("Honcho is still deleting the session's messages")
            return SESSION_KEPT
        while listed := (
            self._call("POST", f"{API}/{workspace}/sessions/list", {}, params={"page": 1, "size": PAGE}) or {}
        ).get("items"):
            for found in listed:
                self._call("DELETE", f"{API}/{workspace}/sessions/{quote_segment(found['id'])}", missing=None)
        with mapped():
            response = self._client.delete(f"{API}/{workspace}")
            if response.status_code == 409:  # a session came back between the list and the delete
                raise memcore.TransientError(f"DELETE {API}/{workspace}: 409 {_detail(response)}")
            if response.status_code != 404:
                raise_for_status(response)
        peers = self._call("POST", f"{API}/{workspace}/peers/list", {}, params={"page": 1, "size": 1}) or {}
        if peers.get("items"):
            raise memcore.TransientError("Honcho is still deleting the workspace")
        return None

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._client.close()


def _zip_longest(a: list[memcore.Recollection], b: list[memcore.Recollection]) -> Iterator[list[memcore.Recollection]]:
    for i in range(max(len(a), len(b))):
        yield [x[i] for x in (a, b) if i < len(x)]


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
        text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
    except (ValueError, AttributeError):
        text = response.text
    return " ".join(text.split())[:300]


def _metadata(session: memcore.Session, message: memcore.Message, key: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "memcore": TURN,
        "memcore_key": key,
        "memcore_session": session.id,
        "role": message.role,
    }
    if message.name is not None:
        metadata["name"] = message.name
    if message.tool_calls:
        metadata["tool_calls"] = [dict(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        metadata["tool_call_id"] = message.tool_call_id
    return metadata


def _is_live_turn(stored: Mapping[str, Any]) -> bool:
    metadata = stored.get("metadata") or {}
    return metadata.get("memcore") != NOTE and not metadata.get(REWOUND)


def _to_message(stored: Mapping[str, Any], user_peer: str) -> memcore.Message:
    """A stored message back as memcore's; one written by another client gets its role from its peer."""
    metadata = stored.get("metadata") or {}
    role = metadata.get("role") or ("user" if stored.get("peer_id") == user_peer else "assistant")
    return memcore.Message(
        role=str(role),
        content=str(stored.get("content", "")),
        name=metadata.get("name"),
        tool_calls=tuple(metadata.get("tool_calls") or ()),
        tool_call_id=metadata.get("tool_call_id"),
    )


def _session_of(metadata: Mapping[str, Any], honcho_id: Any) -> str | None:
    raw = metadata.get("memcore_session")
    if isinstance(raw, str):
        return raw
    return decode_id(honcho_id) if isinstance(honcho_id, str) else None


def _from_message(stored: Mapping[str, Any], user_peer: str) -> memcore.Recollection:
    metadata = stored.get("metadata") or {}
    note = metadata.get("memcore") == NOTE
    kind = metadata.get("kind") if note else metadata.get("role") or _to_message(stored, user_peer).role
    return memcore.Recollection(
        text=str(stored.get("content", "")),
        session_id=_session_of(metadata, stored.get("session_id")),
        metadata={
            "origin": "note" if note else "message",
            "kind": str(kind or ""),
            "id": str(stored.get("id", "")),
            "peer_id": str(stored.get("peer_id", "")),
        },
    )


def _from_conclusion(stored: Mapping[str, Any]) -> memcore.Recollection:
    """One of Honcho's conclusions: ``explicit`` (from messages) or derived in a dream."""
    return memcore.Recollection(
        text=str(stored.get("content", "")),
        session_id=_session_of({}, stored.get("session_id")),
        metadata={"origin": "conclusion", "kind": str(stored.get("level") or ""), "id": str(stored.get("id", ""))},
    )

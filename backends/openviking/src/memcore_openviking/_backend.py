"""The OpenViking backend: one httpx client, no threads, no locks, no session state. See ``README.md``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import memcore
from memcore.http import HTTPStatusError, mapped, quote_segment, raise_for_status, redact_url

__all__ = [
    "OpenVikingBackend",
    "decode_session_id",
    "encode_session_id",
    "is_openviking_id",
    "openviking_user_id",
]

API = "/api/v1"
BATCH = 100  #: OpenViking refuses a batch of more than 100 messages (400)
RAW_ARGUMENTS = "__memcore_raw_arguments__"  #: tool_input key for arguments that are not a JSON object
HOME = "viking://~"  #: the caller's own user root: OpenViking resolves it from the request's identity
MEMORIES = f"{HOME}/memories"
NOTES = f"{MEMORIES}/notes"
#: Every message memcore posts carries ``turn_id = "memcore:<idempotency key>"``: OpenViking stores it verbatim and
#: uses it for nothing else, so a retry can tell whether the batch it repeats is already there.
TURN_MARK = "memcore:"
#: Prefix of the OpenViking user id of a memcore user id that OpenViking cannot take as it is (see
#: :func:`openviking_user_id`).
MAPPED_USER = "_m-"
DEFAULT_ID = "default"  #: account and user in trusted mode when the settings name none
AUTH_MODES = ("trusted", "api_key")
CONTEXT_BUDGET = 1 << 40  #: a token budget no session reaches: /context then returns every live message
#: how Python's json.JSONDecodeError ends its message ("Expecting value: line 1 column 1 (char 0)")
_JSON_DECODE_ERROR = re.compile(r": line \d+ column \d+ \(char \d+\)")
_BUSY = ("pending", "running", "cancelling")  #: commit task states whose extraction may still write memories
_ID = re.compile(r"[a-zA-Z0-9_.@-]{1,255}")
_NOTE_NAME = re.compile(r"/memories/notes/s-([a-z2-7]+)-[0-9a-f]+\.md$")
#: Characters of a session id that OpenViking cannot keep in a directory name reachable by URI: ``/`` nests
#: directories, ``\\`` is refused, ``?`` cuts a ``viking://`` URI short, ``{`` opens a path variable
#: (``{calendar:today}``); ``%`` is the escape itself.
_SESSION_ESCAPES = frozenset("%/\\?{")
MAX_NAME_BYTES = 255  #: OpenViking truncates longer directory names (keeping 32 bits of a hash): they could collide
HASHED_SESSION = "%H"  #: prefix of the stored id of a session id too long to keep (never the start of an escaped id)


def _escape(char: str) -> str:
    return urllib.parse.quote(char, safe="")


def encode_session_id(session_id: str) -> str:
    """The id OpenViking stores for ``session_id``. OpenViking keeps a session as a directory named by its id and
    reaches it again through ``viking://`` URIs (to forget it), so the id is percent-escaped where it could not:

    - ``%``, ``/``, ``\\``, ``?`` and ``{`` anywhere (``%`` is the escape; ``/`` would nest directories; ``\\`` is
      refused; ``?`` ends a URI; ``{x:y}`` is a path variable);
    - whitespace at the end (OpenViking strips it from some paths, so ``a `` would collide with ``a``);
    - the whole ids ``.`` and ``..``, and the ``:`` of a leading ``<letter>:`` (refused as a drive prefix).

    Every other id is stored as it is. Reversible (:func:`decode_session_id`), except that an id whose stored form
    would be longer than 255 UTF-8 bytes is stored as ``%H`` and the SHA-256 of it (OpenViking would truncate it)."""
    encoded = "".join(_escape(c) if c in _SESSION_ESCAPES else c for c in session_id)
    body = encoded.rstrip()
    encoded = body + "".join(_escape(c) for c in encoded[len(body) :])
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    elif len(encoded) >= 2 and encoded[1] == ":" and encoded[0].isalpha():
        encoded = encoded[0] + "%3A" + encoded[2:]
    if len(encoded.encode()) > MAX_NAME_BYTES:
        return HASHED_SESSION + hashlib.sha256(session_id.encode()).hexdigest()
    return encoded


def decode_session_id(stored: str) -> str:
    """The inverse of :func:`encode_session_id` (every ``%`` of a stored id starts an escape). Raises ValueError for
    the hashed form of a long id."""
    if stored.startswith(HASHED_SESSION):
        raise ValueError("a session id longer than OpenViking keeps is stored as its hash, which cannot be decoded")
    return urllib.parse.unquote(stored, errors="strict")


def is_openviking_id(value: str) -> bool:
    """Whether OpenViking 0.5 takes ``value`` as an account, user or peer id as it is: 1 to 255 of
    ``[a-zA-Z0-9_.@-]``, at most one ``@``, not ``.`` nor ``..`` (``core/identifiers.py``)."""
    return bool(_ID.fullmatch(value)) and value not in (".", "..") and value.count("@") <= 1


def openviking_user_id(user_id: str, default_user: str = DEFAULT_ID) -> str:
    """The OpenViking user id of memcore's user ``user_id`` (not the default user, which is ``default_user``).

    An id OpenViking takes (:func:`is_openviking_id`) goes as it is, unless it starts with ``_m-`` or equals
    ``default_user``; every other id (spaces, ``/``, non-ASCII, more than 255 characters...) goes as ``_m-`` and the
    64 hex digits of the SHA-256 of its UTF-8 bytes. Injective: an id sent as it is never starts with ``_m-``, so it
    cannot equal a mapped one, and two mapped ids differ unless SHA-256 collides; none equals ``default_user``."""
    if is_openviking_id(user_id) and not user_id.startswith(MAPPED_USER) and user_id != default_user:
        return user_id
    return MAPPED_USER + hashlib.sha256(user_id.encode()).hexdigest()


class OpenVikingBackend:
    """memcore backend for an OpenViking server (0.5.x), talking to its HTTP API through plain httpx.

    Settings (keyword arguments, else the environment variables OpenViking's own clients read): ``url``
    (``OPENVIKING_URL``, default ``http://127.0.0.1:1933``), ``api_key`` (``OPENVIKING_API_KEY``), ``auth_mode``
    (``OPENVIKING_AUTH_MODE``: ``"api_key"``, the default, or ``"trusted"``), ``account`` (``OPENVIKING_ACCOUNT``)
    and ``user`` (``OPENVIKING_USER``), ``agent`` (the actor peer id), ``timeout`` (seconds, per request) and
    ``transport`` (any ``httpx.BaseTransport``).

    ``auth_mode="trusted"`` (a server in trusted mode, ``api_key`` its root key): every request names its user in
    ``X-OpenViking-User``, memcore's user mapped by :func:`openviking_user_id` (the default user: ``user``, else
    ``"default"``), under ``X-OpenViking-Account`` ``account`` (else ``"default"``); users are kept apart
    (``separates_users``). ``"api_key"``: one identity for every request (the key's, or the configured headers on a
    trusted server), so only memcore's default user.
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
        auth_mode: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("OPENVIKING_URL") or "http://127.0.0.1:1933").rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("OPENVIKING_API_KEY", "")
        self.account = account if account is not None else os.environ.get("OPENVIKING_ACCOUNT", "")
        self.user = user if user is not None else os.environ.get("OPENVIKING_USER", "")
        self.agent = agent or ""
        mode = auth_mode if auth_mode is not None else os.environ.get("OPENVIKING_AUTH_MODE", "")
        self.auth_mode = mode or "api_key"
        if self.auth_mode not in AUTH_MODES:
            raise ValueError(f"auth_mode must be one of {', '.join(AUTH_MODES)}, not {self.auth_mode!r}")
        self.trusted = self.auth_mode == "trusted"
        if self.trusted:
            if not self._api_key:
                raise ValueError("auth_mode 'trusted' needs the server's root key as api_key")
            self.account = self.account or DEFAULT_ID
            self.user = self.user or DEFAULT_ID
        for what, value in (("account", self.account), ("user", self.user), ("agent", self.agent)):
            if value and not is_openviking_id(value):
                raise ValueError(
                    f"{what} {value!r} is not an id OpenViking takes (1 to 255 of [a-zA-Z0-9_.@-], at most one @)"
                )
        if self.account.startswith("_"):
            raise ValueError(f"account {self.account!r}: OpenViking refuses account ids that start with '_'")
        if self.user.startswith(MAPPED_USER):
            raise ValueError(f"user {self.user!r}: ids that start with {MAPPED_USER!r} are memcore's mapped user ids")
        #: Whether memcore may give this backend users other than the default one: only in trusted mode, where each
        #: request says whose it is; with one key every request is the key's user.
        self.separates_users = self.trusted
        headers = {"X-API-Key": self._api_key} if self._api_key else {}
        for header, value in (
            ("X-OpenViking-Account", self.account),
            ("X-OpenViking-User", "" if self.trusted else self.user),  # trusted: per request
            ("X-OpenViking-Actor-Peer", self.agent),
        ):
            if value:
                headers[header] = value
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return (
            f"OpenVikingBackend(url={redact_url(self.url)!r}, auth_mode={self.auth_mode!r}, "
            f"account={self.account!r}, user={self.user!r})"
        )

    def openviking_user(self, user_id: str | None) -> str:
        """The OpenViking user a request for memcore's user ``user_id`` runs as (trusted mode)."""
        return self.user if user_id is None else openviking_user_id(user_id, self.user)

    # -- the wire ----------------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: object = None, *, user: str | None = None, **kwargs: Any) -> Any:
        """One request as memcore's user ``user`` (trusted mode; else the one identity); returns the envelope's
        ``result``. Transport errors, 408/429/5xx: TransientError; other 4xx: HTTPStatusError carrying OpenViking's
        error code and message (never a header or the key)."""
        headers = {"X-OpenViking-User": self.openviking_user(user)} if self.trusted else None
        with mapped():
            try:
                response = self._client.request(method, API + path, json=body, headers=headers, **kwargs)
            except (httpx.LocalProtocolError, UnicodeEncodeError) as exc:  # never retried: it cannot be sent as is
                raise ValueError(f"{method} {API}{path} cannot be sent: {type(exc).__name__}") from None
            try:
                raise_for_status(response)
            except HTTPStatusError as exc:
                raise HTTPStatusError(exc.status_code, exc.method, exc.path, self._envelope_error(response)) from None
        envelope = response.json() if response.content else {}
        if isinstance(envelope, dict) and envelope.get("status") == "error":
            raise HTTPStatusError(response.status_code, method, path, self._envelope_error(response))
        return envelope.get("result") if isinstance(envelope, dict) else envelope

    def _get(self, path: str, *, user: str | None, missing: Any = None, **params: Any) -> Any:
        """GET ``path``; ``missing`` when OpenViking answers 404. A 400 whose message is a JSON decoding error is
        TransientError: a GET sends no JSON, so it is the server reading one of its own files (a session's
        ``.meta.json``) while a commit rewrites it, and the same read succeeds a moment later."""
        try:
            return self._call("GET", path, user=user, params=params or None)
        except HTTPStatusError as exc:
            if exc.status_code == 404:
                return missing
            if exc.status_code == 400 and _JSON_DECODE_ERROR.search(str(exc)):
                raise memcore.TransientError(f"GET {API}{path}: OpenViking read a file being rewritten") from None
            raise

    def _remove(self, uri: str, *, user: str | None, recursive: bool = False) -> int:
        """``DELETE /fs`` (files and their vectors; the parent's summary is refreshed in the background). Returns
        how many records OpenViking says it deleted; a missing path is fine (0)."""
        params = {"uri": uri, "recursive": "true" if recursive else "false"}
        try:
            result = self._call("DELETE", "/fs", user=user, params=params) or {}
        except HTTPStatusError as exc:
            if exc.status_code == 404:
                return 0
            raise
        return int(result.get("estimated_deleted_count") or 0)

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
    def _session_path(session_id: str) -> str:
        return f"/sessions/{quote_segment(encode_session_id(session_id))}"

    # -- hooks -------------------------------------------------------------------------------------------------------

    @memcore.hookimpl
    def memcore_open_session(self, session: memcore.Session) -> None:
        body = {"session_id": encode_session_id(session.id)}
        try:
            result = self._call("POST", "/sessions", body, user=session.user_id) or {}
        except HTTPStatusError as exc:
            if exc.status_code != 409:  # ALREADY_EXISTS: a retry, a resume, or a restart
                raise
            return
        found = (result.get("user") or {}).get("user_id")
        if self.trusted and found is not None and found != self.openviking_user(session.user_id):
            raise RuntimeError(
                f"OpenViking created the session as user {found!r}, not {self.openviking_user(session.user_id)!r}: "
                "the server does not take X-OpenViking-User (is it in api_key mode? then set auth_mode='api_key')"
            )

    @memcore.hookimpl
    def memcore_write(
        self, session: memcore.Session, messages: Sequence[memcore.Message], key: str, attempt: int
    ) -> None:
        """Post the batch, each message marked with ``turn_id = "memcore:<key>"``. On a later attempt (an earlier
        one may have reached the server) read the session back first and post nothing if the mark is there: a
        batch is stored whole or not at all, so one mark tells."""
        if len(messages) > BATCH:  # memcore never asks for more (max_write_messages); a direct caller might
            raise ValueError(f"OpenViking takes at most {BATCH} messages a write, not {len(messages)}")
        mark = TURN_MARK + key
        if attempt > 1 and self._stored(session, mark):
            return
        wire = [{**_to_wire(m), "turn_id": mark} for m in messages]
        path = self._session_path(session.id) + "/messages/batch"
        self._call("POST", path, {"messages": wire}, user=session.user_id)

    def _stored(self, session: memcore.Session, mark: str) -> bool:
        """Whether a message marked ``mark`` is in ``session``: among the live messages (which include archives
        still being extracted), else in the newest completed archive. Older archives need no look: memcore writes a
        session from one lane and commits it only after this write succeeded, so a batch that landed was archived,
        if at all, by a commit made after it (the server's auto-commit, off by default, or another client): the
        newest archive."""
        path = self._session_path(session.id)
        context = self._get(path + "/context", user=session.user_id, missing={}, token_budget=CONTEXT_BUDGET) or {}
        if any(m.get("turn_id") == mark for m in context.get("messages") or ()):
            return True
        newest = int((context.get("stats") or {}).get("totalArchives") or 0)
        if not newest:
            return False
        archive = self._get(f"{path}/archives/archive_{newest:03d}", user=session.user_id, missing={}) or {}
        return any(m.get("turn_id") == mark for m in archive.get("messages") or ())

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session, attempt: int) -> str | None:
        """Archive the session and start extraction; returns OpenViking's task id (``None`` if nothing was new). On
        a later attempt, commit only if the session still has live messages: none means the earlier attempt
        archived them (or there was nothing to commit), and a second commit would only be ``skipped``."""
        path = self._session_path(session.id)
        if attempt > 1:
            state = self._get(path, user=session.user_id)
            if state is not None and not int(state.get("message_count") or 0):
                return None
        result = self._call("POST", path + "/commit", {}, user=session.user_id) or {}
        return result.get("task_id")

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: memcore.Session | None, limit: int, user_id: str | None
    ) -> Sequence[memcore.Recollection]:
        """Search the caller's own memories only (``target_uri`` ``viking://~/memories``: without it OpenViking also
        searches the account-wide ``viking://resources`` and ``viking://agent``, shared by every user)."""
        body: dict[str, Any] = {"query": query, "limit": limit + 10, "target_uri": MEMORIES}  # room for placeholders
        if session is not None:
            body["session_id"] = encode_session_id(session.id)
        found = self._call("POST", "/search/search" if session is not None else "/search/find", body, user=user_id)
        mine = f"viking://user/{self.openviking_user(user_id)}/memories/" if self.trusted else "viking://"
        hits = [
            h
            for h in (found or {}).get("memories") or ()
            if h.get("level") == 2 and str(h.get("uri", "")).startswith(mine)
        ]
        hits.sort(key=lambda h: -(h.get("score") or 0.0))
        # One per text: memcore merges identical texts into one, and the same fact can be stored twice (two
        # extractions that wrote it), so ``limit`` counts distinct recollections.
        distinct: dict[str, dict[str, Any]] = {}
        for h in hits:
            distinct.setdefault(h.get("abstract") or "", h)
        return [
            memcore.Recollection(
                text=h.get("abstract") or "",
                score=h.get("score"),
                session_id=_note_session(h.get("uri", "")),
                metadata={"uri": h.get("uri", ""), "context_type": h.get("context_type", "")},
            )
            for h in list(distinct.values())[:limit]
        ]

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note) -> None:
        uri = f"{NOTES}/{_note_name(session.id, note)}.md"
        body = {"uri": uri, "content": note.text, "mode": "replace", "wait": False}
        self._call("POST", "/content/write", body, user=session.user_id)

    @memcore.hookimpl
    def memcore_history(self, session: memcore.Session) -> Sequence[memcore.Message]:
        """Completed archives in order, then the live context (which holds archives still being extracted)."""
        path = self._session_path(session.id)
        context = self._get(path + "/context", user=session.user_id, token_budget=CONTEXT_BUDGET)
        if context is None:  # no such session
            return []
        stored: dict[str, Mapping[str, Any]] = {}
        for index in range(1, int((context.get("stats") or {}).get("totalArchives") or 0) + 1):
            archive = self._get(f"{path}/archives/archive_{index:03d}", user=session.user_id)
            if archive is None:  # not completed yet: its messages are in the context
                continue
            stored.update((m["id"], m) for m in archive.get("messages") or ())
        stored.update((m["id"], m) for m in context.get("messages") or () if m["id"] not in stored)
        return [_from_wire(m) for m in stored.values()]

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        """Erase a session (its memories, notes, then the session) or all of a user's; see the README for what
        OpenViking keeps, which the returned text states."""
        if session_id is None:
            return self._forget_user(user_id)
        return self._forget_session(user_id, session_id)

    def _commit_tasks(self, user_id: str | None, session_id: str | None) -> list[dict[str, Any]]:
        """The commit tasks OpenViking lists for the session (for every session of the user, with ``session_id``
        None). Raises TransientError (memcore retries) while one is still being extracted: its memories are not
        written yet, so they could not be found and erased now, and would appear after the forget."""
        params: dict[str, Any] = {"task_type": "session_commit", "limit": 200}
        if session_id is not None:
            params["resource_id"] = encode_session_id(session_id)
        tasks = [t for t in self._get("/tasks", user=user_id, missing=[], **params) or () if isinstance(t, dict)]
        busy = [t for t in tasks if t.get("status") in _BUSY]
        if busy:
            raise memcore.TransientError(
                f"{len(busy)} commit(s) still being extracted (task {busy[0].get('task_id')}): the forget waits"
            )
        return tasks

    def _forget_session(self, user_id: str | None, session_id: str) -> str | None:
        tasks = self._commit_tasks(user_id, session_id)
        # Whether memories were ever extracted from it: also when an earlier attempt of this forget already erased
        # the session (task records outlive it), so the answer does not change on a retry.
        extracted = any((t.get("result") or {}).get("memories_extracted") for t in tasks)
        path = self._session_path(session_id)
        stored = encode_session_id(session_id)
        context = self._get(path + "/context", user=user_id, token_budget=0)
        removed, shared = 0, []
        for index in range(1, int(((context or {}).get("stats") or {}).get("totalArchives") or 0) + 1):
            uri = f"{HOME}/sessions/{stored}/history/archive_{index:03d}/memory_diff.json"
            text = self._get("/content/read", user=user_id, uri=uri, raw="true")
            try:
                diff = json.loads(text) if isinstance(text, str) else None
            except ValueError:
                diff = None
            operations = (diff.get("operations") if isinstance(diff, dict) else None) or {}
            added = {str(a["uri"]) for a in operations.get("adds") or () if a.get("uri")}
            for uri in sorted(added):
                self._remove(uri, user=user_id)
            removed += len(added)
            shared += [str(u["uri"]) for u in operations.get("updates") or () if u.get("uri") and u["uri"] not in added]
        notes = self._session_notes(user_id, session_id)
        for uri in notes:
            self._remove(uri, user=user_id)
        if context is not None:
            try:
                self._call("DELETE", path, user=user_id)
            except HTTPStatusError as exc:
                if exc.status_code != 404:
                    raise
        return _kept(bool(removed or notes or extracted), sorted(set(shared)))

    def _session_notes(self, user_id: str | None, session_id: str) -> list[str]:
        """The notes remembered in ``session_id``: their file names start with the session's label."""
        prefix = f"{_note_label(session_id)}-"
        found: list[str] = []
        offset = 0
        while True:
            params = {"uri": NOTES, "node_limit": 1000, "offset": offset}
            page = self._get("/fs/ls", user=user_id, missing=[], **params) or []
            for entry in page:
                name = str(entry.get("uri", "")).rsplit("/", 1)[-1]
                if not entry.get("isDir") and name.startswith(prefix):
                    found.append(str(entry["uri"]))
            if len(page) < 1000:
                return found
            offset += len(page)

    def _forget_user(self, user_id: str | None) -> str | None:
        tasks = self._commit_tasks(user_id, None)
        entries = self._get("/fs/ls", user=user_id, missing=[], uri=HOME) or []
        present = {str(e.get("uri", "")).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("isDir")}
        parts = [p for p in ("memories", "peers", "sessions") if p in present]  # what turns, notes and commits make
        indexed = sum(self._remove(f"{HOME}/{part}", user=user_id, recursive=True) for part in parts)
        if not parts and not tasks:  # nothing of the user on the server (and never was, as far as it tells)
            return None
        extracted = any((t.get("result") or {}).get("memories_extracted") for t in tasks)
        return _kept(bool(indexed or extracted), [], user=True)

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._client.close()


def _kept(removed: bool, shared: Sequence[str], *, user: bool = False) -> str | None:
    """What a forget leaves on the server, said exactly; None when that is nothing."""
    kept = []
    if shared:
        listed = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
        kept.append(
            f"{len(shared)} memory file(s) that extraction of this session merged into memories shared with other "
            f"sessions keep what was merged ({listed})"
        )
    if removed:
        kept.append(
            "the deleted memories' text stays in OpenViking's vector store files until it compacts them (no longer "
            "searchable), and the folder summaries (.abstract.md, .overview.md) written from them until OpenViking's "
            "model rewrites them in the background"
        )
    if user:
        kept.append(
            "the user's resources and skills directories (memcore never writes them) and its id in OpenViking's "
            "account store stay"
        )
    return "; ".join(kept) + "." if kept else None


def _note_label(session_id: str) -> str:
    """The start of the file names of a session's notes: ``s-`` and the base32 of its id, or, when that is too long
    for a file name, ``h-`` and a hash of it."""
    label = base64.b32encode(session_id.encode()).decode().rstrip("=").lower()
    if len(label) <= 160:  # file names stay under 255 bytes
        return f"s-{label}"
    return "h-" + hashlib.sha256(session_id.encode()).hexdigest()[:32]


def _note_name(session_id: str, note: memcore.Note) -> str:
    """A note's file name: its session's label and a hash of (session, kind, text), so a retried note replaces
    itself."""
    digest = hashlib.sha256(json.dumps([session_id, note.kind, note.text]).encode()).hexdigest()[:32]
    return f"{_note_label(session_id)}-{digest}"


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

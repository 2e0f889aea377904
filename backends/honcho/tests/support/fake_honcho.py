"""A fake Honcho server (API v3, server 3.0.12) on loopback, served in the test process, written from Honcho's OpenAPI
description (``shared/apis/honcho-openapi.json``) for the endpoints ``honcho-ai`` 2.7.0 and memcore-honcho use.

- Workspaces: get or create, list, update, delete (202; 409 while a session is active; deleted in the background),
  search, queue status, schedule_dream.
- Peers: get or create, list, update, their sessions, search.
- Sessions: get or create with peers, list, update, delete (202; inactive at once, deleted in the background; a
  get-or-create of an inactive session is 404), peers, peer config, context, summaries, search.
- Messages: batch create, list, get, update metadata. Conclusions: create, list, query, delete. ``GET /health``.

A get-or-create answers 200, as the description says (``created_status=201``: as the server's code does when it
creates). State is kept in memory per workspace. Errors are Honcho's ``{"detail": "..."}`` (404, 409, 400) and
FastAPI's 422 ``{"detail": [{"loc", "msg", "type"}]}`` for bodies that do not validate: ids ``^[a-zA-Z0-9_-]+$`` of
at most 512 characters, message content of at most 25000 characters, 1 to 100 messages a batch, ``size`` 1 to 100.
Filters follow Honcho's filter language (``AND``/``OR``/``NOT``, ``in``/``ne``/``gt``..., ``*``, ``metadata`` by
containment). Search is Honcho's hybrid: full text (every query word, or a substring) fused by reciprocal rank with
a "semantic" ranking (cosine of hashed bags of words, no threshold: pgvector's nearest neighbours have none). Where
the description is silent the fake follows the server's source (plastic-labs/honcho 3.0.12); what it still guesses
is listed in the README.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import uuid
from collections import Counter
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ID = re.compile(r"[a-zA-Z0-9_-]+")
MAX_CONTENT = 25_000
STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it", "of", "on", "or"}
    | {"that", "the", "to", "was", "were", "will", "with"}
)
MESSAGE_COLUMNS = {"workspace_id", "session_id", "peer_id", "token_count", "created_at", "metadata", "id"}
COLUMNS = {"id", "created_at", "is_active", "workspace_id", "session_id", "peer_id", "metadata"}
CONCLUSION_COLUMNS = {"session_id", "workspace_id", "observer_id", "observed_id", "metadata", "level", "id"}


class HTTPError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def invalid(loc: list[Any], msg: str, kind: str = "value_error") -> HTTPError:
    return HTTPError(422, [{"loc": loc, "msg": msg, "type": kind}])


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def check_id(value: Any, loc: list[Any]) -> str:
    if not isinstance(value, str):
        raise invalid(loc, "Field required" if value is None else "Input should be a valid string", "missing")
    if not 1 <= len(value) <= 512:
        raise invalid(loc, "String should have at most 512 characters", "string_too_long")
    if not ID.fullmatch(value):
        raise invalid(loc, "String should match pattern '^[a-zA-Z0-9_-]+$'", "string_pattern_mismatch")
    return value


def check_dict(value: Any, loc: list[Any]) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise invalid(loc, "Input should be a valid dictionary", "dict_type")
    return value


def sanitize(value: Any) -> Any:
    """Honcho strips NUL characters from content and metadata strings."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {sanitize(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    return value


def lexemes(text: str) -> list[str]:
    """A rough stand-in for PostgreSQL's english text search configuration: lower-cased words, stop words out, a
    plural ``s`` stemmed."""
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS]
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def embed(text: str, dim: int = 256) -> list[float]:
    vector = [0.0] * dim
    for word in lexemes(text):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dim] += 1.0
    return vector


def cosine(a: list[float], b: list[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


def _contains(have: Any, want: Any) -> bool:
    """JSONB containment (``@>``), as Honcho filters metadata."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _contains(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and all(any(_contains(h, w) for h in have) for w in want)
    return bool(have == want)


def matches(record: dict[str, Any], filters: Any, columns: set[str]) -> bool:
    """Honcho's filter language on one record (``filters`` as given by the client)."""
    if filters is None:
        return True
    if not isinstance(filters, dict):
        raise HTTPError(422, "Invalid filter configuration")
    for key, want in filters.items():
        if key in ("AND", "OR", "NOT"):
            if not isinstance(want, list):
                raise HTTPError(422, f"{key} takes a list of filters")
            parts = [matches(record, f, columns) for f in want]
            ok = all(parts) if key == "AND" else any(parts) if key == "OR" else not any(parts)
        elif key not in columns:
            raise HTTPError(422, f"Invalid filter column: {key}")
        elif key == "metadata":
            if not isinstance(want, dict):
                raise HTTPError(422, "Invalid filter for column 'metadata': a JSONB column takes an object")
            inner = want.get("contains", want) if set(want) == {"contains"} else want
            ok = _contains(record.get("metadata") or {}, inner)
        else:
            ok = _compare(record.get(key), want)
        if not ok:
            return False
    return True


def _compare(have: Any, want: Any) -> bool:
    if want == "*":
        return True
    if isinstance(want, list):
        return have in want
    if not isinstance(want, dict):
        return bool(have == want)
    for op, value in want.items():
        ok = {
            "in": lambda v: have in v,
            "ne": lambda v: have != v,
            "gt": lambda v: have is not None and have > v,
            "gte": lambda v: have is not None and have >= v,
            "lt": lambda v: have is not None and have < v,
            "lte": lambda v: have is not None and have <= v,
            "contains": lambda v: isinstance(have, str) and str(v) in have,
            "icontains": lambda v: isinstance(have, str) and str(v).lower() in have.lower(),
        }.get(op)
        if ok is None:
            raise HTTPError(422, f"Unsupported operator: {op}")
        if not ok(value):
            return False
    return True


def page(items: list[dict[str, Any]], query: dict[str, str], reverse: bool = False) -> dict[str, Any]:
    try:
        number, size = int(query.get("page", 1)), int(query.get("size", 50))
    except ValueError:
        raise invalid(["query", "page"], "Input should be a valid integer", "int_parsing") from None
    if number < 1:
        raise invalid(["query", "page"], "Input should be greater than or equal to 1", "greater_than_equal")
    if not 1 <= size <= 100:
        raise invalid(["query", "size"], "Input should be less than or equal to 100", "less_than_equal")
    ordered = list(reversed(items)) if reverse else items
    return {
        "items": ordered[(number - 1) * size : number * size],
        "total": len(items),
        "page": number,
        "size": size,
        "pages": -(-len(items) // size),
    }


class FakeHoncho:
    """``with FakeHoncho() as fake: fake.url``; ``fake.workspaces`` (the state), ``fake.calls`` (per route),
    ``fake.responses`` (route, status, body of every answer, for schema checks). ``api_key``: require
    ``Authorization: Bearer <key>`` (401 otherwise). ``deletion_delay``: seconds before a deleted session's or
    workspace's data is really gone (Honcho deletes in a background queue)."""

    def __init__(
        self, api_key: str | None = None, deletion_delay: float = 0.05, dreams: bool = True, created_status: int = 200
    ) -> None:
        self.api_key, self.deletion_delay, self.dreams_enabled = api_key, deletion_delay, dreams
        #: a get-or-create that creates answers 200 (the description); the server's code answers 201
        self.created_status = created_status
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.dreams: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.responses: list[tuple[str, str, int, Any]] = []
        self.lock = threading.RLock()
        self._seq = 0
        self._timers: list[threading.Timer] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-honcho", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHoncho:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for timer in self._timers:
            timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def settle(self) -> None:
        """Run every pending background deletion now."""
        for timer in list(self._timers):
            timer.cancel()
            timer.function()

    def _later(self, action: Any) -> None:
        done = threading.Event()

        def run() -> None:
            with self.lock:
                if not done.is_set():
                    done.set()
                    action()

        timer = threading.Timer(self.deletion_delay, run)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    # -- resources ---------------------------------------------------------------------------------------------------

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def workspace(self, workspace_id: str, create: bool = False) -> dict[str, Any]:
        found = self.workspaces.get(workspace_id)
        if found is None:
            if not create:
                raise HTTPError(404, f"Workspace {workspace_id} not found")
            found = self.workspaces[workspace_id] = {
                "record": {"id": workspace_id, "metadata": {}, "configuration": {}, "created_at": now()},
                "peers": {},
                "sessions": {},
                "messages": [],
                "conclusions": {},
            }
        return found

    def peer(self, ws: dict[str, Any], peer_id: str) -> dict[str, Any]:
        if peer_id not in ws["peers"]:
            ws["peers"][peer_id] = {
                "id": peer_id,
                "workspace_id": ws["record"]["id"],
                "created_at": now(),
                "metadata": {},
                "configuration": {},
            }
        return dict(ws["peers"][peer_id])

    def session(self, ws: dict[str, Any], session_id: str) -> dict[str, Any]:
        """An active session's state; 404 for one that does not exist or is being deleted."""
        found: dict[str, Any] | None = ws["sessions"].get(session_id)
        if found is None or not found["record"]["is_active"]:
            raise HTTPError(404, "Session not found")
        return found

    def get_or_create_session(self, ws: dict[str, Any], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        session_id = check_id(body.get("id"), ["body", "id"])
        metadata = check_dict(body.get("metadata"), ["body", "metadata"])
        peers = check_dict(body.get("peers"), ["body", "peers"]) or {}
        for peer_id, config in peers.items():
            check_id(peer_id, ["body", "peers", peer_id])
            check_dict(config, ["body", "peers", peer_id])
        found = ws["sessions"].get(session_id)
        if found is not None and not found["record"]["is_active"]:
            raise HTTPError(404, f"Session {session_id} not found in workspace {ws['record']['id']}")
        status = 200
        if found is None:
            status = self.created_status
            record = {
                "id": session_id,
                "is_active": True,
                "workspace_id": ws["record"]["id"],
                "metadata": metadata or {},
                "configuration": dict(body.get("configuration") or {}),
                "created_at": now(),
            }
            found = ws["sessions"][session_id] = {"record": record, "peers": {}}
        else:
            if metadata is not None:
                found["record"]["metadata"] = metadata
            if body.get("configuration"):
                found["record"]["configuration"] = {**found["record"]["configuration"], **body["configuration"]}
        for peer_id, config in peers.items():
            self.peer(ws, peer_id)
            found["peers"][peer_id] = {
                "observe_me": (config or {}).get("observe_me"),
                "observe_others": (config or {}).get("observe_others"),
            }
        return status, found["record"]

    def delete_session(self, ws: dict[str, Any], session_id: str) -> None:
        found = self.session(ws, session_id)
        found["record"]["is_active"] = False

        def purge() -> None:
            ws["messages"] = [m for m in ws["messages"] if m["session_id"] != session_id]
            ws["conclusions"] = {k: c for k, c in ws["conclusions"].items() if c["session_id"] != session_id}
            if ws["sessions"].get(session_id) is found:
                del ws["sessions"][session_id]

        self._later(purge)

    def delete_workspace(self, workspace_id: str) -> None:
        ws = self.workspace(workspace_id)
        if any(s["record"]["is_active"] for s in ws["sessions"].values()):
            raise HTTPError(409, "Cannot delete workspace with active sessions. Delete all sessions first.")

        def purge() -> None:
            if self.workspaces.get(workspace_id) is ws:
                del self.workspaces[workspace_id]

        self._later(purge)

    def add_messages(self, ws: dict[str, Any], session_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise invalid(["body", "messages"], "Field required", "missing")
        if not 1 <= len(messages) <= 100:
            raise invalid(["body", "messages"], "List should have at least 1 item and at most 100", "too_long")
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise invalid(["body", "messages", i], "Input should be a valid dictionary", "dict_type")
            if not isinstance(m.get("content"), str):
                raise invalid(["body", "messages", i, "content"], "Field required", "missing")
            if len(m["content"]) > MAX_CONTENT:
                loc = ["body", "messages", i, "content"]
                raise invalid(loc, f"String should have at most {MAX_CONTENT} characters", "string_too_long")
            if not isinstance(m.get("peer_id"), str):
                raise invalid(["body", "messages", i, "peer_id"], "Field required", "missing")
            check_dict(m.get("metadata"), ["body", "messages", i, "metadata"])
        self.get_or_create_session(ws, {"id": session_id, "peers": {m["peer_id"]: {} for m in messages}})
        created = []
        for m in messages:
            record = {
                "id": uuid.uuid4().hex[:21],
                "content": sanitize(m["content"]),
                "peer_id": m["peer_id"],
                "session_id": session_id,
                "metadata": sanitize(m.get("metadata") or {}),
                "created_at": m.get("created_at") or now(),
                "workspace_id": ws["record"]["id"],
                "token_count": len(lexemes(m["content"])),
                "_seq": self._next(),
            }
            ws["messages"].append(record)
            created.append(public(record))
        return created

    def search(self, ws: dict[str, Any] | None, body: dict[str, Any], extra: dict[str, Any]) -> list[dict[str, Any]]:
        query = body.get("query")
        if not isinstance(query, str):
            raise invalid(["body", "query"], "Field required", "missing")
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise invalid(["body", "limit"], "Input should be between 1 and 100", "less_than_equal")
        filters = check_dict(body.get("filters"), ["body", "filters"]) or {}
        if ws is None:
            matches({}, filters, MESSAGE_COLUMNS)  # a bad filter is refused all the same
            return []
        pool = [m for m in ws["messages"] if matches(m, {**filters, **extra}, MESSAGE_COLUMNS)]
        wanted = lexemes(query)
        if re.search(r"[~`!@#$%^&*()_+=\[\]{};':\"\\|,.<>/?-]", query):
            fulltext = [m for m in pool if query.lower() in m["content"].lower()]
        else:
            fulltext = [
                m
                for m in pool
                if (wanted and set(wanted) <= set(lexemes(m["content"]))) or query.lower() in m["content"].lower()
            ]
            fulltext.sort(key=lambda m: (-sum(lexemes(m["content"]).count(w) for w in wanted), -m["_seq"]))
        vector = embed(query)
        semantic = sorted(pool, key=lambda m: -cosine(vector, embed(m["content"])))[: limit * 2]
        scores: dict[int, float] = {}
        by_seq = {m["_seq"]: m for m in pool}
        for ranked in (fulltext[:limit], semantic):
            for rank, m in enumerate(ranked, 1):
                scores[m["_seq"]] = scores.get(m["_seq"], 0.0) + 1.0 / (60 + rank)
        best = sorted(scores, key=lambda seq: -scores[seq])[:limit]
        return [public(by_seq[seq]) for seq in best]


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _handler(fake: FakeHoncho) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, route: str, code: int, body: Any) -> None:
            fake.responses.append((self.command, route, code, body))
            raw = b"" if code == 204 else json.dumps(body).encode()
            self.send_response(code)
            if code != 204:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urlsplit(self.path)
            segments = [unquote(s) for s in parts.path.split("/")[1:]]
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            route = parts.path
            fake.calls[f"{self.command} {route}"] += 1
            auth = self.headers.get("Authorization") or ""
            if fake.api_key is not None and auth != f"Bearer {fake.api_key}":
                return self._send(route, 401, {"detail": "Invalid or missing API key"})
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self._send(
                    route, 422, {"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]}
                )
            with fake.lock:
                try:
                    code, answer = self._route(self.command, segments, body, query)
                except HTTPError as exc:
                    code, answer = exc.status, {"detail": exc.detail}
            self._send(route, code, answer)

        def _route(self, method: str, seg: list[str], body: Any, query: dict[str, str]) -> tuple[int, Any]:
            if seg == ["health"] and method == "GET":
                return 200, {"status": "ok"}
            if len(seg) < 2 or seg[:2] != ["v3", "workspaces"]:
                raise HTTPError(404, "Not Found")
            rest = seg[2:]
            if rest == [] and method == "POST":
                body = self._object(body, required=True)
                workspace_id = check_id(body.get("id"), ["body", "id"])
                check_dict(body.get("metadata"), ["body", "metadata"])
                created = workspace_id not in fake.workspaces
                ws = fake.workspace(workspace_id, create=True)
                if created and body.get("metadata"):
                    ws["record"]["metadata"] = body["metadata"]
                return (fake.created_status if created else 200), ws["record"]
            if rest == ["list"] and method == "POST":
                filters = (self._object(body) or {}).get("filters")
                found = [w["record"] for w in fake.workspaces.values() if matches(w["record"], filters, COLUMNS)]
                return 200, page(found, query, query.get("reverse") == "true")
            if not rest:
                raise HTTPError(405, "Method Not Allowed")
            workspace_id, rest = rest[0], rest[1:]
            if not rest:
                if method == "PUT":
                    ws = fake.workspace(workspace_id)
                    body = self._object(body, required=True)
                    if body.get("metadata") is not None:
                        ws["record"]["metadata"] = check_dict(body["metadata"], ["body", "metadata"])
                    if body.get("configuration") is not None:
                        ws["record"]["configuration"] = {**ws["record"]["configuration"], **body["configuration"]}
                    return 200, ws["record"]
                if method == "DELETE":
                    fake.delete_workspace(workspace_id)
                    return 202, {"message": "Workspace deletion accepted"}
                raise HTTPError(405, "Method Not Allowed")
            ws = fake.workspaces.get(workspace_id)
            head = rest[0]
            if head == "search" and method == "POST" and len(rest) == 1:
                body = self._object(body, required=True)
                return 200, fake.search(ws, body, {})
            if rest == ["queue", "status"] and method == "GET":
                zero = {"total_work_units": 0, "completed_work_units": 0, "in_progress_work_units": 0}
                return 200, {**zero, "pending_work_units": 0, "sessions": {}}
            if rest == ["schedule_dream"] and method == "POST":
                body = self._object(body, required=True)
                if not isinstance(body.get("observer"), str):
                    raise invalid(["body", "observer"], "Field required", "missing")
                if body.get("dream_type") not in ("omni", "card_refresh"):
                    raise invalid(["body", "dream_type"], "Input should be 'omni' or 'card_refresh'", "enum")
                if not fake.dreams_enabled:
                    raise HTTPError(400, "Dreams are not enabled in the system configuration")
                fake.dreams.append({"workspace_id": workspace_id, **body})
                return 204, None
            if head == "peers":
                return self._peers(workspace_id, ws, method, rest[1:], body, query)
            if head == "sessions":
                return self._sessions(workspace_id, ws, method, rest[1:], body, query)
            if head == "conclusions":
                return self._conclusions(workspace_id, ws, method, rest[1:], body, query)
            raise HTTPError(404, "Not Found")

        @staticmethod
        def _object(body: Any, required: bool = False) -> Any:
            if body is None and required:
                raise invalid(["body"], "Field required", "missing")
            if body is not None and not isinstance(body, dict):
                raise invalid(["body"], "Input should be a valid dictionary or object", "model_attributes_type")
            return body

        def _peers(
            self,
            workspace_id: str,
            ws: dict[str, Any] | None,
            method: str,
            rest: list[str],
            body: Any,
            q: dict[str, str],
        ) -> tuple[int, Any]:
            if rest == [] and method == "POST":
                body = self._object(body, required=True)
                peer_id = check_id(body.get("id"), ["body", "id"])
                ws = fake.workspace(workspace_id, create=True)
                created = peer_id not in ws["peers"]
                peer = fake.peer(ws, peer_id)
                if created and body.get("metadata"):
                    ws["peers"][peer_id]["metadata"] = peer["metadata"] = body["metadata"]
                if created and body.get("configuration"):
                    ws["peers"][peer_id]["configuration"] = peer["configuration"] = body["configuration"]
                return (fake.created_status if created else 200), peer
            if rest == ["list"] and method == "POST":
                filters = (self._object(body) or {}).get("filters")
                found = [p for p in (ws or {"peers": {}})["peers"].values() if matches(p, filters, COLUMNS)]
                return 200, page(found, q, q.get("reverse") == "true")
            if not rest:
                raise HTTPError(405, "Method Not Allowed")
            if ws is None or rest[0] not in ws["peers"]:
                raise HTTPError(404, f"Peer {rest[0]} not found")
            peer_id, rest = rest[0], rest[1:]
            if rest == [] and method == "PUT":
                body = self._object(body, required=True)
                peer = ws["peers"][peer_id]
                if body.get("metadata") is not None:
                    peer["metadata"] = check_dict(body["metadata"], ["body", "metadata"])
                if body.get("configuration") is not None:
                    peer["configuration"] = {**peer["configuration"], **body["configuration"]}
                return 200, peer
            if rest == ["sessions"] and method == "POST":
                filters = (self._object(body) or {}).get("filters")
                found = [
                    s["record"]
                    for s in ws["sessions"].values()
                    if peer_id in s["peers"] and s["record"]["is_active"] and matches(s["record"], filters, COLUMNS)
                ]
                return 200, page(found, q, q.get("reverse") == "true")
            if rest == ["search"] and method == "POST":
                return 200, fake.search(ws, self._object(body, required=True), {"peer_id": peer_id})
            raise HTTPError(404, "Not Found")

        def _sessions(
            self,
            workspace_id: str,
            ws: dict[str, Any] | None,
            method: str,
            rest: list[str],
            body: Any,
            q: dict[str, str],
        ) -> tuple[int, Any]:
            if rest == [] and method == "POST":
                body = self._object(body, required=True)
                return fake.get_or_create_session(fake.workspace(workspace_id, create=True), body)
            if rest == ["list"] and method == "POST":
                filters = (self._object(body) or {}).get("filters")
                found = [
                    s["record"]
                    for s in (ws or {"sessions": {}})["sessions"].values()
                    if s["record"]["is_active"] and matches(s["record"], filters, COLUMNS)
                ]
                return 200, page(found, q, q.get("reverse") == "true")
            if not rest:
                raise HTTPError(405, "Method Not Allowed")
            session_id, rest = rest[0], rest[1:]
            if rest == ["messages"] and method == "POST":
                body = self._object(body, required=True)
                return 201, fake.add_messages(fake.workspace(workspace_id, create=True), session_id, body)
            if rest == ["messages", "list"] and method == "POST":
                filters = (self._object(body) or {}).get("filters")
                found = [
                    public(m)
                    for m in (ws or {"messages": []})["messages"]
                    if m["session_id"] == session_id and matches(m, filters, MESSAGE_COLUMNS)
                ]
                return 200, page(found, q, q.get("reverse") == "true")
            if ws is None:
                raise HTTPError(404, "Session not found")
            if len(rest) == 2 and rest[0] == "messages":
                found_message = next(
                    (m for m in ws["messages"] if m["session_id"] == session_id and m["id"] == rest[1]), None
                )
                if found_message is None:
                    raise HTTPError(404, f"Message with ID {rest[1]} not found")
                if method == "GET":
                    return 200, public(found_message)
                if method == "PUT":
                    body = self._object(body, required=True)
                    metadata = check_dict(body.get("metadata"), ["body", "metadata"])
                    if metadata is not None:
                        found_message["metadata"] = sanitize(metadata)
                    return 200, public(found_message)
            if rest == [] and method == "DELETE":
                fake.delete_session(ws, session_id)
                return 202, {"message": "Session deleted successfully"}
            session = fake.session(ws, session_id)
            record = session["record"]
            if rest == [] and method == "PUT":
                body = self._object(body, required=True)
                if body.get("metadata") is not None:
                    record["metadata"] = check_dict(body["metadata"], ["body", "metadata"])
                if body.get("configuration") is not None:
                    record["configuration"] = {**record["configuration"], **body["configuration"]}
                return 200, record
            if rest == ["peers"]:
                if method == "GET":
                    return 200, page([fake.peer(ws, p) for p in session["peers"]], q)
                if method in ("POST", "PUT"):
                    peers = self._object(body, required=True)
                    if method == "PUT":
                        session["peers"].clear()
                    for peer_id, config in peers.items():
                        check_id(peer_id, ["body", peer_id])
                        fake.peer(ws, peer_id)
                        session["peers"][peer_id] = {
                            "observe_me": (config or {}).get("observe_me"),
                            "observe_others": (config or {}).get("observe_others"),
                        }
                    return 200, record
                if method == "DELETE":
                    if not isinstance(body, list):
                        raise invalid(["body"], "Input should be a valid list", "list_type")
                    for peer_id in body:
                        session["peers"].pop(peer_id, None)
                    return 200, record
            if len(rest) == 3 and rest[0] == "peers" and rest[2] == "config":
                if rest[1] not in session["peers"]:
                    raise HTTPError(404, f"Peer {rest[1]} not found in session {session_id}")
                if method == "GET":
                    return 200, session["peers"][rest[1]]
                if method == "PUT":
                    config = self._object(body, required=True)
                    session["peers"][rest[1]].update({k: v for k, v in config.items() if v is not None})
                    return 204, None
            if rest == ["context"] and method == "GET":
                messages = [public(m) for m in ws["messages"] if m["session_id"] == session_id]
                return 200, {"id": session_id, "messages": messages, "summary": None}
            if rest == ["summaries"] and method == "GET":
                return 200, {"id": session_id, "short_summary": None, "long_summary": None}
            if rest == ["search"] and method == "POST":
                return 200, fake.search(ws, self._object(body, required=True), {"session_id": session_id})
            raise HTTPError(404, "Not Found")

        def _conclusions(
            self,
            workspace_id: str,
            ws: dict[str, Any] | None,
            method: str,
            rest: list[str],
            body: Any,
            q: dict[str, str],
        ) -> tuple[int, Any]:
            if rest == [] and method == "POST":
                body = self._object(body, required=True)
                items = body.get("conclusions")
                if not isinstance(items, list) or not 1 <= len(items) <= 100:
                    raise invalid(["body", "conclusions"], "List should have 1 to 100 items", "too_long")
                ws = fake.workspace(workspace_id, create=True)
                created = []
                for i, c in enumerate(items):
                    if not isinstance(c, dict) or not isinstance(c.get("content"), str) or not c["content"]:
                        raise invalid(["body", "conclusions", i, "content"], "Field required", "missing")
                    for field in ("observer_id", "observed_id"):
                        if not isinstance(c.get(field), str):
                            raise invalid(["body", "conclusions", i, field], "Field required", "missing")
                    record = {
                        "id": uuid.uuid4().hex[:21],
                        "content": c["content"],
                        "observer_id": c["observer_id"],
                        "observed_id": c["observed_id"],
                        "session_id": c.get("session_id"),
                        "level": "explicit",
                        "created_at": now(),
                        "workspace_id": workspace_id,
                        "_seq": fake._next(),
                    }
                    ws["conclusions"][record["id"]] = record
                    created.append(_conclusion(record))
                return 201, created
            pool = list((ws or {"conclusions": {}})["conclusions"].values())
            if rest == ["list"] and method == "POST":
                filters = (self._object(body) or {}).get("filters")
                found = [_conclusion(c) for c in pool if matches(c, filters, CONCLUSION_COLUMNS)]
                return 200, page(found[::-1], q, q.get("reverse") == "true")
            if rest == ["query"] and method == "POST":
                body = self._object(body, required=True)
                if not isinstance(body.get("query"), str):
                    raise invalid(["body", "query"], "Field required", "missing")
                filters = dict(check_dict(body.get("filters"), ["body", "filters"]) or {})
                observer = filters.pop("observer", None) or filters.get("observer_id")
                observed = filters.pop("observed", None) or filters.get("observed_id")
                if not observer or not observed:
                    raise HTTPError(422, "observer and observed must be specified for semantic search.")
                filters.update(observer_id=observer, observed_id=observed)
                top_k, distance = body.get("top_k", 10), body.get("distance")
                if not isinstance(top_k, int) or not 1 <= top_k <= 100:
                    raise invalid(["body", "top_k"], "Input should be between 1 and 100", "less_than_equal")
                vector = embed(body["query"])
                scored = [
                    (1 - cosine(vector, embed(c["content"])), c)
                    for c in pool
                    if matches(c, filters, CONCLUSION_COLUMNS)
                ]
                scored = [s for s in scored if distance is None or s[0] <= distance]
                return 200, [_conclusion(c) for _, c in sorted(scored, key=lambda s: s[0])[:top_k]]
            if len(rest) == 1 and method == "DELETE":
                if ws is None or rest[0] not in ws["conclusions"]:
                    raise HTTPError(404, "Conclusion not found")
                del ws["conclusions"][rest[0]]
                return 204, None
            raise HTTPError(404, "Not Found")

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

    return Handler


def _conclusion(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "content", "observer_id", "observed_id", "session_id", "level", "created_at")
    return {k: record[k] for k in keys}

"""A fake of mem0's platform API on loopback, served in the test process, following mem0's published OpenAPI
description (docs/openapi.json of mem0ai/mem0) for the endpoints ``MemoryClient`` and memcore-mem0 use:

``GET /v1/ping/``; ``POST /v3/memories/add/`` (``infer: false``: stored verbatim at once, one memory per message, and
the results returned; else queued: ``{"event_id", "status": "PENDING"}``, the facts of the fake extraction rule of
``fake_openai.py`` stored); ``POST /v3/memories/`` (filters, ``page`` / ``page_size`` query, paginated envelope, the
run as ``session_id``); ``POST /v3/memories/search/`` (hashed bag-of-words cosine, ``top_k``, ``threshold``, the run
as ``run_id``); ``GET`` / ``PUT`` / ``DELETE /v1/memories/{id}/``; ``DELETE /v1/memories/`` (entity query
parameters, ``*`` for any: queued, done at once); ``GET /v1/event/{id}/``. ``Authorization: Token <key>``; each key is
its own project (store). Filters: entity ids and metadata keys by equality, ``*``, and ``AND`` / ``OR`` / ``NOT``;
at least one entity id is required, and top-level entity ids in a list or search body are refused (400).
"""

from __future__ import annotations

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

from .fake_openai import embed, extract

ENTITIES = ("user_id", "agent_id", "app_id", "run_id")
ROLES = ("user", "assistant", "system")


class BadRequest(Exception):
    pass


def _matches(record: dict[str, Any], filters: Any) -> bool:
    if not isinstance(filters, dict):
        raise BadRequest("filters must be an object")
    for key, want in filters.items():
        if key in ("AND", "OR", "NOT"):
            parts = [_matches(record, f) for f in want]
            ok = all(parts) if key == "AND" else any(parts) if key == "OR" else not any(parts)
        else:
            have = record.get(key) if key in ENTITIES else (record.get("metadata") or {}).get(key)
            ok = (want == "*" and have is not None) or have == want
        if not ok:
            return False
    return True


def _entities(filters: Any) -> set[str]:
    if not isinstance(filters, dict):
        return set()
    found = {k for k in filters if k in ENTITIES}
    for key in ("AND", "OR"):
        for part in filters.get(key) or ():
            found |= _entities(part)
    return found


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)) or 1
    )


class FakePlatform:
    """``with FakePlatform() as fake: fake.url`` (no trailing slash), ``fake.projects[api_key]`` (id -> record)."""

    def __init__(self) -> None:
        self.projects: dict[str, dict[str, dict[str, Any]]] = {}
        self.events: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-mem0-platform", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakePlatform:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- the API -----------------------------------------------------------------------------------------------------

    def _store(self, store: dict[str, dict[str, Any]], text: str, body: dict[str, Any], role: str) -> dict[str, Any]:
        now = datetime.now(timezone.utc).isoformat()
        record = {
            "id": str(uuid.uuid4()),
            "memory": text,
            **{k: body.get(k) for k in ENTITIES},
            "metadata": dict(body.get("metadata") or {}),
            "role": role,
            "categories": [],
            "created_at": now,
            "updated_at": now,
        }
        store[record["id"]] = record
        return record

    def add(self, store: dict[str, dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages is required")
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise BadRequest("each message needs a role (user, assistant, system) and a string content")
        if not any(body.get(k) for k in ENTITIES):
            raise BadRequest("at least one of user_id, agent_id, app_id, run_id is required")
        event = str(uuid.uuid4())
        if body.get("infer", True) is False:
            stored = [self._store(store, m["content"], body, m["role"]) for m in messages]
            self.events[event] = "SUCCEEDED"
            results = [{"id": r["id"], "data": {"memory": r["memory"]}, "event": "ADD"} for r in stored]
            return {"message": "Memories added.", "status": "SUCCEEDED", "event_id": event, "results": results}
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        existing = {r["memory"] for r in store.values() if all(r.get(k) == body.get(k) for k in ENTITIES)}
        for fact in extract(lines):
            if fact not in existing:
                self._store(store, fact, body, "assistant")
        self.events[event] = "SUCCEEDED"
        return {"event_id": event, "status": "PENDING"}

    def listed(self, store: dict[str, dict[str, Any]], body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        if set(body) & set(ENTITIES):
            raise BadRequest("entity ids go inside filters")
        filters = body.get("filters")
        if not _entities(filters):
            raise BadRequest("filters must include at least one entity id")
        page = int(query.get("page") or body.get("page") or 1)
        size = int(query.get("page_size") or body.get("page_size") or 100)
        if page < 1 or not 1 <= size <= 200:
            raise BadRequest("page >= 1, 1 <= page_size <= 200")
        hits = sorted((r for r in store.values() if _matches(r, filters)), key=lambda r: r["created_at"], reverse=True)
        chunk = hits[(page - 1) * size : page * size]
        more = page * size < len(hits)
        results = [{**_public(r), "session_id": r["run_id"]} for r in chunk]
        following = f"{self.url}/v3/memories/?page={page + 1}&page_size={size}" if more else None
        previous = f"{self.url}/v3/memories/?page={page - 1}&page_size={size}" if page > 1 else None
        return {"count": len(hits), "next": following, "previous": previous, "results": results}

    def search(self, store: dict[str, dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise BadRequest("query is required")
        if set(body) & set(ENTITIES):
            raise BadRequest("entity ids go inside filters")
        filters = body.get("filters")
        if not _entities(filters):
            raise BadRequest("filters must include at least one entity id")
        top_k, threshold = int(body.get("top_k", 10)), float(body.get("threshold", 0.1))
        if not 1 <= top_k <= 1000 or not 0 <= threshold <= 1:
            raise BadRequest("1 <= top_k <= 1000, 0 <= threshold <= 1")
        wanted = embed(query)
        scored = [(max(0.0, _cosine(wanted, embed(r["memory"]))), r) for r in store.values() if _matches(r, filters)]
        scored = sorted((s for s in scored if s[0] >= threshold), key=lambda s: -s[0])[:top_k]
        return {"results": [{**_public(r), "run_id": r["run_id"], "score": round(s, 6)} for s, r in scored]}

    def delete_all(self, store: dict[str, dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        filters = {k: query[k] for k in ENTITIES if k in query}
        if not filters:
            raise BadRequest("at least one of user_id, agent_id, app_id, run_id is required")
        for memory_id in [i for i, r in store.items() if _matches(r, filters)]:
            del store[memory_id]
        return {"message": "Delete in progress. This may take some time.", "event_id": str(uuid.uuid4())}


def _public(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "memory", "user_id", "agent_id", "app_id", "metadata", "categories", "created_at", "updated_at")
    return {k: record.get(k) for k in keys}


def _handler(fake: FakePlatform) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _serve(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urlsplit(self.path)
            path = parts.path
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            route = re.sub(r"/v1/(memories|event)/[^/]+/", r"/v1/\1/{id}/", path)
            fake.calls[f"{method} {route}"] += 1
            auth = self.headers.get("Authorization") or ""
            if not auth.startswith("Token ") or not auth[6:]:
                return self._send(401, {"detail": "Invalid API key."})
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return self._send(400, {"error": "400 Bad Request", "details": {"message": "invalid JSON"}})
            with fake.lock:
                store = fake.projects.setdefault(auth[6:], {})
                try:
                    code, answer = self._route(method, path, body, query, store)
                except BadRequest as exc:
                    code, answer = 400, {"error": "400 Bad Request", "details": {"message": str(exc)}}
            self._send(code, answer)

        def _route(
            self, method: str, path: str, body: Any, query: dict[str, str], store: dict[str, dict[str, Any]]
        ) -> tuple[int, Any]:
            if not isinstance(body, dict):
                raise BadRequest("the body must be an object")
            one = re.fullmatch(r"/v1/memories/([^/]+)/", path)
            event = re.fullmatch(r"/v1/event/([^/]+)/", path)
            if method == "GET" and path == "/v1/ping/":
                return 200, {"status": "ok", "org_id": "org-fake", "project_id": "proj-fake", "user_email": None}
            if method == "POST" and path == "/v3/memories/add/":
                return 200, fake.add(store, body)
            if method == "POST" and path == "/v3/memories/":
                return 200, fake.listed(store, body, query)
            if method == "POST" and path == "/v3/memories/search/":
                return 200, fake.search(store, body)
            if method == "DELETE" and path == "/v1/memories/":
                return 200, fake.delete_all(store, query)
            if event is not None and method == "GET":
                status = fake.events.get(unquote(event.group(1)))
                return (200, {"id": event.group(1), "status": status}) if status else (404, {"detail": "Not found."})
            if one is not None:
                record = store.get(unquote(one.group(1)))
                if record is None:
                    return 404, {"detail": "Memory not found."}
                if method == "GET":
                    return 200, {**_public(record), "run_id": record["run_id"]}
                if method == "DELETE":
                    del store[record["id"]]
                    return 200, {"message": "Memory deleted successfully!"}
                if method == "PUT":
                    if "text" not in body and "metadata" not in body and "expiration_date" not in body:
                        raise BadRequest("one of text, metadata, expiration_date is required")
                    if isinstance(body.get("text"), str):
                        record["memory"] = body["text"]
                    if isinstance(body.get("metadata"), dict):
                        record["metadata"] = dict(body["metadata"])
                    record["updated_at"] = datetime.now(timezone.utc).isoformat()
                    return 200, _public(record)
            return 404, {"detail": f"no route {method} {path}"}

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler

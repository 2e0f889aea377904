"""The conformance suite on an HTTP backend: a small memory service on loopback (sessions, messages, notes, commit,
search, read-back) and a backend for it written the way docs/http.md says. The fault tests run here: 503s, timeouts
and resets injected through memcore.http's transport."""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import memcore
from memcore.http import mapped, quote_segment, raise_for_status
from memcore.testing import BackendSuite, closed_port

_WORD = re.compile(r"\w+")


class Service:
    """An in-memory memory service. Turns become searchable when their session is committed, notes at once.
    Bodies larger than ``max_body`` bytes are refused with 413 and a message saying so."""

    def __init__(self, max_body: int = 512 * 1024) -> None:
        self.max_body = max_body
        self.lock = threading.Lock()
        self.opened: dict[str, str | None] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.committed: dict[str, int] = {}
        self.notes: dict[str, list[str]] = {}
        self.commits: Counter[str] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def search(self, query: str, session: str | None, limit: int) -> list[dict[str, Any]]:
        words = set(_WORD.findall(query.lower()))
        with self.lock:
            items = [(sid, m["content"]) for sid, ms in self.messages.items() for m in ms[: self.committed.get(sid, 0)]]
            items += [(sid, text) for sid, texts in self.notes.items() for text in texts]
        scored = []
        for sid, text in items:
            score = len(words & set(_WORD.findall(text.lower())))
            if score and (session is None or not self.scoped or sid == session):
                scored.append({"text": text, "session_id": sid, "score": score})
        scored.sort(key=lambda r: -r["score"])
        return scored[:limit]

    scoped = False


def _handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK stalls

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: object = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> tuple[str | None, str, dict[str, list[str]]]:
            parts = urllib.parse.urlsplit(self.path)
            segments = parts.path.split("/")  # /api/sessions/<quoted id>[/<action>]
            query = urllib.parse.parse_qs(parts.query)
            if len(segments) >= 4 and segments[:3] == ["", "api", "sessions"] and len(segments) <= 5:
                action = segments[4] if len(segments) == 5 else ""
                return urllib.parse.unquote(segments[3]), action, query
            return None, parts.path, query

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", 0) or 0)
            body = self.rfile.read(size) if size else b""
            sid, action, _ = self._route()
            if sid is None:
                self._answer(404, {"error": f"no such endpoint: {action}"})
                return
            if size > service.max_body:
                self._answer(413, {"error": f"message too large: {size} bytes, at most {service.max_body}"})
                return
            try:
                payload = json.loads(body) if body else None
                expected = {"": (dict, type(None)), "messages": list, "notes": dict, "commit": type(None)}[action]
                if not isinstance(payload, expected):
                    raise TypeError(f"a {type(payload).__name__} body")
            except (KeyError, TypeError, ValueError) as exc:  # a request that went to the wrong place
                self._answer(400, {"error": f"bad request for {action or 'open'!r}: {exc}"})
                return
            with service.lock:
                if action == "":
                    service.opened.setdefault(sid, payload.get("parent_id") if payload else None)
                elif action == "messages":
                    service.messages.setdefault(sid, []).extend(payload)
                elif action == "notes":
                    service.notes.setdefault(sid, []).append(payload["text"])
                elif action == "commit":
                    service.committed[sid] = len(service.messages.get(sid, []))
                    service.commits[sid] += 1
                else:
                    self._answer(404, {"error": f"no such action: {action}"})
                    return
            self._answer(204)

        def do_GET(self) -> None:
            sid, action, query = self._route()
            if sid is not None and action == "messages":
                with service.lock:
                    self._answer(200, list(service.messages.get(sid, [])))
            elif sid is None and action == "/api/search":
                session = query.get("session", [None])[0]
                limit = int(query.get("limit", ["10"])[0])
                self._answer(200, service.search(query.get("q", [""])[0], session, limit))
            else:
                self._answer(404, {"error": "no such endpoint"})

    return Handler


class LoopbackBackend:
    """An HTTP backend for :class:`Service`, written as docs/http.md says: ids quoted, httpx errors mapped."""

    name = "loopback"

    def __init__(self, url: str, transport: httpx.BaseTransport | None = None, timeout: float = 5.0) -> None:
        self._client = httpx.Client(base_url=url, transport=transport, timeout=timeout)

    def _session_path(self, session_id: str) -> str:
        return f"/api/sessions/{quote_segment(session_id)}"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with mapped():
            return raise_for_status(self._client.request(method, path, **kwargs))

    @memcore.hookimpl
    def memcore_open_session(self, session: memcore.Session) -> None:
        self._request("POST", self._session_path(session.id), json={"parent_id": session.parent_id})

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        body = [
            {
                "role": m.role,
                "content": m.content,
                "name": m.name,
                "tool_calls": [dict(c) for c in m.tool_calls],
                "tool_call_id": m.tool_call_id,
            }
            for m in messages
        ]
        self._request("POST", self._session_path(session.id) + "/messages", json=body)

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note) -> None:
        self._request("POST", self._session_path(session.id) + "/notes", json={"text": note.text, "kind": note.kind})

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self._request("POST", self._session_path(session.id) + "/commit")

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: memcore.Session | None, limit: int) -> Sequence[memcore.Recollection]:
        params: dict[str, Any] = {"q": query, "limit": limit}
        if session is not None:
            params["session"] = session.id
        found = self._request("GET", "/api/search", params=params).json()
        return [memcore.Recollection(text=r["text"], score=r["score"], session_id=r["session_id"]) for r in found]

    @memcore.hookimpl
    def memcore_history(self, session: memcore.Session) -> Sequence[memcore.Message]:
        stored = self._request("GET", self._session_path(session.id) + "/messages").json()
        return [
            memcore.Message(
                role=m["role"],
                content=m["content"],
                name=m["name"],
                tool_calls=tuple(m["tool_calls"]),
                tool_call_id=m["tool_call_id"],
            )
            for m in stored
        ]

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._client.close()


@pytest.fixture
def service() -> Iterator[Service]:
    running = Service()
    yield running
    running.close()


class TestLoopbackHTTP(BackendSuite):
    scoped_recall = False
    index_deadline = 5.0

    @pytest.fixture
    def backend(self, service: Service) -> LoopbackBackend:
        return LoopbackBackend(service.url)

    @pytest.fixture
    def http_backend(self, service: Service) -> Callable[[httpx.BaseTransport], LoopbackBackend]:
        return lambda transport: LoopbackBackend(service.url, transport=transport)

    @pytest.fixture
    def down_backend(self) -> Iterator[LoopbackBackend]:
        with closed_port() as port:  # the same backend, its service down
            yield LoopbackBackend(f"http://127.0.0.1:{port}")


def test_the_service_received_what_the_suite_says(service: Service) -> None:
    """The loopback service itself: an id with a slash, a query and a fragment is one session on the server."""
    backend = LoopbackBackend(service.url)
    with memcore.Memory(backends=[backend], plugins=[], journal=False) as memory:
        lc = memory.lifecycle("a/b?c#d")
        lc.sync_turn("hello", "hi")
        lc.end()
        assert memory.flush(timeout=10).ok
    assert list(service.messages) == ["a/b?c#d"] and service.commits["a/b?c#d"] == 1

"""A logging, fault-injecting HTTP proxy on loopback, in front of a real OpenViking server.

Every request is classified (``write``, ``commit``, ``search``, ``note``, ``read``, ``other``), numbered within its
class, and logged as an :class:`Exchange` with monotonic times: when it arrived, when it was forwarded, when its answer
went back (``time.monotonic()`` is system-wide, so a client in another process can compare its own times with these).
A :class:`FaultPlan` decides from (class, number) alone, with a seeded hash, which fault a request gets, so two clients
sending the same kinds of request in the same order meet the same faults:

- ``503``: answered 503 with a ``Retry-After: 0`` header and an OpenViking error envelope, not forwarded;
- ``reset``: the connection is reset (RST) before anything is forwarded;
- ``reset_after``: forwarded (the server applies it), then the connection is reset: the reply is lost;
- ``spike``: held ``spike_s`` seconds before it is forwarded (a slow link or a queue in front of the server), then
  forwarded whether or not the client is still waiting, as a server that has the bytes would.

Search answers are tagged: the proxy puts one extra level-2 memory first in every successful search result,
``recall-probe-<n>`` (``n`` = the search's exchange id), and answers ``GET /api/v1/content/read`` of that URI itself.
A recall handed to the agent can then be traced back to the search that produced it, and so to the session and time it
was asked for: that is how stale recall is counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

FAULTS = ("503", "reset", "reset_after", "spike")
PROBE = re.compile(r"recall-probe-(\d+)")
TURN = re.compile(r"\[(s\d+) t(\d+)\]")
_SESSION_PATH = re.compile(r"^/api/v1/sessions/([^/]+)(/.*)?$")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


def classify(method: str, path: str) -> tuple[str, str | None]:
    """(request class, session id or None) of one request."""
    m = _SESSION_PATH.match(path)
    session = unquote(m.group(1)) if m else None
    rest = (m.group(2) or "") if m else ""
    if method == "POST" and m and rest.startswith("/messages"):
        return "write", session
    if method == "POST" and m and rest == "/commit":
        return "commit", session
    if method == "POST" and path.startswith("/api/v1/search/"):
        return "search", None
    if method == "POST" and path == "/api/v1/content/write":
        return "note", None
    if method == "GET":
        return "read", session
    return "other", session


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """Which fault the n-th request of a class gets: each fault has a rate per class; ``spike`` only hits
    ``spike_classes``. The decision is a pure function of (seed, class, n)."""

    seed: int = 7
    rates: dict[str, float] = field(default_factory=dict)  # fault -> probability
    classes: tuple[str, ...] = ("write", "commit", "search", "note", "read")
    spike_classes: tuple[str, ...] = ("write", "commit")
    spike_s: float = 12.0

    @property
    def active(self) -> bool:
        return any(self.rates.values())

    def decide(self, cls: str, n: int) -> str | None:
        if cls not in self.classes:
            return None
        digest = hashlib.sha256(f"{self.seed}:{cls}:{n}".encode()).digest()
        x = int.from_bytes(digest[:8], "big") / 2.0**64
        for fault in FAULTS:
            rate = self.rates.get(fault, 0.0)
            if fault == "spike" and cls not in self.spike_classes:
                continue
            if x < rate:
                return fault
            x -= rate
        return None


@dataclass
class Exchange:
    id: int
    cls: str
    n: int
    method: str
    path: str
    session: str | None
    fault: str | None
    t_arrive: float
    t_forward: float | None = None
    t_done: float | None = None
    status: int | None = None  # what the client got (None: reset)
    upstream_status: int | None = None  # what the server answered (None: never forwarded)
    turns: list[str] = field(default_factory=list)  # "s03 t02" markers found in a write's body
    query: str | None = None  # a search's query
    search_session: str | None = None  # a search's session_id
    tag: str = ""  # which contender the proxy was serving


class FaultProxy:
    """``with FaultProxy(upstream, plan) as proxy:`` ... ``proxy.url`` ... ``proxy.exchanges``."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None):
        self.upstream = upstream.rstrip("/")
        self.plan = plan or FaultPlan()
        self.exchanges: list[Exchange] = []
        self.tag = ""
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=self.upstream, timeout=120.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._client.close()

    def reset(self, plan: FaultPlan, tag: str) -> None:
        """A new plan and tag, request numbering from zero (one per contender, so both meet the same faults)."""
        with self._lock:
            self.plan, self.tag, self._counters = plan, tag, {}

    def open(self, method: str, path: str, body: bytes) -> Exchange:
        cls, session = classify(method, urlsplit(path).path)
        with self._lock:
            n = self._counters.get(cls, 0)
            self._counters[cls] = n + 1
            ex = Exchange(
                id=len(self.exchanges),
                cls=cls,
                n=n,
                method=method,
                path=path,
                session=session,
                fault=self.plan.decide(cls, n),
                t_arrive=time.monotonic(),
                tag=self.tag,
            )
            self.exchanges.append(ex)
        if cls == "write":
            ex.turns = sorted({f"{s} t{t}" for s, t in TURN.findall(body.decode("utf-8", "replace"))})
        elif cls == "search":
            try:
                doc = json.loads(body)
                ex.query, ex.search_session = doc.get("query"), doc.get("session_id")
            except ValueError:
                pass
        return ex

    def forward(self, ex: Exchange, headers: dict[str, str], body: bytes) -> httpx.Response:
        ex.t_forward = time.monotonic()
        answer = self._client.request(ex.method, ex.path, headers=headers, content=body)
        ex.upstream_status = answer.status_code
        return answer

    def tag_search(self, ex: Exchange, content: bytes) -> bytes:
        """Put ``recall-probe-<id>`` first among the memories of a successful search answer."""
        try:
            doc = json.loads(content)
            result = doc.get("result")
            if not isinstance(result, dict):
                return content
        except ValueError:
            return content
        probe = {
            "uri": f"viking://user/bench/memories/preferences/recall-probe-{ex.id}.md",
            "abstract": f"recall-probe-{ex.id}: {ex.query or ''}",
            "context_type": "memory",
            "category": "preferences",
            "level": 2,
            "score": 1.0,
        }
        result["memories"] = [probe, *(result.get("memories") or [])]
        return json.dumps(doc).encode()


def probe_read(path: str) -> bytes | None:
    """The answer to ``GET /api/v1/content/read?uri=...recall-probe-<n>.md``, or None for any other request."""
    parts = urlsplit(path)
    if parts.path != "/api/v1/content/read":
        return None
    uri = (parse_qs(parts.query).get("uri") or [""])[0]
    m = PROBE.search(uri)
    if not m:
        return None
    return json.dumps({"status": "ok", "result": f"recall-probe-{m.group(1)}"}).encode()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def finish(self) -> None:
            with contextlib.suppress(OSError, ValueError):
                super().finish()

        def _reset(self) -> None:
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass

        def _reply(self, ex: Exchange | None, status: int, body: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                if ex is not None:
                    ex.status = None
                    ex.t_done = time.monotonic()
                return
            if ex is not None:
                ex.status, ex.t_done = status, time.monotonic()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            canned = probe_read(self.path) if self.command == "GET" else None
            if canned is not None:
                self._reply(None, 200, canned, {"Content-Type": "application/json"})
                return
            ex = proxy.open(self.command, self.path, body)
            if ex.fault == "503":
                envelope = {"status": "error", "error": {"code": "UNAVAILABLE", "message": "injected 503"}}
                self._reply(ex, 503, json.dumps(envelope).encode(), {"Retry-After": "0"})
                return
            if ex.fault == "reset":
                ex.t_done = time.monotonic()
                self._reset()
                return
            if ex.fault == "spike":
                time.sleep(proxy.plan.spike_s)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
            try:
                answer = proxy.forward(ex, headers, body)
            except httpx.HTTPError:
                self._reply(ex, 502, b'{"status":"error","error":{"code":"BAD_GATEWAY"}}', {})
                return
            if ex.fault == "reset_after":
                ex.t_done = time.monotonic()
                self._reset()
                return
            content = answer.content
            if ex.cls == "search" and answer.status_code == 200:
                content = proxy.tag_search(ex, content)
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            self._reply(ex, answer.status_code, content, out)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler

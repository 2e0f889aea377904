"""An HTTP backend against a real loopback server, with faults injected through memcore.http's transport:
a service that answers 503 for a while, resets connections, then recovers loses nothing and keeps order (G9)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from recording import WAIT

import memcore
from memcore.http import FaultInjector, FaultTransport, mapped, quote_segment, raise_for_status


class Store:
    """What the server received, per session (the server's own record, not the client's counters)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, list[str]] = {}
        self.commits: dict[str, int] = {}


def serve(store: Store) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            parts = self.path.split("/")  # /sessions/<quoted id>/<action>
            if len(parts) != 4 or parts[1] != "sessions":
                self.send_error(404)
                return
            sid, action = urllib.parse.unquote(parts[2]), parts[3]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)) or 0)
            with store.lock:
                if action == "messages":
                    store.messages.setdefault(sid, []).extend(m["content"] for m in json.loads(body))
                elif action == "commit":
                    store.commits[sid] = store.commits.get(sid, 0) + 1
                else:
                    self.send_error(404)
                    return
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class HTTPBackend:
    name = "http"

    def __init__(self, url: str, transport: httpx.BaseTransport):
        self._client = httpx.Client(base_url=url, transport=transport, timeout=5.0)

    def _post(self, path: str, body: object = None) -> None:
        with mapped():
            raise_for_status(self._client.post(path, json=body))

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        self._post(f"/sessions/{quote_segment(session.id)}/messages", [{"content": m.content} for m in messages])

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self._post(f"/sessions/{quote_segment(session.id)}/commit")

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._client.close()


@pytest.fixture
def service() -> Iterator[tuple[str, Store]]:
    store = Store()
    server = serve(store)
    yield f"http://127.0.0.1:{server.server_address[1]}", store
    server.shutdown()
    server.server_close()


def test_g9_service_down_for_a_while_then_back_loses_nothing_in_order(service, make_memory):
    url, store = service
    faults = FaultInjector()
    faults.add("status", status=503, times=30, retry_after=0)  # down for the first 30 requests
    faults.add("reset", every=7)  # then a connection reset every 7th request that gets through
    memory = make_memory(
        HTTPBackend(url, FaultTransport(httpx.HTTPTransport(), faults)),
        retry=memcore.RetryPolicy(initial=0.001, max_delay=0.01, deadline=WAIT),
    )
    ids = ["plain", "../x", "a/b?c#d", "%2e%2e", "emoji 🧠"]
    lifecycles = [memory.lifecycle(sid) for sid in ids]
    for i in range(20):
        for lc in lifecycles:
            lc.sync_turn(f"{lc.session_id} {i}", "ok")
    for lc in lifecycles:
        lc.end()
    report = memory.close(timeout=WAIT)
    assert report.ok, report
    assert report.retried >= 30 and report.delivered == 100 and report.committed == 5
    for sid in ids:  # each id reached exactly its own session, in order, committed once
        assert store.messages[sid] == [x for i in range(20) for x in (f"{sid} {i}", "ok")]
        assert store.commits[sid] == 1
    assert set(store.messages) == set(ids)
    assert faults.faulted["status"] == 30 and faults.faulted["reset"] >= 1

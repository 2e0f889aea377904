"""The measuring parts of benchmarks/vs_hermes.py that need no OpenViking server: the fault proxy (against a tiny
loopback upstream) and the figures computed from its log and from a server state."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _fault_proxy import PROBE, Exchange, FaultPlan, FaultProxy, classify
from _vs_hermes_figures import ServerState, commit_figures, placement, stale_recall


class Upstream:
    """A loopback server answering every request with an OpenViking-style envelope, recording what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                upstream.seen.append((self.command, self.path))
                result: dict[str, Any] = {"memories": []} if self.path.startswith("/api/v1/search/") else {}
                body = json.dumps({"status": "ok", "result": result}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


WRITE = "/api/v1/sessions/s%2F1/messages/batch"
BODY = {"messages": [{"role": "user", "parts": [{"type": "text", "text": "[s01 t03] hello"}]}]}


def test_requests_are_classified_with_their_session() -> None:
    assert classify("POST", WRITE) == ("write", "s/1")
    assert classify("POST", "/api/v1/sessions/s01/commit") == ("commit", "s01")
    assert classify("POST", "/api/v1/search/find") == ("search", None)
    assert classify("POST", "/api/v1/content/write") == ("note", None)
    assert classify("GET", "/api/v1/sessions/s01/context") == ("read", "s01")
    assert classify("POST", "/api/v1/sessions") == ("other", None)


def test_the_plan_is_a_pure_function_of_seed_class_and_number() -> None:
    plan = FaultPlan(seed=3, rates={"503": 0.1, "reset": 0.05, "spike": 0.05})
    again = FaultPlan(seed=3, rates={"503": 0.1, "reset": 0.05, "spike": 0.05})
    other = FaultPlan(seed=4, rates={"503": 0.1, "reset": 0.05, "spike": 0.05})
    draws = [plan.decide("write", n) for n in range(2000)]
    assert draws == [again.decide("write", n) for n in range(2000)]
    assert draws != [other.decide("write", n) for n in range(2000)]
    assert 140 <= draws.count("503") <= 260 and 60 <= draws.count("reset") <= 140 and 60 <= draws.count("spike") <= 140
    assert "spike" not in [plan.decide("search", n) for n in range(2000)]  # spikes hit writes and commits only
    assert {plan.decide("other", n) for n in range(200)} == {None}
    assert not FaultPlan().active and plan.active


def test_a_503_is_answered_by_the_proxy_and_never_forwarded(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, FaultPlan(rates={"503": 1.0})) as proxy:
        answer = httpx.post(proxy.url + WRITE, json=BODY)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "0"
    assert upstream.seen == []
    (ex,) = proxy.exchanges
    assert (ex.cls, ex.session, ex.fault, ex.status, ex.upstream_status) == ("write", "s/1", "503", 503, None)
    assert ex.turns == ["s01 t03"]


def test_a_reset_before_forwarding_never_reaches_the_server(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, FaultPlan(rates={"reset": 1.0})) as proxy, pytest.raises(httpx.TransportError):
        httpx.post(proxy.url + WRITE, json=BODY)
    assert upstream.seen == []
    assert proxy.exchanges[0].status is None and proxy.exchanges[0].t_done is not None


def test_a_reset_after_forwarding_loses_only_the_reply(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, FaultPlan(rates={"reset_after": 1.0})) as proxy, pytest.raises(httpx.TransportError):
        httpx.post(proxy.url + WRITE, json=BODY)
    assert upstream.seen == [("POST", WRITE)]
    (ex,) = proxy.exchanges
    assert ex.upstream_status == 200 and ex.status is None


def test_a_spike_holds_the_request_before_it_is_forwarded(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, FaultPlan(rates={"spike": 1.0}, spike_s=0.05)) as proxy:
        answer = httpx.post(proxy.url + "/api/v1/sessions/s01/commit", json={})
    assert answer.status_code == 200
    (ex,) = proxy.exchanges
    assert ex.fault == "spike" and ex.t_forward is not None and ex.t_forward - ex.t_arrive >= 0.05


def test_search_answers_carry_a_probe_that_reads_back(upstream: Upstream) -> None:
    with FaultProxy(upstream.url) as proxy:
        found = httpx.post(proxy.url + "/api/v1/search/search", json={"query": "q", "session_id": "s01"}).json()
        probe = found["result"]["memories"][0]
        read = httpx.get(proxy.url + "/api/v1/content/read", params={"uri": probe["uri"]}).json()
    (ex,) = proxy.exchanges  # the probe read is answered by the proxy and not logged
    assert (ex.query, ex.search_session) == ("q", "s01")
    assert probe["level"] == 2 and PROBE.findall(probe["abstract"]) == [str(ex.id)]
    assert PROBE.findall(read["result"]) == [str(ex.id)]
    assert upstream.seen == [("POST", "/api/v1/search/search")]


def test_numbering_restarts_per_contender(upstream: Upstream) -> None:
    with FaultProxy(upstream.url) as proxy:
        httpx.post(proxy.url + WRITE, json=BODY)
        proxy.reset(FaultPlan(), "second")
        httpx.post(proxy.url + WRITE, json=BODY)
    assert [(e.n, e.tag) for e in proxy.exchanges] == [(0, ""), (0, "second")]


def ex(
    i: int, cls: str, session: str | None, arrive: float, forward: float | None, done: float | None, up: int | None
) -> Exchange:
    return Exchange(
        id=i, cls=cls, n=i, method="POST", path="", session=session, fault=None, t_arrive=arrive,
        t_forward=forward, t_done=done, status=up, upstream_status=up,
    )  # fmt: skip


def test_a_commit_accepted_while_a_write_is_held_counts_as_in_flight() -> None:
    log = [
        ex(0, "write", "a", 1.0, 13.0, 13.1, 200),  # held by a spike
        ex(1, "commit", "a", 2.0, 2.0, 2.1, 200),  # overtakes it
        ex(2, "write", "b", 3.0, 3.0, 3.1, 200),
        ex(3, "commit", "b", 4.0, 4.0, 4.1, 200),  # after its write: fine
    ]
    assert commit_figures(log)["commits_in_flight"] == 1


def test_refused_writes_and_refused_commits_do_not_count_as_in_flight() -> None:
    log = [
        ex(0, "write", "a", 1.0, 1.0, 2.5, 400),  # the server refused it: no write
        ex(1, "commit", "a", 2.0, 2.0, 2.1, 200),
        ex(2, "write", "b", 3.0, 5.0, 5.1, 200),
        ex(3, "commit", "b", 4.0, 4.0, 4.1, 503),  # not committed
    ]
    assert commit_figures(log)["commits_in_flight"] == 0


def test_a_second_commit_with_no_write_between_is_a_double_commit() -> None:
    log = [
        ex(0, "write", "a", 1.0, 1.0, 1.1, 200),
        ex(1, "commit", "a", 2.0, 2.0, None, 200),  # the reply was lost
        ex(2, "commit", "a", 3.0, 3.0, 3.1, 200),  # the retry: nothing new to commit
        ex(3, "write", "a", 4.0, 4.0, 4.1, 200),
        ex(4, "commit", "a", 5.0, 5.0, 5.1, 200),
        ex(5, "commit", "b", 6.0, 6.0, 6.1, 200),  # b never had a write
    ]
    figures = commit_figures(log)
    assert (figures["commits_sent"], figures["commits_accepted"], figures["double_commits"]) == (4, 4, 2)


def test_stale_recall_is_a_search_for_another_session_or_from_before_the_switch() -> None:
    searches = {
        0: Exchange(0, "search", 0, "POST", "", None, None, t_arrive=1.0, search_session="a"),
        1: Exchange(1, "search", 1, "POST", "", None, None, t_arrive=2.5, search_session="a"),
        2: Exchange(2, "search", 2, "POST", "", None, None, t_arrive=2.6, search_session="b"),
        3: Exchange(3, "search", 3, "POST", "", None, None, t_arrive=1.5, search_session="b"),
    }
    record = {
        "switches": [(0.0, "a"), (2.0, "b")],
        "recalls": [
            {"t0": 1.2, "session": "a", "probes": [0]},  # fine
            {"t0": 2.5, "session": "b", "probes": [1]},  # asked for a after the agent moved to b
            {"t0": 2.6, "session": "b", "probes": [2]},  # fine
            {"t0": 2.7, "session": "b", "probes": [3]},  # asked for b, but before the agent entered b
            {"t0": 2.8, "session": "b", "probes": []},  # nothing from the server
        ],
    }
    assert stale_recall(record, searches) == {"recalls": 5, "recalls_empty": 1, "recalls_stale": 2}


def test_placement_counts_lost_misplaced_reordered_and_duplicated_turns() -> None:
    expected = {"a": ["a t00", "a t01", "a t02", "a t03"], "b": ["b t00", "b t01"]}
    state = ServerState(turns={"a": ["a t00", "a t02", "a t01", "b t01"], "b": ["b t00", "a t00"]})
    assert placement(expected, state) == {
        "lost": 1,
        "wrong_session": 1,
        "out_of_order": 1,
        "duplicated": 1,
        "present": 4,
    }

"""memcore.http: status and exception mapping (G9), safe ids and secrets (G12), and the fault-injecting transport."""

from __future__ import annotations

import email.utils
import http.server
import json
import pickle
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

import httpx
import pytest

import memcore
from memcore.http import (
    FaultInjector,
    FaultTransport,
    HTTPStatusError,
    LogEntry,
    is_transient,
    mapped,
    parse_retry_after,
    quote_segment,
    raise_for_status,
    redact_headers,
    redact_url,
)

BASE = "http://svc.test/api/v1"


def respond(status: int, body: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", f"{BASE}/sessions/s1/messages?verbose=1")
    return httpx.Response(status, text=body, headers=headers, request=request)


class Recorder:
    """A MockTransport handler that answers 200 with a JSON body and remembers what reached it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"ok": True, "n": len(self.requests)})


@pytest.fixture
def service() -> Recorder:
    return Recorder()


@pytest.fixture
def make_client(service: Recorder) -> Iterator[Callable[..., httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(faults: FaultInjector, sleep: Callable[[float], None] = time.sleep) -> httpx.Client:
        transport = FaultTransport(httpx.MockTransport(service), faults, sleep=sleep)
        client = httpx.Client(base_url=BASE, transport=transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# ---------------------------------------------------------------------------------------------------- status mapping


@pytest.mark.parametrize("status", [200, 201, 204, 301, 304])
def test_success_and_redirects_are_returned(status: int) -> None:
    response = respond(status)
    assert raise_for_status(response) is response


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_are_final(status: int) -> None:
    with pytest.raises(HTTPStatusError) as info:
        raise_for_status(respond(status, '{"detail": "no such session"}'))
    error = info.value
    assert isinstance(error, memcore.MemcoreError)
    assert not isinstance(error, memcore.TransientError)
    assert not is_transient(error)
    assert (error.status_code, error.method, error.path) == (status, "POST", "/api/v1/sessions/s1/messages")
    assert error.excerpt == '{"detail": "no such session"}'
    assert str(error).startswith(f"POST /api/v1/sessions/s1/messages -> {status} ")
    assert "verbose" not in str(error)


def test_404_and_409_messages() -> None:
    with pytest.raises(HTTPStatusError, match=r"-> 404 Not Found: gone"):
        raise_for_status(respond(404, "gone"))
    with pytest.raises(HTTPStatusError, match=r"-> 409 Conflict$"):
        raise_for_status(respond(409))


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 599])
def test_5xx_are_transient(status: int) -> None:
    with pytest.raises(memcore.TransientError) as info:
        raise_for_status(respond(status, "upstream down"))
    assert is_transient(info.value)
    assert info.value.retry_after is None
    assert str(info.value).startswith(f"POST /api/v1/sessions/s1/messages -> {status}")
    assert str(info.value).endswith(": upstream down")


def test_429_with_retry_after_seconds() -> None:
    with pytest.raises(memcore.TransientError, match="429 Too Many Requests") as info:
        raise_for_status(respond(429, headers={"Retry-After": "7"}))
    assert info.value.retry_after == 7.0


def test_429_with_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    with pytest.raises(memcore.TransientError) as info:
        raise_for_status(respond(429, headers={"Retry-After": when}))
    assert info.value.retry_after is not None
    assert 100 < info.value.retry_after <= 120


def test_503_with_retry_after_in_the_past_is_zero() -> None:
    with pytest.raises(memcore.TransientError) as info:
        raise_for_status(respond(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert info.value.retry_after == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),  # now() is 40
        ("Thu, 01 Jan 1970 00:01:40 -0000", 60.0),  # "-0000" is UTC too
        ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("1e3", None),
        ("Thu, 99 Foo 1970 00:00:10 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=lambda: 40.0) == expected


def test_a_long_body_is_cut_to_an_excerpt_on_one_line() -> None:
    with pytest.raises(memcore.TransientError) as info:
        raise_for_status(respond(500, "<html>\n  <body>\n" + "x" * 5000))
    message = str(info.value)
    assert "\n" not in message
    assert "<html> <body> xxx" in message
    assert len(message) < 300


def test_a_streamed_body_not_read_gives_no_excerpt() -> None:
    response = httpx.Response(500, stream=httpx.ByteStream(b"secret body"), request=httpx.Request("GET", BASE))
    with pytest.raises(memcore.TransientError) as info:
        raise_for_status(response)
    assert str(info.value) == "GET /api/v1 -> 500 Internal Server Error"


def test_a_response_without_its_request_still_maps() -> None:
    with pytest.raises(HTTPStatusError) as info:
        raise_for_status(httpx.Response(418))
    assert str(info.value) == "418 I'm a teapot"


def test_status_error_pickles_and_keeps_its_data() -> None:
    error = HTTPStatusError(404, "GET", "/api/v1/sessions/x", "not found")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status_code, copy.method, copy.path, copy.excerpt, str(copy)) == (
        404,
        "GET",
        "/api/v1/sessions/x",
        "not found",
        str(error),
    )


# ------------------------------------------------------------------------------------------------- exception mapping


def fail_with(error: type[httpx.TransportError]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    return httpx.Client(base_url=BASE, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.PoolTimeout,
        httpx.ConnectError,
        httpx.ReadError,
        httpx.WriteError,
        httpx.RemoteProtocolError,
    ],
)
def test_transport_errors_become_transient(error: type[httpx.TransportError]) -> None:
    with fail_with(error) as client, pytest.raises(memcore.TransientError) as info, mapped():
        client.get("/sessions/s1?api_key=hunter2-secret")
    assert isinstance(info.value.__cause__, error)
    assert str(info.value) == f"{error.__name__} on GET /api/v1/sessions/s1: boom"
    assert is_transient(info.value)
    assert is_transient(error("boom"))


def test_an_error_without_its_request_is_mapped_too() -> None:
    with pytest.raises(memcore.TransientError, match=r"^ConnectError: connection reset$"), mapped():
        raise httpx.ConnectError("connection reset")


@pytest.mark.parametrize(
    "error",
    [ValueError("bad"), KeyError("k"), httpx.LocalProtocolError("ours"), httpx.UnsupportedProtocol("ftp")],
)
def test_other_exceptions_are_left_alone(error: Exception) -> None:
    with pytest.raises(type(error)) as info, mapped():
        raise error
    assert info.value is error
    assert not is_transient(error)


def test_mapped_lets_memcore_errors_through_unchanged() -> None:
    original = memcore.TransientError("503", retry_after=2.0)
    with pytest.raises(memcore.TransientError) as info, mapped():
        raise original
    assert info.value is original


def test_is_transient_follows_the_core() -> None:
    request = httpx.Request("GET", BASE)
    assert is_transient(TimeoutError())
    assert is_transient(ConnectionResetError())
    for status, transient in [(408, True), (429, True), (500, True), (503, True), (404, False), (409, False)]:
        response = httpx.Response(status, request=request)
        assert is_transient(httpx.HTTPStatusError("x", request=request, response=response)) is transient
    assert not is_transient(RuntimeError())


# ---------------------------------------------------------------------------------------------------------- secrets

API_KEY = "sk-live-0123456789abcdef"
QUERY_KEY = "q-secret-fedcba9876543210"
TOKEN = "tok-abcdefghij"


@pytest.mark.parametrize("status", [401, 429, 503])
def test_no_secret_in_status_errors(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # a service that echoes what it got
        echoed = f"bad key {request.headers['X-API-Key']} / {request.url.params['api_key']} / {TOKEN}"
        return httpx.Response(status, text=echoed, headers={"Retry-After": "1"})

    headers = {"X-API-Key": API_KEY, "Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=BASE, headers=headers, transport=httpx.MockTransport(handler)) as client:
        response = client.get("/sessions/s1", params={"api_key": QUERY_KEY})
    with pytest.raises(memcore.MemcoreError) as info:
        raise_for_status(response)
    for text in (str(info.value), repr(info.value), repr(vars(info.value))):
        for secret in (API_KEY, QUERY_KEY, TOKEN, "api_key"):
            assert secret not in text
    assert "bad key *** / *** / ***" in str(info.value)


def test_no_secret_in_mapped_transport_errors() -> None:
    with fail_with(httpx.ConnectError) as client, pytest.raises(memcore.TransientError) as info, mapped():
        client.get("/sessions/s1", params={"api_key": QUERY_KEY}, headers={"X-API-Key": API_KEY})
    for text in (str(info.value), repr(info.value)):
        assert QUERY_KEY not in text
        assert API_KEY not in text


def test_redact_headers() -> None:
    headers = httpx.Headers(
        {
            "Authorization": "Bearer x",
            "X-API-Key": "k",
            "Cookie": "c",
            "X-Auth-Token": "t",
            "Client-Secret": "s",
            "Content-Type": "application/json",
            "X-OpenViking-Account": "acct",
        }
    )
    assert redact_headers(headers) == {
        "authorization": "***",
        "x-api-key": "***",
        "cookie": "***",
        "x-auth-token": "***",
        "client-secret": "***",
        "content-type": "application/json",
        "x-openviking-account": "acct",
    }
    assert redact_headers({"Api-Key": "k", "Accept": "*/*"}) == {"Api-Key": "***", "Accept": "*/*"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:1933", "http://127.0.0.1:1933"),
        ("https://u:pw@h.test/a%2Fb?x=1", "https://u:***@h.test/a%2Fb?x=1"),
        ("http://h.test/p?api_key=s&x=1&Token=t&flag", "http://h.test/p?api_key=***&x=1&Token=***&flag"),
        (httpx.URL("http://h.test/?secret=s"), "http://h.test/?secret=***"),
    ],
)
def test_redact_url(url: str | httpx.URL, expected: str) -> None:
    assert redact_url(url) == expected


# ------------------------------------------------------------------------------------------------------ quote_segment

NASTY_IDS = ["../x", "a/b?c#d", "%2e%2e", ".", "..", "...", "two words", "caf\u00e9 \U0001f600", "a;b=c", "~user"]


@pytest.mark.parametrize("session_id", NASTY_IDS)
def test_quote_segment_keeps_the_id_inside_its_endpoint(session_id: str) -> None:
    segment = quote_segment(session_id)
    with httpx.Client(base_url=BASE) as client:
        request = client.build_request("POST", f"/sessions/{segment}/messages")
    raw_path = request.url.raw_path
    assert raw_path == f"/api/v1/sessions/{segment}/messages".encode()
    assert raw_path.split(b"/") == [b"", b"api", b"v1", b"sessions", segment.encode(), b"messages"]
    assert request.url.query == b""
    assert request.url.fragment == ""
    assert segment not in (".", "..")
    assert urllib.parse.unquote(segment) == session_id  # the server's one decoding gives the id back


def test_quote_segment_encodes_dot_segments() -> None:
    assert quote_segment(".") == "%2E"
    assert quote_segment("..") == "%2E%2E"
    assert quote_segment("../x") == "..%2Fx"
    assert quote_segment("%2e%2e") == "%252e%252e"
    assert quote_segment("a/b?c#d") == "a%2Fb%3Fc%23d"
    with pytest.raises(ValueError, match="empty"):
        quote_segment("")


# ----------------------------------------------------------------------------------------------------- FaultTransport


def test_n_503s_then_success(make_client: Callable[..., httpx.Client], service: Recorder) -> None:
    faults = FaultInjector()
    faults.add("status", status=503, times=3, retry_after=2, body="busy")
    client = make_client(faults)
    for _ in range(3):
        with pytest.raises(memcore.TransientError, match="503 Service Unavailable: busy") as info:
            raise_for_status(client.post("/sessions/s1/messages", json={"text": "hi"}))
        assert info.value.retry_after == 2.0
    assert raise_for_status(client.post("/sessions/s1/messages", json={"text": "hi"})).json() == {"ok": True, "n": 1}
    assert len(service.requests) == 1
    assert (faults.seen, faults.forwarded, faults.faulted) == (4, 1, {"status": 3})
    assert [entry.outcome for entry in faults.log] == ["status 503"] * 3 + ["forwarded"]


def test_every_nth_request_is_reset(make_client: Callable[..., httpx.Client], service: Recorder) -> None:
    faults = FaultInjector()
    faults.add("reset", every=3)
    client = make_client(faults)
    outcomes = []
    for _ in range(7):
        try:
            with mapped():
                raise_for_status(client.get("/recall"))
            outcomes.append("ok")
        except memcore.TransientError as exc:
            assert isinstance(exc.__cause__, httpx.ConnectError)
            outcomes.append("reset")
    assert outcomes == ["ok", "ok", "reset", "ok", "ok", "reset", "ok"]
    assert len(service.requests) == 5
    assert (faults.seen, faults.forwarded, faults.faulted) == (7, 5, {"reset": 2})


def test_read_phase_faults_forward_and_lose_the_answer(
    make_client: Callable[..., httpx.Client], service: Recorder
) -> None:
    faults = FaultInjector()
    faults.add("timeout", times=1, phase="read")
    faults.add("reset", times=1, phase="read")
    faults.add("timeout", times=1)
    client = make_client(faults)
    with pytest.raises(httpx.ReadTimeout):
        client.post("/sessions/s1/commit")
    with pytest.raises(httpx.ReadError, match="connection reset"):
        client.post("/sessions/s1/commit")
    with pytest.raises(httpx.ConnectTimeout):
        client.post("/sessions/s1/commit")
    client.post("/sessions/s1/commit")
    assert len(service.requests) == 3  # the service did the work of both read faults
    assert faults.log == [
        LogEntry("POST", "/api/v1/sessions/s1/commit", "read timeout"),
        LogEntry("POST", "/api/v1/sessions/s1/commit", "read reset"),
        LogEntry("POST", "/api/v1/sessions/s1/commit", "connect timeout"),
        LogEntry("POST", "/api/v1/sessions/s1/commit", "forwarded"),
    ]
    assert faults.forwarded == 3
    assert faults.faulted == {"timeout": 2, "reset": 1}


def test_latency_uses_the_injected_sleep(make_client: Callable[..., httpx.Client], service: Recorder) -> None:
    slept: list[float] = []
    faults = FaultInjector()
    faults.add("latency", seconds=0.25, match=lambda request: request.method == "POST")
    faults.add("latency", seconds=1.0, every=2)
    client = make_client(faults, sleep=slept.append)
    client.post("/sessions/s1/messages")
    client.get("/recall")
    client.post("/sessions/s1/messages")
    assert slept == [0.25, 1.0, 0.25]
    assert len(service.requests) == 3
    assert faults.faulted == {"latency": 3}


def test_match_predicate_and_rule_order(make_client: Callable[..., httpx.Client], service: Recorder) -> None:
    faults = FaultInjector()
    commit = faults.add("status", status=500, times=1, match=lambda request: request.url.path.endswith("/commit"))
    always = faults.add("status", status=502)
    client = make_client(faults)
    assert client.post("/sessions/s1/commit").status_code == 500
    assert client.post("/sessions/s1/commit").status_code == 502
    assert client.get("/recall").status_code == 502
    assert (commit.consulted, commit.fired, always.consulted, always.fired) == (2, 1, 2, 2)  # not asked on request 1
    faults.clear()
    assert client.get("/recall").status_code == 200
    assert service.requests[0].url.path == "/api/v1/recall"


def test_hang_until_the_test_releases_it(make_client: Callable[..., httpx.Client], service: Recorder) -> None:
    faults = FaultInjector()
    hang = faults.add("hang", times=1)
    client = make_client(faults)
    answers: list[int] = []
    caller = threading.Thread(target=lambda: answers.append(client.get("/recall", timeout=30).status_code))
    caller.start()
    assert hang.entered.wait(10)
    assert answers == []
    assert service.requests == []
    hang.release()
    caller.join(10)
    assert answers == [200]
    assert faults.log == [LogEntry("GET", "/api/v1/recall", "forwarded")]
    assert faults.faulted == {"hang": 1}


def test_an_unreleased_hang_times_out(make_client: Callable[..., httpx.Client], service: Recorder) -> None:
    faults = FaultInjector()
    faults.add("hang", seconds=0.0)  # gives up at once, without sleeping
    client = make_client(faults)
    with pytest.raises(memcore.TransientError, match="ReadTimeout on GET /api/v1/recall") as info, mapped():
        client.get("/recall")
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert service.requests == []
    assert faults.log[-1].outcome == "hang timeout"


def test_probability_is_deterministic_with_a_seed(service: Recorder) -> None:
    def run(seed: int) -> list[str]:
        faults = FaultInjector(rng=random.Random(seed))
        faults.add("status", status=503, probability=0.3)
        with httpx.Client(transport=FaultTransport(httpx.MockTransport(service), faults)) as client:
            for _ in range(50):
                client.get(BASE)
        return [entry.outcome for entry in faults.log]

    first = run(7)
    assert first == run(7)
    assert 5 < first.count("status 503") < 30


def test_an_inner_error_is_logged_and_raised() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    faults = FaultInjector()
    with (
        httpx.Client(transport=FaultTransport(httpx.MockTransport(handler), faults)) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(BASE)
    assert faults.log == [LogEntry("GET", "/api/v1", "forwarded, then ConnectError")]


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("explode", {}),
        ("status", {"times": 0}),
        ("reset", {"every": 0}),
        ("status", {"probability": 0.5}),  # no rng
        ("latency", {}),
        ("status", {"status": 700}),
        ("timeout", {"phase": "write"}),
    ],
)
def test_bad_rules_are_refused(kind: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultInjector().add(kind, **options)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- end to end, over loopback


def test_retry_loop_through_faults_against_a_real_server() -> None:
    seen_paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen_paths.append(self.path)
            body = json.dumps({"session": urllib.parse.unquote(self.path.split("/")[3])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        faults = FaultInjector()
        faults.add("status", status=503, times=2, retry_after=0)
        transport = FaultTransport(httpx.HTTPTransport(), faults)
        base = f"http://127.0.0.1:{server.server_address[1]}/api"
        session_id = "../a/b?c#d"
        errors: list[memcore.TransientError] = []
        with httpx.Client(base_url=base, transport=transport, timeout=10) as client:
            for _attempt in range(5):
                try:
                    with mapped():
                        response = raise_for_status(client.get(f"/sessions/{quote_segment(session_id)}"))
                    break
                except memcore.TransientError as exc:
                    errors.append(exc)
            else:
                pytest.fail("the retry loop never got through")
        assert response.json() == {"session": session_id}
        assert [error.retry_after for error in errors] == [0.0, 0.0]
        assert seen_paths == ["/api/sessions/..%2Fa%2Fb%3Fc%23d"]  # only the forwarded request reached it
        assert (faults.seen, faults.forwarded) == (3, 1)
        assert [entry.outcome for entry in faults.log] == ["status 503", "status 503", "forwarded"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

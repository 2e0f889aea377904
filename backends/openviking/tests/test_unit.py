"""Unit tests on httpx.MockTransport: the wire format, error mapping, ids, chunking and secrets."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import memcore
import pytest
from memcore.http import HTTPStatusError

from memcore_openviking import OpenVikingBackend, decode_session_id, encode_session_id

KEY = "sk-very-secret-key-123"
Handler = Callable[[httpx.Request], httpx.Response]


def envelope(status: int, code: str = "", message: str = "", result: object = None) -> httpx.Response:
    if status < 400:
        return httpx.Response(status, json={"status": "ok", "result": result, "error": None})
    error = {"code": code, "message": message, "details": {}}
    return httpx.Response(status, json={"status": "error", "result": None, "error": error})


def make(handler: Handler, **settings: object) -> tuple[OpenVikingBackend, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return handler(request)

    options = {"url": "http://ov.test", "api_key": KEY, "account": "acme", "user": "alice", **settings}
    return OpenVikingBackend(transport=httpx.MockTransport(record), **options), seen  # type: ignore[arg-type]


S = memcore.Session(id="s1")


def test_headers_carry_key_account_user_and_peer() -> None:
    backend, seen = make(lambda r: envelope(200, result={}), agent="bot-7")
    backend.memcore_open_session(S)
    headers = seen[0].headers
    assert headers["X-API-Key"] == KEY
    assert (headers["X-OpenViking-Account"], headers["X-OpenViking-User"]) == ("acme", "alice")
    assert headers["X-OpenViking-Actor-Peer"] == "bot-7"
    assert json.loads(seen[0].content) == {"session_id": "s1"}
    assert KEY not in repr(backend) and "ov.test" in repr(backend)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENVIKING_URL", "http://env.test:1933")
    monkeypatch.setenv("OPENVIKING_API_KEY", KEY)
    monkeypatch.setenv("OPENVIKING_ACCOUNT", "env-acct")
    monkeypatch.setenv("OPENVIKING_USER", "env-user")
    seen: list[httpx.Request] = []
    backend = OpenVikingBackend(transport=httpx.MockTransport(lambda r: seen.append(r) or envelope(200, result={})))
    backend.memcore_open_session(S)
    assert str(seen[0].url).startswith("http://env.test:1933/api/v1/sessions")
    assert seen[0].headers["X-API-Key"] == KEY and seen[0].headers["X-OpenViking-User"] == "env-user"
    assert KEY not in repr(backend)


def test_an_existing_session_is_fine_to_open() -> None:
    backend, _ = make(lambda r: envelope(409, "ALREADY_EXISTS", "Session 's1' already exists"))
    backend.memcore_open_session(S)


def test_commit_of_an_unknown_session_is_final_with_the_service_message() -> None:
    backend, _ = make(lambda r: envelope(404, "NOT_FOUND", "Session not found: s1"))
    with pytest.raises(HTTPStatusError) as caught:
        backend.memcore_commit(S)
    assert caught.value.status_code == 404
    assert "NOT_FOUND: Session not found: s1" in str(caught.value)
    assert "/api/v1/sessions/s1/commit" in str(caught.value)


def test_commit_returns_the_task_id_without_waiting() -> None:
    backend, seen = make(lambda r: envelope(200, result={"status": "accepted", "task_id": "t-1"}))
    assert backend.memcore_commit(S) == "t-1"
    assert len(seen) == 1


def test_bad_credentials_are_final_and_never_show_the_key() -> None:
    backend, _ = make(lambda r: envelope(401, "UNAUTHENTICATED", f"Invalid API key {KEY}"))
    with pytest.raises(HTTPStatusError) as caught:
        backend.memcore_write(S, [memcore.Message(role="user", content="hi")])
    assert caught.value.status_code == 401 and "UNAUTHENTICATED" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert not memcore.http.is_transient(caught.value)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_overload_and_server_errors_are_transient(status: int) -> None:
    backend, _ = make(lambda r: envelope(status, "INTERNAL", "queue full"))
    with pytest.raises(memcore.TransientError) as caught:
        backend.memcore_commit(S)
    assert str(status) in str(caught.value) and KEY not in str(caught.value)


def test_an_error_envelope_on_200_is_final() -> None:
    body = {"status": "error", "result": None, "error": {"code": "INVALID_ARGUMENT", "message": "bad"}}
    backend, _ = make(lambda r: httpx.Response(200, json=body))
    with pytest.raises(HTTPStatusError, match="INVALID_ARGUMENT: bad"):
        backend.memcore_commit(S)


def test_an_unreachable_server_is_transient() -> None:
    backend = OpenVikingBackend(url="http://127.0.0.1:9", api_key=KEY, timeout=2)
    with pytest.raises(memcore.TransientError) as caught:
        backend.memcore_open_session(S)
    assert KEY not in str(caught.value)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    backend, _ = make(refuse)
    with pytest.raises(memcore.TransientError):
        backend.memcore_commit(S)


def test_a_long_turn_goes_in_batches_and_a_retry_resends_only_the_batch_that_failed() -> None:
    failed = []

    def handler(request: httpx.Request) -> httpx.Response:
        batch = request.url.path.endswith("/messages/batch")
        if batch and sum(r.url.path.endswith("/messages/batch") for r in seen) == 2 and not failed:  # the 2nd, once
            failed.append(request)
            return envelope(503, "UNAVAILABLE", "busy")
        return envelope(200, result={})

    backend, seen = make(handler)
    assert backend.max_write_messages == 100
    retry = memcore.RetryPolicy(initial=0.001, max_delay=0.01, deadline=10.0)
    with memcore.Memory(backends=[backend], plugins=[], journal=False, retry=retry) as memory:
        memory.lifecycle("s1").sync_turn("", "", messages=[{"role": "user", "content": f"m{i}"} for i in range(150)])
        assert memory.flush(timeout=10.0).ok
    batches = [json.loads(r.content)["messages"] for r in seen if r.url.path.endswith("/messages/batch")]
    assert [len(b) for b in batches] == [100, 50, 50]  # the failed 50 once more, not the whole turn (250)
    delivered = [
        m["parts"][0]["text"]
        for r in seen
        if r not in failed and r.url.path.endswith("/batch")
        for m in json.loads(r.content)["messages"]
    ]
    assert delivered == [f"m{i}" for i in range(150)]


def test_a_direct_write_of_more_than_a_batch_is_refused() -> None:
    backend, seen = make(lambda r: envelope(200, result={}))
    with pytest.raises(ValueError, match="at most 100"):
        backend.memcore_write(S, [memcore.Message(role="user", content=f"m{i}") for i in range(101)])
    assert seen == []


def test_tool_calls_become_tool_parts_and_come_back() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    odd = {"id": "c2", "type": "function", "function": {"name": "raw", "arguments": "not json"}}
    written = [
        memcore.Message(role="assistant", content="", tool_calls=(call, odd)),
        memcore.Message(role="tool", content='{"t": 21}', name="weather", tool_call_id="c1"),
    ]
    backend, seen = make(lambda r: envelope(200, result={}))
    backend.memcore_write(S, written)
    wire = json.loads(seen[0].content)["messages"]
    assert wire[0]["parts"][0] == {
        "type": "tool",
        "tool_id": "c1",
        "tool_name": "weather",
        "tool_input": {"city": "Paris"},
        "tool_status": "pending",
    }
    assert wire[1]["parts"][0]["tool_output"] == '{"t": 21}'
    stored = [{**m, "id": f"msg_{i}"} for i, m in enumerate(wire)]

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/context"):
            return envelope(200, result={"messages": stored, "stats": {"totalArchives": 0}})
        return envelope(404, "NOT_FOUND", "no")

    reader, _ = make(serve)
    assert list(reader.memcore_history(S)) == written


def test_history_reads_completed_archives_then_the_context() -> None:
    def msg(i: int) -> dict[str, object]:
        return {"id": f"m{i}", "role": "user", "parts": [{"type": "text", "text": f"t{i}"}]}

    def serve(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/context"):  # archive_002 is still being extracted: its messages are in the context
            return envelope(200, result={"messages": [msg(3), msg(4), msg(5)], "stats": {"totalArchives": 2}})
        if path.endswith("/archive_001"):
            return envelope(200, result={"messages": [msg(1), msg(2)]})
        return envelope(404, "NOT_FOUND", "Archive archive_002 not found")

    backend, _ = make(serve)
    assert [m.content for m in backend.memcore_history(S)] == ["t1", "t2", "t3", "t4", "t5"]


@pytest.mark.parametrize(
    ("sid", "stored", "wire"),
    [
        ("plain", "plain", "plain"),
        ("a/b?c#d", "a%2Fb?c#d", "a%252Fb%3Fc%23d"),
        ("..", "%2E%2E", "%252E%252E"),
        (".", "%2E", "%252E"),
        ("../x", "..%2Fx", "..%252Fx"),
        ("%2e%2e", "%252e%252e", "%25252e%25252e"),
        ("a..b", "a..b", "a..b"),
    ],
)
def test_session_ids_are_encoded_reversibly_and_quoted(sid: str, stored: str, wire: str) -> None:
    assert encode_session_id(sid) == stored and decode_session_id(stored) == sid
    backend, seen = make(lambda r: envelope(200, result={"task_id": "t"}))
    backend.memcore_open_session(memcore.Session(id=sid))
    backend.memcore_commit(memcore.Session(id=sid))
    assert json.loads(seen[0].content) == {"session_id": stored}
    assert seen[1].url.raw_path == f"/api/v1/sessions/{wire}/commit".encode()


def test_recall_keeps_level_2_hits_best_first_within_limit() -> None:
    hits = {
        "memories": [
            {"uri": "viking://user/alice/memories/events/e1.md", "level": 2, "score": 0.5, "abstract": "one"},
            {"uri": "viking://user/alice/memories/.overview.md", "level": 1, "score": 0.9, "abstract": "dir"},
        ],
        "resources": [{"uri": "viking://resources/r.md", "level": 2, "score": 0.7, "abstract": "two"}],
        "skills": [],
    }
    backend, seen = make(lambda r: envelope(200, result=hits))
    got = backend.memcore_recall("q", memcore.Session(id="a/b"), 5)
    assert [(r.text, r.score) for r in got] == [("two", 0.7), ("one", 0.5)]
    assert got[0].metadata["uri"] == "viking://resources/r.md"
    assert seen[0].url.path == "/api/v1/search/search"
    assert json.loads(seen[0].content)["session_id"] == "a%2Fb"
    assert len(backend.memcore_recall("q", None, 1)) == 1 and seen[1].url.path == "/api/v1/search/find"


def test_recall_limit_counts_distinct_texts() -> None:
    """The same fact stored twice (two extractions of one archive) must not take two of the ``limit`` places: memcore
    merges identical texts, so the caller would get fewer than it asked for while more were there."""
    hits = {
        "memories": [
            {"uri": f"viking://user/alice/memories/events/{name}.md", "level": 2, "score": score, "abstract": text}
            for name, score, text in [("a", 0.9, "fact 3"), ("b", 0.8, "fact 3"), ("c", 0.7, "fact 1")]
        ]
    }
    backend, _ = make(lambda r: envelope(200, result=hits))
    assert [r.text for r in backend.memcore_recall("q", None, 2)] == ["fact 3", "fact 1"]


def test_notes_are_written_once_per_content_and_name_their_session() -> None:
    backend, seen = make(lambda r: envelope(200, result={}))
    note = memcore.Note(text="Prefers espresso", kind="preference")
    backend.memcore_remember(memcore.Session(id="s/1"), note)
    backend.memcore_remember(memcore.Session(id="s/1"), note)  # a retry: same uri, replaced
    bodies = [json.loads(r.content) for r in seen]
    assert bodies[0] == bodies[1] and bodies[0]["content"] == "Prefers espresso" and bodies[0]["wait"] is False
    assert bodies[0]["uri"].startswith("viking://user/alice/memories/notes/s-")
    hit = {"memories": [{"uri": bodies[0]["uri"], "level": 2, "score": 1.0, "abstract": "Prefers espresso"}]}
    reader, _ = make(lambda r: envelope(200, result=hit))
    assert reader.memcore_recall("espresso", None, 3)[0].session_id == "s/1"

"""Unit tests on httpx.MockTransport: the wire format, error mapping, ids, chunking and secrets."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable

import httpx
import memcore
import pytest
from memcore.http import HTTPStatusError

from memcore_openviking import (
    OpenVikingBackend,
    decode_session_id,
    encode_session_id,
    is_openviking_id,
    openviking_user_id,
)

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
        backend.memcore_commit(S, attempt=1)
    assert caught.value.status_code == 404
    assert "NOT_FOUND: Session not found: s1" in str(caught.value)
    assert "/api/v1/sessions/s1/commit" in str(caught.value)


def test_commit_returns_the_task_id_without_waiting() -> None:
    backend, seen = make(lambda r: envelope(200, result={"status": "accepted", "task_id": "t-1"}))
    assert backend.memcore_commit(S, attempt=1) == "t-1"
    assert len(seen) == 1


def test_bad_credentials_are_final_and_never_show_the_key() -> None:
    backend, _ = make(lambda r: envelope(401, "UNAUTHENTICATED", f"Invalid API key {KEY}"))
    with pytest.raises(HTTPStatusError) as caught:
        backend.memcore_write(S, [memcore.Message(role="user", content="hi")], key="k", attempt=1)
    assert caught.value.status_code == 401 and "UNAUTHENTICATED" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert not memcore.http.is_transient(caught.value)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_overload_and_server_errors_are_transient(status: int) -> None:
    backend, _ = make(lambda r: envelope(status, "INTERNAL", "queue full"))
    with pytest.raises(memcore.TransientError) as caught:
        backend.memcore_commit(S, attempt=1)
    assert str(status) in str(caught.value) and KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("Expecting value: line 1 column 1 (char 0)", True),  # seen in CI: .meta.json read while a commit wrote it
        ("Unterminated string starting at: line 1 column 9 (char 8)", True),
        ("token_budget must be greater than or equal to 0", False),
    ],
)
def test_a_read_of_a_file_the_server_is_rewriting_is_transient(message: str, transient: bool) -> None:
    """OpenViking answers 400 INVALID_ARGUMENT when it cannot parse a file of its own mid-write; a GET sends no
    JSON, so that 400 is the server's and passes, while any other 400 stays final. A later write attempt reads the
    session back first: it must be retried, not fail for good."""
    backend, _ = make(lambda r: envelope(400, "INVALID_ARGUMENT", message))
    expected = memcore.TransientError if transient else HTTPStatusError
    with pytest.raises(expected):
        backend.memcore_write(S, [memcore.Message(role="user", content="hi")], key="k", attempt=2)
    with pytest.raises(expected):
        backend.memcore_history(S)


def test_an_error_envelope_on_200_is_final() -> None:
    body = {"status": "error", "result": None, "error": {"code": "INVALID_ARGUMENT", "message": "bad"}}
    backend, _ = make(lambda r: httpx.Response(200, json=body))
    with pytest.raises(HTTPStatusError, match="INVALID_ARGUMENT: bad"):
        backend.memcore_commit(S, attempt=1)


def test_an_unreachable_server_is_transient() -> None:
    backend = OpenVikingBackend(url="http://127.0.0.1:9", api_key=KEY, timeout=2)
    with pytest.raises(memcore.TransientError) as caught:
        backend.memcore_open_session(S)
    assert KEY not in str(caught.value)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    backend, _ = make(refuse)
    with pytest.raises(memcore.TransientError):
        backend.memcore_commit(S, attempt=1)


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
        backend.memcore_write(
            S, [memcore.Message(role="user", content=f"m{i}") for i in range(101)], key="k", attempt=1
        )
    assert seen == []


def test_tool_calls_become_tool_parts_and_come_back() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    odd = {"id": "c2", "type": "function", "function": {"name": "raw", "arguments": "not json"}}
    written = [
        memcore.Message(role="assistant", content="", tool_calls=(call, odd)),
        memcore.Message(role="tool", content='{"t": 21}', name="weather", tool_call_id="c1"),
    ]
    backend, seen = make(lambda r: envelope(200, result={}))
    backend.memcore_write(S, written, key="k1", attempt=1)
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
        ("a/b?c#d", "a%2Fb%3Fc#d", "a%252Fb%253Fc%23d"),
        ("a\\b", "a%5Cb", "a%255Cb"),
        ("c:x", "c%3Ax", "c%253Ax"),
        ("telegram:42", "telegram:42", "telegram%3A42"),
        ("{calendar:today}", "%7Bcalendar:today}", "%257Bcalendar%3Atoday%7D"),
        ("%3A%5C", "%253A%255C", "%25253A%25255C"),
        ("alice ", "alice%20", "alice%2520"),  # OpenViking strips trailing whitespace from some paths
        (" lead", " lead", "%20lead"),
        ("x\u3000", "x%E3%80%80", "x%25E3%2580%2580"),
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
    backend.memcore_commit(memcore.Session(id=sid), attempt=1)
    assert json.loads(seen[0].content) == {"session_id": stored}
    assert seen[1].url.raw_path == f"/api/v1/sessions/{wire}/commit".encode()


def test_a_session_id_too_long_for_a_directory_name_is_stored_as_its_hash() -> None:
    long, longer = "x" * 255, "x" * 255 + "y"
    assert encode_session_id(long) == long and decode_session_id(long) == long
    stored = encode_session_id(longer)
    assert stored == "%H" + hashlib.sha256(longer.encode()).hexdigest()
    assert encode_session_id("é" * 128).startswith("%H") and encode_session_id("é" * 127) == "é" * 127  # bytes count
    with pytest.raises(ValueError):
        decode_session_id(stored)


def test_recall_keeps_the_callers_level_2_memories_best_first_within_limit() -> None:
    hits = {
        "memories": [
            {"uri": "viking://user/alice/memories/events/e1.md", "level": 2, "score": 0.5, "abstract": "one"},
            {"uri": "viking://user/alice/memories/.overview.md", "level": 1, "score": 0.9, "abstract": "dir"},
            {"uri": "viking://user/alice/memories/events/e2.md", "level": 2, "score": 0.7, "abstract": "two"},
        ],
        "resources": [{"uri": "viking://resources/r.md", "level": 2, "score": 0.8, "abstract": "shared"}],
        "skills": [],
    }
    backend, seen = make(lambda r: envelope(200, result=hits))
    got = backend.memcore_recall("q", memcore.Session(id="a/b"), 5, None)
    assert [(r.text, r.score) for r in got] == [("two", 0.7), ("one", 0.5)]  # never the account-wide resources
    assert got[0].metadata["uri"] == "viking://user/alice/memories/events/e2.md"
    assert seen[0].url.path == "/api/v1/search/search"
    body = json.loads(seen[0].content)
    assert body["session_id"] == "a%2Fb" and body["target_uri"] == "viking://~/memories"
    assert len(backend.memcore_recall("q", None, 1, None)) == 1 and seen[1].url.path == "/api/v1/search/find"
    assert json.loads(seen[1].content)["target_uri"] == "viking://~/memories"


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
    assert [r.text for r in backend.memcore_recall("q", None, 2, None)] == ["fact 3", "fact 1"]


def test_notes_are_written_once_per_content_and_name_their_session() -> None:
    backend, seen = make(lambda r: envelope(200, result={}))
    note = memcore.Note(text="Prefers espresso", kind="preference")
    backend.memcore_remember(memcore.Session(id="s/1"), note)
    backend.memcore_remember(memcore.Session(id="s/1"), note)  # a retry: same uri, replaced
    bodies = [json.loads(r.content) for r in seen]
    assert bodies[0] == bodies[1] and bodies[0]["content"] == "Prefers espresso" and bodies[0]["wait"] is False
    assert bodies[0]["uri"].startswith("viking://~/memories/notes/s-")  # the caller's own, whoever that is
    canonical = bodies[0]["uri"].replace("viking://~/", "viking://user/alice/")
    hit = {"memories": [{"uri": canonical, "level": 2, "score": 1.0, "abstract": "Prefers espresso"}]}
    reader, _ = make(lambda r: envelope(200, result=hit))
    assert reader.memcore_recall("espresso", None, 3, None)[0].session_id == "s/1"


# -- users (trusted mode) -------------------------------------------------------------------------------------------


def trusted(handler: Handler, **settings: object) -> tuple[OpenVikingBackend, list[httpx.Request]]:
    return make(handler, auth_mode="trusted", **settings)


def test_trusted_mode_names_the_sessions_user_in_every_request() -> None:
    backend, seen = trusted(lambda r: envelope(200, result={}))
    assert backend.separates_users is True
    for user in (None, "bob", "bob smith"):
        session = memcore.Session(id="s1", user_id=user)
        backend.memcore_open_session(session)
        backend.memcore_write(session, [memcore.Message(role="user", content="hi")], key="k", attempt=1)
        backend.memcore_remember(session, memcore.Note(text="n"))
        backend.memcore_commit(session, attempt=1)
        backend.memcore_recall("q", session, 3, user)
        backend.memcore_recall("q", None, 3, user)
        backend.memcore_history(session)
    users = [r.headers["X-OpenViking-User"] for r in seen]
    n = len(users) // 3
    mapped = "_m-" + hashlib.sha256(b"bob smith").hexdigest()
    assert users == ["alice"] * n + ["bob"] * n + [mapped] * n  # the default user is the configured one
    assert {r.headers["X-OpenViking-Account"] for r in seen} == {"acme"}
    assert all(len(r.headers.get_list("X-OpenViking-User")) == 1 for r in seen)


def test_trusted_mode_defaults_to_the_default_account_and_user() -> None:
    backend, seen = trusted(lambda r: envelope(200, result={}), account="", user="")
    backend.memcore_open_session(S)
    assert (seen[0].headers["X-OpenViking-Account"], seen[0].headers["X-OpenViking-User"]) == ("default", "default")


def test_one_key_keeps_one_user_so_memcore_refuses_named_users() -> None:
    backend, _ = make(lambda r: envelope(200, result={}))
    assert backend.separates_users is False and backend.auth_mode == "api_key"
    with (
        memcore.Memory(backends=[backend], plugins=[], journal=False) as memory,
        pytest.raises(memcore.UsersNotSeparated),
    ):
        memory.lifecycle("s1", user_id="bob")


@pytest.mark.parametrize(
    "group",
    [
        ("alice", "Alice", "alice ", " alice", "\uff41lice", "alice\u200b"),
        ("/", "%2F", "%252F", "a/b", "a%2Fb"),
        (".", "..", "...", "../other", "other"),
        ("u" * 255, "u" * 256),
        ("a@b", "a@b@c", "a@@b"),
        ("default", "alice"),  # the default user's own name, as a named user, is another user
        ("x", "_m-" + hashlib.sha256(b"x").hexdigest(), "_m-x"),  # a raw id cannot pose as a mapped one
    ],
)
def test_user_ids_map_to_distinct_ids_openviking_takes(group: tuple[str, ...]) -> None:
    mapped = [openviking_user_id(u, "alice") for u in group]
    assert len(set(mapped)) == len(group), dict(zip(group, mapped, strict=True))
    assert "alice" not in mapped and all(is_openviking_id(m) for m in mapped)
    for user, wire in zip(group, mapped, strict=True):
        plain = is_openviking_id(user) and not user.startswith("_m-") and user != "alice"
        assert (wire == user) is plain, (user, wire)


@pytest.mark.parametrize(
    "settings",
    [
        {"auth_mode": "trusted", "api_key": ""},
        {"auth_mode": "sometimes"},
        {"account": "_system"},
        {"account": "a b"},
        {"user": "a\nX-Evil: 1"},
        {"user": "_m-abc", "auth_mode": "trusted"},
        {"agent": "a/b"},
    ],
)
def test_settings_openviking_cannot_take_are_refused_at_once(settings: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        OpenVikingBackend(url="http://ov.test", **{"api_key": KEY, **settings})


def test_a_request_httpx_cannot_send_fails_for_good_not_as_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError("Illegal header value")

    backend, _ = make(refuse)
    with pytest.raises(ValueError, match="cannot be sent") as caught:
        backend.memcore_commit(S, attempt=1)
    assert not memcore.http.is_transient(caught.value)


def test_a_server_that_ignores_the_user_header_is_caught_when_a_session_opens() -> None:
    answer = {"session_id": "s1", "user": {"account_id": "acme", "user_id": "key-owner"}}
    backend, _ = trusted(lambda r: envelope(200, result=answer))
    with pytest.raises(RuntimeError, match="api_key mode"):
        backend.memcore_open_session(memcore.Session(id="s1", user_id="bob"))


# -- exactly once ---------------------------------------------------------------------------------------------------


def test_every_message_of_a_write_carries_its_key_as_turn_id() -> None:
    backend, seen = make(lambda r: envelope(200, result={}))
    two = [memcore.Message(role="user", content="a"), memcore.Message(role="assistant", content="b")]
    backend.memcore_write(S, two, key="origin:7", attempt=1)
    assert [m["turn_id"] for m in json.loads(seen[0].content)["messages"]] == ["memcore:origin:7"] * 2
    assert len(seen) == 1  # a first attempt reads nothing back


def _session_serving(context: list[dict[str, object]], archives: dict[str, list[dict[str, object]]]) -> Handler:
    def serve(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/context"):
            return envelope(200, result={"messages": context, "stats": {"totalArchives": len(archives)}})
        name = path.rsplit("/", 1)[-1]
        if "/archives/" in path:
            if archives.get(name) is None:
                return envelope(404, "NOT_FOUND", f"Archive {name} not found")
            return envelope(200, result={"messages": archives[name]})
        return envelope(200, result={})

    return serve


@pytest.mark.parametrize(
    ("context", "archives", "posted"),
    [
        ([], {}, True),  # not there: the earlier attempt did not land
        ([{"id": "m1", "turn_id": "memcore:k"}], {}, False),  # live
        ([{"id": "m1", "turn_id": "memcore:other"}], {}, True),
        ([], {"archive_001": [{"id": "m1", "turn_id": "memcore:k"}]}, False),  # committed meanwhile
        ([{"id": "m1", "turn_id": "memcore:k"}], {"archive_001": None}, False),  # committed, being extracted
    ],
)
def test_a_later_attempt_posts_only_what_is_not_there(
    context: list[dict[str, object]], archives: dict[str, list[dict[str, object]]], posted: bool
) -> None:
    backend, seen = make(_session_serving(context, archives))
    backend.memcore_write(S, [memcore.Message(role="user", content="hi")], key="k", attempt=2)
    assert any(r.url.path.endswith("/messages/batch") for r in seen) is posted


@pytest.mark.parametrize(("live", "posted"), [(0, False), (3, True)])
def test_a_later_commit_attempt_commits_only_live_messages(live: int, posted: bool) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return envelope(200, result={"message_count": live, "commit_count": 1})
        return envelope(200, result={"status": "accepted", "task_id": "t-2"})

    backend, seen = make(serve)
    assert backend.memcore_commit(S, attempt=2) == ("t-2" if posted else None)
    assert [r.method for r in seen] == ["GET", "POST"] if posted else ["GET"]


# -- forget ---------------------------------------------------------------------------------------------------------


def test_forget_waits_while_a_commit_of_its_scope_is_being_extracted() -> None:
    backend, seen = make(lambda r: envelope(200, result=[{"task_id": "t", "status": "running"}]))
    with pytest.raises(memcore.TransientError, match="still being extracted"):
        backend.memcore_forget(None, "s1")
    assert [r.method for r in seen] == ["GET"] and seen[0].url.params["resource_id"] == "s1"
    with pytest.raises(memcore.TransientError):
        backend.memcore_forget(None, None)


def test_forget_of_a_session_erases_what_its_archives_added_and_says_what_stays() -> None:
    diff = {
        "operations": {
            "adds": [{"uri": "viking://user/alice/memories/events/a.md"}],
            "updates": [{"uri": "viking://user/alice/memories/profile.md"}],
        }
    }
    notes = [
        {"uri": f"viking://user/alice/memories/notes/s-{b32('s/1')}-abc.md", "isDir": False},
        {"uri": f"viking://user/alice/memories/notes/s-{b32('s/10')}-abc.md", "isDir": False},  # another session's
    ]

    def serve(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/tasks"):
            return envelope(200, result=[{"status": "completed", "result": {"memories_extracted": {"x": 1}}}])
        if path.endswith("/context"):
            return envelope(200, result={"messages": [], "stats": {"totalArchives": 1}})
        if path.endswith("/content/read"):
            return envelope(200, result=json.dumps(diff))
        if path.endswith("/fs/ls"):
            return envelope(200, result=notes)
        return envelope(200, result={"estimated_deleted_count": 1})

    backend, seen = make(serve)
    kept = backend.memcore_forget(None, "s/1")
    read = next(r for r in seen if r.url.path.endswith("/content/read"))
    assert read.url.params["uri"] == "viking://~/sessions/s%2F1/history/archive_001/memory_diff.json"
    removed = [
        (r.method, r.url.raw_path.decode().split("?")[0], r.url.params.get("uri")) for r in seen if r.method == "DELETE"
    ]
    assert removed == [
        ("DELETE", "/api/v1/fs", "viking://user/alice/memories/events/a.md"),
        ("DELETE", "/api/v1/fs", notes[0]["uri"]),
        ("DELETE", "/api/v1/sessions/s%252F1", None),  # the session last: a retry still finds what to erase
    ]
    assert kept is not None and "profile.md" in kept and "vector store" in kept


def b32(session_id: str) -> str:
    return base64.b32encode(session_id.encode()).decode().rstrip("=").lower()


def test_forget_of_nothing_keeps_nothing() -> None:
    backend, _ = make(
        lambda r: envelope(404, "NOT_FOUND", "not found") if "/tasks" not in r.url.path else envelope(200, result=[])
    )
    assert backend.memcore_forget(None, "never") is None
    assert backend.memcore_forget("nobody", None) is None

"""Unit tests on httpx.MockTransport: the wire format, ids, users, retries by key, rewind, forget, errors, secrets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import memcore
import pytest
from memcore.http import HTTPStatusError

from memcore_hindsight import HindsightBackend, decode_id, encode_id

KEY = "hs-very-secret-key-123"
Handler = Callable[[httpx.Request], httpx.Response]
S = memcore.Session(id="s1")
TURN = [memcore.Message(role="user", content="hi"), memcore.Message(role="assistant", content="hello")]


def make(handler: Handler, **settings: Any) -> tuple[HindsightBackend, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return handler(request)

    options = {"url": "http://hs.test", "api_key": KEY, **settings}
    return HindsightBackend(transport=httpx.MockTransport(record), **options), seen


def document(*turns: tuple[str, list[str]]) -> httpx.Response:
    messages = [{"role": "user", "content": text, "turn": key} for key, texts in turns for text in texts]
    return httpx.Response(200, json={"id": "s1", "original_text": json.dumps(messages)})


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_a_write_appends_the_turn_to_the_session_document_synchronously() -> None:
    backend, seen = make(lambda r: httpx.Response(200, json={"success": True}))
    backend.memcore_write(S, TURN, key="o:1", attempt=1)
    (request,) = seen
    assert (request.method, request.url.path) == ("POST", "/v1/default/banks/memcore/memories")
    assert request.headers["Authorization"] == f"Bearer {KEY}" and KEY not in repr(backend)
    sent = body(request)
    assert sent["async"] is False
    (item,) = sent["items"]
    assert item["document_id"] == "s1" and item["update_mode"] == "append" and item["tags"] == ["session:s1"]
    assert json.loads(item["content"]) == [
        {"role": "user", "content": "hi", "turn": "o:1"},
        {"role": "assistant", "content": "hello", "turn": "o:1"},
    ]


def test_a_retry_whose_turn_already_landed_sends_nothing() -> None:
    backend, seen = make(lambda r: document(("o:1", ["a"]), ("o:2", ["hi", "hello"])))
    backend.memcore_write(S, TURN, key="o:2", attempt=2)
    assert [r.method for r in seen] == ["GET"]


@pytest.mark.parametrize("stored", [None, [("o:1", ["a"])]])
def test_a_retry_whose_turn_did_not_land_sends_it(stored: list[tuple[str, list[str]]] | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return document(*stored) if stored else httpx.Response(404, json={"detail": "Document not found"})
        return httpx.Response(200, json={"success": True})

    backend, seen = make(handler)
    backend.memcore_write(S, TURN, key="o:2", attempt=2)
    assert [r.method for r in seen] == ["GET", "POST"]


def test_tool_calls_round_trip_through_the_document() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    messages = [
        memcore.Message(role="assistant", content="", tool_calls=(call,)),
        memcore.Message(role="tool", content="42", name="f", tool_call_id="c1"),
    ]
    backend, seen = make(lambda r: httpx.Response(200, json={"success": True}))
    backend.memcore_write(S, messages, key="k", attempt=1)
    stored = body(seen[0])["items"][0]["content"]
    reader, _ = make(lambda r: httpx.Response(200, json={"original_text": stored}))
    assert list(reader.memcore_history(S)) == messages


@pytest.mark.parametrize("raw", ["a/b", "..", ".", "%2F", "%", "x/chunks", "🧠", "a%2Fb/c"])
def test_ids_encode_reversibly_without_slashes_or_dot_segments(raw: str) -> None:
    encoded = encode_id(raw)
    assert "/" not in encoded and encoded not in (".", "..") and decode_id(encoded) == raw


def test_ids_stay_in_one_path_segment_and_users_get_banks_of_their_own() -> None:
    backend, seen = make(lambda r: httpx.Response(404, json={"detail": "Document not found"}))
    assert backend.memcore_history(memcore.Session(id="x/chunks", user_id="u/1")) == []
    assert seen[0].url.raw_path == b"/v1/default/banks/memcore--u%252F1/documents/x%252Fchunks"


def test_a_user_id_too_long_for_a_bank_id_gets_a_hashed_bank() -> None:
    backend, seen = make(lambda r: httpx.Response(404, json={"detail": "Document not found"}))
    for user in ("u" * 256, "ü" * 100, "u" * 183):
        backend.memcore_history(memcore.Session(id="s", user_id=user))
    banks = [r.url.path.split("/")[4] for r in seen]
    assert [len(b.encode()) for b in banks] == [75, 75, 192]
    assert banks[0].startswith("memcore--%H") and banks[0] != banks[1] and banks[2] == "memcore--" + "u" * 183


def test_notes_are_items_of_their_own_with_the_kind_as_context_and_a_key_derived_id() -> None:
    backend, seen = make(lambda r: httpx.Response(200, json={"success": True}))
    note = memcore.Note(text="likes tea", kind="preference", metadata={"n": 1, "s": "x"})
    backend.memcore_remember(S, note, key="o:3")
    backend.memcore_remember(S, note, key="o:3")
    items = [body(r)["items"][0] for r in seen]
    assert items[0] == items[1]
    assert items[0]["content"] == "likes tea" and items[0]["context"] == "preference"
    assert items[0]["metadata"] == {"n": "1", "s": "x", "kind": "preference"}
    assert items[0]["tags"] == ["session:s1", "memcore:note"] and items[0]["document_id"].startswith("note-")


def test_recall_labels_sessions_cuts_to_limit_and_scopes_only_when_asked() -> None:
    results = [
        {"id": "1", "text": "fact one", "type": "world", "tags": ["session:a/b"], "scores": {"final": 0.9}},
        {"id": "2", "text": "fact one", "type": "world", "tags": ["session:c"]},
        {"id": "3", "text": "a note", "type": "world", "context": "preference", "tags": ["session:c", "memcore:note"]},
        {"id": "4", "text": "observed", "type": "observation", "tags": []},
    ]
    backend, seen = make(lambda r: httpx.Response(200, json={"results": results}))
    got = backend.memcore_recall("q", S, 3, None)
    assert [(r.text, r.session_id, r.score) for r in got] == [
        ("fact one", "a/b", 0.9),
        ("a note", "c", None),
        ("observed", None, None),
    ]
    assert got[1].metadata["origin"] == "note" and got[1].metadata["kind"] == "preference"
    assert "tags" not in body(seen[0])
    scoped, seen = make(lambda r: httpx.Response(200, json={"results": []}), scoped_recall=True)
    scoped.memcore_recall("q", S, 3, "u")
    assert seen[0].url.path == "/v1/default/banks/memcore--u/memories/recall"
    assert body(seen[0])["tags"] == ["session:s1"] and body(seen[0])["tags_match"] == "all_strict"


def test_recall_in_a_bank_never_written_is_empty() -> None:
    backend, _ = make(lambda r: httpx.Response(404, json={"detail": "Bank 'memcore' not found"}))
    assert backend.memcore_recall("q", None, 5, None) == []


def test_commit_queues_a_consolidation_and_returns_its_operation() -> None:
    backend, seen = make(lambda r: httpx.Response(200, json={"operation_id": "op-1", "deduplicated": False}))
    assert backend.memcore_commit(S) == "op-1"
    assert (seen[0].method, seen[0].url.path) == ("POST", "/v1/default/banks/memcore/consolidate")


def test_rewind_retains_the_document_without_its_last_turns() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return document(("k1", ["a", "b"]), ("k2", ["c", "d"]), ("k3", ["e"]))
        return httpx.Response(200, json={"success": True})

    backend, seen = make(handler)
    backend.memcore_rewind(S, 2)
    item = body(seen[1])["items"][0]
    assert item["update_mode"] == "replace" and [m["content"] for m in json.loads(item["content"])] == ["a", "b"]
    backend.memcore_rewind(S, 3)
    assert (seen[3].method, seen[3].url.path) == ("DELETE", "/v1/default/banks/memcore/documents/s1")


def test_forget_a_user_deletes_the_bank_and_a_session_its_documents() -> None:
    listed = [[{"id": "s%2F1"}, {"id": "note-abc"}], []]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"items": listed.pop(0)})
        return httpx.Response(200, json={"success": True})

    backend, seen = make(handler)
    assert backend.memcore_forget("u", None) is None
    assert (seen[0].method, seen[0].url.raw_path) == ("DELETE", b"/v1/default/banks/memcore--u")
    kept = backend.memcore_forget(None, "s/1")
    assert kept and "llm-requests" in kept
    assert seen[1].url.params.get_list("tags") == ["session:s/1"]
    assert [r.url.raw_path for r in seen[2:4]] == [
        b"/v1/default/banks/memcore/documents/s%252F1",
        b"/v1/default/banks/memcore/documents/note-abc",
    ]


def test_errors_carry_hindsight_detail_never_the_key() -> None:
    backend, _ = make(lambda r: httpx.Response(400, json={"detail": f"bad request from {KEY}"}))
    with pytest.raises(HTTPStatusError) as caught:
        backend.memcore_write(S, TURN, key="k", attempt=1)
    assert caught.value.status_code == 400 and "bad request" in str(caught.value) and KEY not in str(caught.value)
    busy, _ = make(lambda r: httpx.Response(503, json={"detail": "busy"}))
    with pytest.raises(memcore.TransientError):
        busy.memcore_commit(S)


def test_settings_come_from_the_environment_and_bad_banks_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HINDSIGHT_API_URL", "http://env.test:8888")
    monkeypatch.setenv("HINDSIGHT_API_KEY", KEY)
    backend = HindsightBackend()
    assert backend.url == "http://env.test:8888" and KEY not in repr(backend) and KEY not in backend.journal_key
    for bad in ("", "a/b", "..", "_x", "b" * 125):
        with pytest.raises(ValueError):
            HindsightBackend(bank=bad)

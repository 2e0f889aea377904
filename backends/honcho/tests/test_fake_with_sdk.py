"""The fake Honcho server driven by Honcho's own SDK (honcho-ai 2.7.0): every call below is the SDK's, so a request
the fake does not understand, or an answer the SDK's models refuse, fails here. Then the responses the fake gave are
checked against the schemas of Honcho's OpenAPI description."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

# honcho-ai 2.7.0 (the test extra): without it this module fails to import, a failure, never a skip
from honcho import Honcho
from honcho.http.exceptions import NotFoundError, ServerError, UnprocessableEntityError
from memcore.http import FaultInjector, FaultTransport
from support.fake_honcho import FakeHoncho

#: Honcho's OpenAPI description (server 3.0.12), kept beside the fake; MEMCORE_HONCHO_OPENAPI names another
SPEC = Path(
    os.environ.get("MEMCORE_HONCHO_OPENAPI") or Path(__file__).resolve().parent / "support" / "honcho-openapi.json"
)


def _client(fake: FakeHoncho, workspace: str, transport: httpx.BaseTransport | None = None, **kw: Any) -> Honcho:
    http = httpx.Client(base_url=fake.url, transport=transport or httpx.HTTPTransport(), timeout=10)
    return Honcho(base_url=fake.url, workspace_id=workspace, http_client=http, **kw)


def test_the_sdk_round_trip(fake_honcho: FakeHoncho, workspace: str) -> None:
    client = _client(fake_honcho, workspace)
    alice, bot = client.peer("alice", metadata={"name": "Alice"}), client.peer("bot")
    assert alice.get_metadata() == {"name": "Alice"}
    assert {p.id for p in client.peers()} == {"alice", "bot"}
    session = client.session("s-1", metadata={"topic": "coffee"}, peers=[alice, bot])
    assert session.is_active and session.get_metadata() == {"topic": "coffee"}
    assert {p.id for p in session.peers()} == {"alice", "bot"}

    added = session.add_messages(
        [
            alice.message("I take my espresso at seven", metadata={"turn": 1}),
            bot.message("Noted: espresso at seven"),
            alice.message("And tea in the afternoon"),
        ]
    )
    assert [m.content for m in added] == [
        "I take my espresso at seven",
        "Noted: espresso at seven",
        "And tea in the afternoon",
    ]
    listed = list(session.messages())
    assert [m.id for m in listed] == [m.id for m in added]
    assert [m.peer_id for m in listed] == ["alice", "bot", "alice"] and listed[0].metadata == {"turn": 1}
    assert [m.id for m in session.messages(reverse=True, size=1)][:1] == [added[-1].id]
    assert [m.id for m in session.messages(filters={"peer_id": "bot"})] == [added[1].id]
    assert [m.id for m in session.messages(filters={"metadata": {"turn": 1}})] == [added[0].id]
    assert session.get_message(added[0].id).content == "I take my espresso at seven"
    updated = session.update_message(added[0].id, {"turn": 1, "seen": True})
    assert updated.metadata == {"turn": 1, "seen": True}

    found = client.search("espresso", limit=5)
    assert found and found[0].content in {"I take my espresso at seven", "Noted: espresso at seven"}
    assert all(m.session_id == "s-1" for m in found)
    assert [m.content for m in session.search("afternoon tea", limit=1)] == ["And tea in the afternoon"]
    assert {m.peer_id for m in alice.search("espresso")} == {"alice"}
    assert [s.id for s in client.sessions()] == ["s-1"]
    assert [s.id for s in alice.sessions()] == ["s-1"]
    context = session.context()
    assert [m.id for m in context.messages] == [m.id for m in added]
    assert client.queue_status().pending_work_units == 0
    client.schedule_dream(observer="alice", session="s-1")
    assert fake_honcho.dreams[-1]["observer"] == "alice" and fake_honcho.dreams[-1]["session_id"] == "s-1"

    view = alice.conclusions
    made = view.create([{"content": "Alice drinks espresso at seven", "session_id": "s-1"}])
    assert [c.content for c in view.list()] == ["Alice drinks espresso at seven"]
    assert [c.id for c in view.query("espresso", top_k=3)] == [made[0].id]
    view.delete(made[0].id)
    assert list(view.list()) == []

    session.delete()
    with pytest.raises(NotFoundError):  # inactive at once: get-or-create refuses it while it is being deleted
        client.session("s-1", metadata={"again": True})
    fake_honcho.settle()
    assert list(session.messages()) == [] and list(client.sessions()) == []
    assert client.session("s-1").is_active  # deleted for good: the id can be used again
    client.session("s-1").delete()
    fake_honcho.settle()
    client.delete_workspace(workspace)
    fake_honcho.settle()
    assert workspace not in fake_honcho.workspaces


def test_documented_errors_reach_the_sdk(fake_honcho: FakeHoncho, workspace: str) -> None:
    client = _client(fake_honcho, workspace, max_retries=0)
    with pytest.raises(UnprocessableEntityError):
        client.session("not/a valid id")
    session = client.session("s", peers=["alice"])
    with pytest.raises(UnprocessableEntityError):
        session.add_messages(client.peer("alice").message("x" * 25_001))
    with pytest.raises(NotFoundError):
        session.get_message("no-such-message")
    with pytest.raises(Exception, match="active sessions"):  # 409 Conflict: delete the sessions first
        client.delete_workspace(workspace)


def test_faults_under_the_sdk(fake_honcho: FakeHoncho, workspace: str) -> None:
    """memcore.http's fault transport under the SDK's own client: it retries 503s itself, and without retries the
    error is the SDK's ServerError."""
    faults = FaultInjector()
    rule = faults.add("status", status=503, times=2, retry_after=0)
    client = _client(fake_honcho, workspace, FaultTransport(httpx.HTTPTransport(), faults))
    session = client.session("s", peers=["alice"])
    assert rule is not None and faults.faulted["status"] == 2
    session.add_messages(client.peer("alice").message("after two 503s"))
    assert [m.content for m in session.messages()] == ["after two 503s"]
    strict = _client(fake_honcho, workspace, FaultTransport(httpx.HTTPTransport(), faults), max_retries=0)
    faults.add("status", status=503, times=1)
    with pytest.raises(ServerError):
        strict.session("s")


# -- the fake's answers against the OpenAPI description -----------------------------------------------------------


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _conforms(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> list[str]:
    """The subset of JSON Schema Honcho's description uses: type, properties, required, items, anyOf, enum."""
    schema = _resolve(spec, schema)
    if "anyOf" in schema:
        tries = [_conforms(spec, s, value, where) for s in schema["anyOf"]]
        return [] if any(not t for t in tries) else [f"{where}: matches no anyOf branch: {tries}"]
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool, "null": type(None)}
    if kind == "number" and not isinstance(value, (int, float)):
        return [f"{where}: not a number"]
    if kind in types and (not isinstance(value, types[kind]) or (kind == "integer" and isinstance(value, bool))):
        return [f"{where}: {type(value).__name__}, not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    errors: list[str] = []
    if kind == "object":
        errors += [f"{where}: lacks {k!r}" for k in schema.get("required", ()) if k not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += _conforms(spec, sub, value[key], f"{where}.{key}")
    if kind == "array":
        for i, item in enumerate(value):
            errors += _conforms(spec, schema.get("items", {}), item, f"{where}[{i}]")
    return errors


def test_every_answer_the_fake_gave_follows_the_description(fake_honcho: FakeHoncho) -> None:
    """Every response the fake gave in this test session (the SDK's and memcore-honcho's calls, when run with the
    others) is on a documented path and method, with a documented status, and its body fits that status's schema."""
    assert SPEC.exists(), f"Honcho's OpenAPI description is not at {SPEC}"
    spec = json.loads(SPEC.read_text())
    templates = [
        (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path, ops) for path, ops in spec["paths"].items()
    ]
    client = _client(fake_honcho, f"t{uuid.uuid4().hex[:8]}")  # at least these, when run alone
    client.session("s", peers=["p"]).add_messages(client.peer("p").message("hello"))
    client.search("hello")
    problems: list[str] = []
    for method, raw_path, status, body in list(fake_honcho.responses):
        if status in (401, 404, 405) and not any(t.match(raw_path) for t, _, _ in templates):
            continue
        found = [(path, ops) for t, path, ops in templates if t.match(raw_path) and method.lower() in ops]
        # a literal segment (list, search) beats a parameter: /sessions/list is not /sessions/{session_id}
        found.sort(key=lambda f: f[0].count("{"))
        if not found:
            problems.append(f"{method} {raw_path}: no such operation in the description")
            continue
        path, ops = found[0]
        responses = ops[method.lower()]["responses"]
        documented = responses.get(str(status))
        if documented is None:
            if status in (400, 404, 409) and isinstance(body, dict) and isinstance(body.get("detail"), str):
                continue  # Honcho's own errors (HonchoException: {"detail": str}); the description lists 422 only
            problems.append(f"{method} {path}: status {status} is not documented ({sorted(responses)})")
            continue
        schema = (documented.get("content") or {}).get("application/json", {}).get("schema")
        if schema:
            problems += _conforms(spec, schema, body, f"{method} {path} {status}")
    assert not problems, "\n".join(problems[:20])


def test_workspace_handles_the_sdk_uses_are_in_the_description() -> None:
    """The SDK's routes (honcho.http.routes) all name operations of the description the fake follows."""
    assert SPEC.exists(), f"Honcho's OpenAPI description is not at {SPEC}"
    from honcho.http import routes

    spec = json.loads(SPEC.read_text())
    documented = {re.sub(r"\{[^}]+\}", "{}", path) for path in spec["paths"]}
    used = {
        re.sub(r"\{[^}]+\}", "{}", getattr(routes, name)(*["{x}"] * getattr(routes, name).__code__.co_argcount))
        for name in dir(routes)
        if callable(getattr(routes, name)) and not name.startswith("_")
    }
    # the SDK also knows /chat of a workspace, which 3.0.12's description does not have
    assert used - documented <= {"/v3/workspaces/{}/chat"}, used - documented

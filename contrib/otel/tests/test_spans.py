"""Spans: one per backend call, on a real memcore.Memory over the SQLite backend."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import memcore
import pytest
from conftest import Telemetry
from memcore import Message, Note, Session, SQLiteBackend
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from memcore_otel import OtelObserver

TEXTS = (
    "I take my espresso at 7",
    "Noted: espresso at 7.",
    "Prefers espresso in the morning",
    "When is the Tidewatch beta due?",
    "Friday, the 14th.",
    "espresso",
)
USER = "alice@example.com"
SESSIONS = ("chat-monday", "chat-tuesday")


def conversation(memory: memcore.Memory) -> list[memcore.Recollection]:
    """One conversation: two turns and a note, a switch to a new session (which commits the first), a recall."""
    lc = memory.lifecycle(SESSIONS[0], user_id=USER)
    lc.sync_turn(TEXTS[0], TEXTS[1])
    lc.remember(TEXTS[2], kind="preference")
    lc.sync_turn(TEXTS[3], TEXTS[4])
    lc.switch(SESSIONS[1], reason="new")
    assert memory.flush(timeout=10).ok
    found = lc.recall(TEXTS[5], limit=3, timeout=5)
    assert memory.close(timeout=10).ok
    return found


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def everything_sent(otel: Telemetry) -> str:
    """Every span name, attribute key and value, event and status text, and every metric attribute, as one text."""
    parts: list[str] = []
    for span in otel.exporter.get_finished_spans():
        parts += [span.name, repr(attrs(span)), repr(span.status.description)]
        parts += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
        parts += [repr(dict(link.attributes or {})) for link in span.links]
    data = otel.reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                parts += [metric.name] + [repr(dict(p.attributes or {})) for p in metric.data.data_points]
    return "\n".join(parts)


def test_one_conversation_gives_a_span_per_backend_call(otel, make_memory):
    memory = make_memory(plugins=[otel.observer()])
    found = conversation(memory)
    assert found, "the SQLite store recalls the committed turns and the note"

    spans = otel.spans()
    ops = [attrs(s)["memcore.operation"] for s in spans]
    assert sorted(ops) == sorted(["open_session", "write", "remember", "write", "commit", "recall"])
    assert ops.index("open_session") < ops.index("write") < ops.index("commit")
    for span in spans:
        a = attrs(span)
        assert span.kind is SpanKind.CLIENT
        assert span.name == a["gen_ai.operation.name"]
        assert a["memcore.backend"] == a["gen_ai.memory.store.id"] == "sqlite"
        assert span.status.status_code is StatusCode.UNSET
        assert span.start_time is not None and span.end_time is not None and span.end_time >= span.start_time

    by_op = {attrs(s)["memcore.operation"]: attrs(s) for s in spans}
    assert by_op["open_session"]["memcore.outcome"] == "ok"
    writes = [attrs(s) for s in otel.spans("write")]
    assert [w["memcore.outcome"] for w in writes] == ["delivered", "delivered"]
    assert [w["memcore.attempt"] for w in writes] == [1, 1]
    assert [w["gen_ai.memory.record.count"] for w in writes] == [2, 2]
    assert {w["gen_ai.operation.name"] for w in writes} == {"create_memory"}
    assert by_op["remember"]["gen_ai.operation.name"] == "create_memory"
    assert by_op["remember"]["memcore.outcome"] == "delivered"
    assert by_op["commit"]["gen_ai.operation.name"] == "upsert_memory"
    assert by_op["commit"]["memcore.outcome"] == "committed" and by_op["commit"]["memcore.attempt"] == 1
    assert by_op["recall"]["gen_ai.operation.name"] == "search_memory"
    assert by_op["recall"]["memcore.outcome"] == "ok"
    assert by_op["recall"]["gen_ai.memory.record.count"] == len(found)

    # Hashed ids by default: one session, one hash; the other session another; the user's on every span.
    conversations = {a.get("gen_ai.conversation.id") for a in map(attrs, spans)}
    assert len(conversations) == 2 and all(isinstance(c, str) and len(c) == 16 for c in conversations)
    assert {a["user.hash"] for a in map(attrs, spans)} == {otel_hash(USER)}
    assert all("user.id" not in attrs(s) for s in spans)

    sent = everything_sent(otel)
    for secret in (*TEXTS, USER, *SESSIONS, "preference"):
        assert secret not in sent, f"{secret!r} was sent"

    out = os.environ.get("MEMCORE_OTEL_EXAMPLE")
    if out:  # docs/observability.md's example is this test's output
        Path(out).write_text(render(otel), encoding="utf-8")


def otel_hash(value: str) -> str:
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()[:16]


def render(otel: Telemetry) -> str:
    """The spans and metrics of a run, as docs/observability.md shows them."""
    spans = otel.spans()
    index = {s.context.span_id: n for n, s in enumerate(spans)}
    lines = ["spans (in the order they started; ms = the call's duration):"]
    for n, span in enumerate(spans):
        parent = index.get(span.parent.span_id) if span.parent is not None else None
        a = attrs(span)
        ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        head = f"{n}  {span.name:<14} {span.kind.name:<6} {ms:6.2f} ms  parent={parent if parent is not None else '-'}"
        lines.append(head)
        lines.append("   " + json.dumps(a, sort_keys=True))
    lines.append("")
    lines.append("metrics:")
    data = otel.reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                lines.append(f"{metric.name} ({metric.unit}, {type(metric.data).__name__})")
                for p in metric.data.data_points:
                    value = getattr(p, "value", None)
                    shown = f"{value}" if value is not None else f"count={p.count} sum={p.sum * 1000:.2f} ms"
                    lines.append(f"   {json.dumps(dict(p.attributes or {}), sort_keys=True)}  {shown}")
    return "\n".join(lines) + "\n"


def test_raw_ids_send_the_session_and_user_as_they_are(otel, make_memory):
    memory = make_memory(plugins=[otel.observer(ids="raw")])
    conversation(memory)
    spans = otel.spans()
    assert {attrs(s).get("gen_ai.conversation.id") for s in spans} == set(SESSIONS)
    assert {attrs(s).get("user.id") for s in spans} == {USER}
    assert all("user.hash" not in attrs(s) for s in spans)
    sent = everything_sent(otel)
    for text in TEXTS:
        assert text not in sent  # raw ids, never content


def test_omit_sends_no_ids(otel, make_memory):
    memory = make_memory(plugins=[otel.observer(ids="omit")])
    conversation(memory)
    for span in otel.spans():
        assert not {"gen_ai.conversation.id", "user.id", "user.hash"} & set(attrs(span))


def test_id_key_and_settings_from_the_environment(otel, make_memory, monkeypatch):
    monkeypatch.setenv("MEMCORE_OTEL_IDS", "hash")
    monkeypatch.setenv("MEMCORE_OTEL_ID_KEY", "k3y")
    observer = otel.observer()
    assert observer.ids == "hash"
    memory = make_memory(plugins=[observer])
    memory.lifecycle("s1").sync_turn("hello", "hi")
    memory.close(timeout=10)
    import hashlib
    import hmac

    keyed = hmac.new(b"k3y", b"s1", hashlib.sha256).hexdigest()[:16]
    assert {attrs(s)["gen_ai.conversation.id"] for s in otel.spans()} == {keyed}
    assert keyed != otel_hash("s1")
    monkeypatch.setenv("MEMCORE_OTEL_IDS", "plain")
    with pytest.raises(ValueError, match="ids must be one of"):
        otel.observer()


# -- retries and failures -------------------------------------------------------------------------------------------

SECRET = "sk-live-0123456789"


class Flaky(SQLiteBackend):
    """The embedded store; its first write fails transiently, every note for good, with a secret in the error."""

    def __init__(self, path: Path) -> None:
        super().__init__(path=path)
        self.failed_once = False

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message], key: str, attempt: int) -> None:
        if not self.failed_once:
            self.failed_once = True
            raise memcore.TransientError(f"503 from https://memory.example/?api_key={SECRET}")
        super().memcore_write(session=session, messages=messages, key=key, attempt=attempt)

    @memcore.hookimpl
    def memcore_remember(self, session: Session, note: Note, key: str, attempt: int) -> None:
        raise ValueError(f"422: note {note.text!r} refused (token {SECRET})")


def test_a_retry_and_a_failure(otel, make_memory, tmp_path):
    memory = make_memory(
        Flaky(tmp_path / "store.sqlite3"),
        plugins=[otel.observer()],
        retry=memcore.RetryPolicy(initial=0.01, jitter=0.0),
    )
    lc = memory.lifecycle("s1")
    lc.sync_turn("first turn text", "a")
    lc.remember("a private note", kind="fact")
    report = memory.close(timeout=10)
    assert report.retried == 1 and report.failed == 1 and report.delivered == 1

    first, second = (attrs(s) for s in otel.spans("write"))
    assert first["memcore.attempt"] == 1 and first["memcore.outcome"] == "retried"
    assert first["error.type"] == "memcore._errors.TransientError"
    assert second["memcore.attempt"] == 2 and second["memcore.outcome"] == "delivered"
    assert "error.type" not in second
    (note,) = otel.spans("remember")
    assert attrs(note)["memcore.outcome"] == "failed" and attrs(note)["error.type"] == "ValueError"
    assert note.status.status_code is StatusCode.ERROR and not note.status.description
    assert not note.events  # no exception event: its message could quote content or a secret
    (first_span,) = [s for s in otel.spans("write") if attrs(s)["memcore.attempt"] == 1]
    assert first_span.status.status_code is StatusCode.ERROR

    counts = otel.counts()
    assert counts[("sqlite", "write", "retried")] == 1
    assert counts[("sqlite", "write", "delivered")] == 1
    assert counts[("sqlite", "remember", "failed")] == 1
    assert counts[("sqlite", "commit", "committed")] == 1
    sent = everything_sent(otel)
    for secret in (SECRET, "a private note", "first turn text", "memory.example"):
        assert secret not in sent


class NoOpen(SQLiteBackend):
    """Its session can never be opened."""

    @memcore.hookimpl
    def memcore_open_session(self, session: Session) -> None:
        raise PermissionError("no such tenant")


def test_a_failed_open_is_its_own_span_and_fails_the_operation(otel, make_memory, tmp_path):
    memory = make_memory(NoOpen(path=tmp_path / "s.sqlite3"), plugins=[otel.observer()])
    memory.lifecycle("s1").sync_turn("hello", "hi")
    report = memory.close(timeout=10)
    assert report.failed >= 1
    opens = otel.spans("open_session")
    assert opens and all(attrs(s)["memcore.outcome"] == "failed" for s in opens)
    assert all(attrs(s)["error.type"] == "PermissionError" and attrs(s)["memcore.backend"] == "sqlite" for s in opens)
    assert not otel.spans("write")  # the write was never called


def test_rewind_and_forget(otel, make_memory):
    memory = make_memory(plugins=[otel.observer()])
    lc = memory.lifecycle("s1", user_id="bob")
    lc.sync_turn("one", "1")
    lc.sync_turn("two", "2")
    assert memory.flush(timeout=10).ok
    lc.switch("s1", reason="rewind", turns=1)
    assert memory.flush(timeout=10).ok
    handle = memory.forget(user_id="bob", session_id="s1")
    assert handle.wait(timeout=10)
    memory.close(timeout=10)
    (rewind,) = otel.spans("rewind")
    assert attrs(rewind)["gen_ai.operation.name"] == "delete_memory"
    assert attrs(rewind)["gen_ai.memory.record.count"] == 1 and attrs(rewind)["memcore.outcome"] == "rewound"
    (forget,) = otel.spans("forget")
    assert attrs(forget)["gen_ai.operation.name"] == "delete_memory"
    assert attrs(forget)["memcore.outcome"] == "forgotten" and attrs(forget)["user.hash"] == otel_hash("bob")
    assert attrs(forget)["gen_ai.conversation.id"] == otel_hash("s1")
    counts = otel.counts()
    assert counts[("sqlite", "rewind", "rewound")] == 1 and counts[("sqlite", "forget", "forgotten")] == 1


# -- robustness -----------------------------------------------------------------------------------------------------


class Broken:
    """A tracer provider whose tracer cannot start a span."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("exporter exploded")


def test_telemetry_that_raises_never_fails_a_call(otel, make_memory, caplog):
    observer = OtelObserver(tracer_provider=Broken(), meter_provider=otel.meter_provider)
    memory = make_memory(plugins=[observer])
    lc = memory.lifecycle("s1")
    for n in range(5):
        lc.sync_turn(f"t{n}", "a")
    with caplog.at_level("WARNING", logger="memcore.otel"):
        report = memory.close(timeout=10)
    assert report.ok and report.delivered == 5 and report.committed == 1
    warned = [r for r in caplog.records if r.name == "memcore.otel"]
    assert len(warned) <= 1  # rate-limited
    assert otel.counts()[("sqlite", "write", "delivered")] == 5  # the events still count


def test_without_an_sdk_everything_is_a_no_op(make_memory):
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    observer = OtelObserver(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    memory = make_memory(plugins=[observer])
    assert conversation(memory)


def test_a_call_outside_memcores_lanes_is_ended_by_the_next_one(otel, make_memory):
    """A hook called directly (a tool, a test) gets no event: its span is ended, outcome unknown, by the next call on
    that thread, or when the thread ends."""
    memory = make_memory(plugins=[otel.observer()])
    hook = memory.plugin_manager.hook
    session = Session(id="direct")
    hook.memcore_write(session=session, messages=[Message(role="user", content="x")], key="k1", attempt=1)
    assert not otel.spans()  # waiting for an event that never comes
    hook.memcore_write(session=session, messages=[Message(role="user", content="y")], key="k2", attempt=1)
    (first,) = otel.spans()
    assert attrs(first)["memcore.outcome"] == "unknown" and "memcore.backend" not in attrs(first)

    done: list[int] = []

    def on_a_thread() -> None:
        hook.memcore_write(session=session, messages=[Message(role="user", content="z")], key="k3", attempt=1)
        done.append(1)

    thread = threading.Thread(target=on_a_thread)
    thread.start()
    thread.join()
    assert done and len(otel.spans("write")) == 2  # the thread's call, ended as the thread went


def test_installed_as_an_entry_point_and_loaded_by_default(make_memory):
    from importlib import metadata

    (entry,) = [e for e in metadata.entry_points(group="memcore.plugins") if e.name == "otel"]
    assert entry.value == "memcore_otel:OtelObserver"
    memory = make_memory()  # no plugins=: every installed observer plugin
    assert isinstance(memory.plugin_manager.get_plugin("otel"), OtelObserver)
    memory.lifecycle("s1").sync_turn("hello", "hi")
    assert memory.close(timeout=10).ok


def test_memcore_backends_lists_it(capsys):
    from memcore._cli import main

    assert main(["backends", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert "otel" in plugins and "memcore_write" in " ".join(plugins["otel"]["hooks"])

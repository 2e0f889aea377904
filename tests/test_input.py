"""G12 and bad input: ids validated once in the core, content checked, bad calls raise and change nothing."""

from __future__ import annotations

import pytest
from recording import WAIT

import memcore


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "empty or blank"),
        (" \t ", "control character|empty or blank"),
        ("x" * 257, "257 characters"),
        ("a\x07b", "control character"),
        ("a\u0085b", "control character"),
        ("\ud800", "surrogate"),
        (None, "must be a string"),
        (b"bytes", "must be a string"),
    ],
)
def test_g12_invalid_session_ids_are_refused(memory, bad, message):
    with pytest.raises(memcore.InvalidSessionId, match=message):
        memory.lifecycle(bad)


@pytest.mark.parametrize("sid", ["../x", "a/b?c#d", "%2e%2e", "with spaces", "emoji 🧠", "x" * 256, " padded "])
def test_g12_awkward_but_valid_ids_reach_exactly_their_session(memory, backend, sid):
    lc = memory.lifecycle("plain")
    lc.switch(sid, reason="new")
    lc.sync_turn(f"in {sid}", "ok")
    memory.flush(timeout=WAIT)
    assert backend.texts(sid) == [f"in {sid}", "ok"]
    assert backend.texts("plain") == []


@pytest.mark.parametrize(
    "call",
    [
        lambda lc: lc.sync_turn(None, "a"),
        lambda lc: lc.sync_turn("u", 3),
        lambda lc: lc.sync_turn("u", "a", messages="not a list"),
        lambda lc: lc.sync_turn("u", "a", messages=[{"role": "user", "content": 5}]),
        lambda lc: lc.sync_turn("u", "a", messages=[{"content": "no role"}]),
        lambda lc: lc.sync_turn("u", "a", messages=[{"role": "assistant", "content": "x", "tool_calls": "nope"}]),
        lambda lc: lc.sync_turn("lone \ud800 surrogate", "a"),
        lambda lc: lc.remember(b"bytes"),
        lambda lc: lc.remember("ok", kind=None),
    ],
)
def test_bad_content_raises_invalid_content_and_nothing_is_lost(memory, backend, call):
    lc = memory.lifecycle("s1")
    lc.sync_turn("kept", "a")
    with pytest.raises(memcore.InvalidContent):
        call(lc)
    lc.sync_turn("also kept", "a")
    memory.flush(timeout=WAIT)
    assert backend.texts("s1") == ["kept", "a", "also kept", "a"]
    assert lc.session_id == "s1"


def test_bad_recall_arguments_raise(memory):
    lc = memory.lifecycle("s1")
    with pytest.raises(memcore.InvalidContent):
        lc.recall(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        lc.recall("q", limit=0)
    with pytest.raises(ValueError, match="timeout"):
        lc.recall("q", timeout=-1)


def test_openai_messages_with_tool_calls_are_written_as_records(memory, backend):
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    lc = memory.lifecycle("s1")
    lc.sync_turn(
        "Weather in Oslo?",
        "It is 4 °C.",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather in"}, {"type": "text", "text": "Oslo?"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "name": "weather", "content": "4 °C"},
            {"role": "assistant", "content": "It is 4 °C."},
        ],
    )
    memory.flush(timeout=WAIT)
    (turn,) = backend.calls("write", "s1")
    assert [m.role for m in turn] == ["user", "assistant", "tool", "assistant"]
    assert turn[0].content == "Weather in\nOslo?"
    assert turn[1].content == "" and turn[1].tool_calls == (call,)
    assert turn[2].tool_call_id == "call_1" and turn[2].name == "weather"


@pytest.mark.parametrize("text", ["emoji 🧠🎉", "עברית מימין לשמאל", "e\u0301 combining", "中文", "\u200f rtl mark"])
def test_g12_unicode_content_round_trips(memory, backend, text):
    lc = memory.lifecycle("s1")
    lc.sync_turn(text, text)
    lc.remember(text)
    memory.flush(timeout=WAIT)
    assert backend.texts("s1") == [text, text]
    assert backend.calls("remember", "s1")[0].text == text


def test_records_are_frozen_and_keyword_only():
    note = memcore.Note(text="x")
    with pytest.raises(AttributeError):
        note.text = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        memcore.Session("positional")  # type: ignore[misc]
    assert memcore.Recollection(text="t").metadata == {}
    assert memcore.Note(text="t", metadata={"a": 1}).metadata == {"a": 1}

"""Rewind reaches the service (issue 14, item 2): ``switch(sid, reason="rewind", turns=N)`` drops the undone turns
that were not yet delivered and asks a backend with ``memcore_rewind`` to remove the ones it has."""

from __future__ import annotations

import pytest
from recording import WAIT, RecordingBackend
from test_reliability import drain

import memcore
from memcore import Session


class Rewinding(RecordingBackend):
    @memcore.hookimpl
    def memcore_rewind(self, session: Session, turns: int) -> None:
        self._call("rewind", session, turns)


def hooks(backend: RecordingBackend, sid: str) -> list[str]:
    out = []
    for hook, s, payload in backend.log:
        if s == sid and hook in ("write", "rewind", "commit", "remember"):
            out.append(
                f"write {payload[0].content}" if hook == "write" else f"{hook} {payload}" if hook == "rewind" else hook
            )
    return out


def test_undone_turns_not_yet_delivered_never_reach_the_backend(make_memory):
    backend = Rewinding()
    gate = backend.hold("write", "s1", when=lambda turn: turn[0].content == "t1")
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    lc.sync_turn("t1", "a")
    gate.wait_entered()  # t1 in flight
    lc.sync_turn("t2", "a")
    lc.remember("a note")  # notes made meanwhile stay
    lc.sync_turn("t3", "a")
    lc.switch("s1", reason="rewind", turns=2)  # undo t2 and t3: both queued, both dropped
    lc.sync_turn("t4", "a")
    gate.release()
    drain(memory)
    assert hooks(backend, "s1") == ["write t1", "remember", "write t4"]
    assert backend.calls("rewind") == []  # nothing delivered to undo


def test_undone_turns_already_delivered_are_removed_by_the_backend_in_order(make_memory):
    backend = Rewinding()
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    lc.sync_turn("t1", "a")
    lc.sync_turn("t2", "a")
    drain(memory)
    gate = backend.hold("write", "s1", when=lambda turn: turn[0].content == "t3")
    lc.sync_turn("t3", "a")
    gate.wait_entered()
    lc.switch(
        "s1", reason="rewind", turns=2
    )  # t3 is in flight (delivered by then), t2 delivered: the backend removes 2
    lc.sync_turn("t4", "a")
    gate.release()
    drain(memory)
    assert hooks(backend, "s1") == ["write t1", "write t2", "write t3", "rewind 2", "write t4"]
    memory.close(timeout=WAIT)
    assert backend.commits("s1") == 1


def test_a_rewind_without_turns_only_invalidates_recall(make_memory, backend):
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    lc.sync_turn("t1", "a")
    generation = lc.generation
    lc.switch("s1", reason="rewind")
    drain(memory)
    assert lc.generation == generation + 1 and backend.texts("s1") == ["t1", "a"] and backend.commits() == 0


def test_a_backend_without_memcore_rewind_keeps_delivered_turns(make_memory, backend):
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    lc.sync_turn("t1", "a")
    drain(memory)
    lc.switch("s1", reason="rewind", turns=1)
    report = drain(memory)
    assert backend.texts("s1") == ["t1", "a"] and report.failed == 0


def test_undoing_what_came_after_a_commit_leaves_nothing_more_to_commit(make_memory):
    backend = Rewinding()
    gate = backend.hold("write", "s1", when=lambda turn: turn[0].content == "t1")
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    lc.sync_turn("t1", "a")
    gate.wait_entered()
    lc.end()  # a commit queued behind t1
    lc.sync_turn("t2", "a")
    lc.switch("s1", reason="rewind", turns=1)  # t2 dropped: the session is as the commit left it
    gate.release()
    drain(memory)
    report = memory.close(timeout=WAIT)
    assert hooks(backend, "s1") == ["write t1", "commit"] and report.ok


@pytest.mark.parametrize("turns", [0, -1, 1.5, True])
def test_bad_turns_are_refused_and_change_nothing(make_memory, backend, turns):
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    with pytest.raises(memcore.InvalidSwitch):
        lc.switch("s1", reason="rewind", turns=turns)
    with pytest.raises(memcore.InvalidSwitch):
        lc.switch("s2", reason="new", turns=1)
    assert lc.session_id == "s1" and lc.generation == 0


def test_the_demo_no_longer_recalls_what_was_undone(tmp_path, monkeypatch, capsys):
    from memcore._cli import main

    monkeypatch.setenv("MEMCORE_HOME", str(tmp_path / "home"))
    assert main(["demo"]) == 0
    capsys.readouterr()
    store = tmp_path / "home" / "demo" / "memory.sqlite3"
    if not store.exists():  # where the demo keeps its store
        store = next((tmp_path / "home").rglob("*.sqlite3"))
    import sqlite3

    with sqlite3.connect(store) as db:
        texts = [t for (t,) in db.execute("SELECT content FROM messages")]
    db.close()
    assert "Let's do it anyway and rip out requests everywhere." not in texts
    assert any("keep requests for the beta" in t for t in texts)

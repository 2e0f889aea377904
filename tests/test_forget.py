"""Users and forget in the core (issue 13): lanes are per user, a backend that cannot keep users apart is refused a
user, and a forget is ordered behind its scope's accepted work, drops what was not delivered, holds what comes after
it, is journaled, and says what it could not erase. Deterministic: calls are held at gates."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from recording import WAIT, RecordingBackend
from test_reliability import drain, eventually

import memcore
from memcore import Message, Recollection, Session
from memcore._journal import encode


class UserBackend(RecordingBackend):
    """RecordingBackend that keeps users apart (it logs ``user:session`` as the session) and forgets."""

    separates_users = True

    def __init__(self, name: str = "rec") -> None:
        super().__init__(name)
        self.recall_users: list[str | None] = []

    def _call(self, hook: str, session: Session | None, payload: Any = None) -> None:
        if session is not None:
            session = Session(id=f"{session.user_id}:{session.id}", parent_id=session.parent_id)
        super()._call(hook, session, payload)

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        self._call("forget", Session(id=session_id or "*", user_id=user_id))
        return None

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: Session | None, limit: int, user_id: str | None
    ) -> Sequence[Recollection]:
        self.recall_users.append(user_id)
        return []


def writes(backend: RecordingBackend, key: str) -> list[str]:
    return [turn[0].content for turn in backend.calls("write", key)]


def order(backend: RecordingBackend, *keys: str) -> list[str]:
    """The hooks that reached ``keys`` (``user:session``), in order, as ``hook text``."""
    out = []
    for hook, sid, payload in backend.log:
        if sid in keys and hook in ("write", "forget", "commit"):
            out.append(f"{hook} {payload[0].content}" if hook == "write" else hook)
    return out


def turn(text: str) -> tuple[Message, ...]:
    return (Message(role="user", content=text), Message(role="assistant", content="a"))


# -- users ----------------------------------------------------------------------------------------------------------


def test_a_backend_that_does_not_separate_users_is_refused_a_user(make_memory):
    backend = RecordingBackend()
    memory = make_memory(backend)
    with pytest.raises(memcore.UsersNotSeparated, match="rec"):
        memory.lifecycle("s1", user_id="alice")
    with pytest.raises(memcore.UsersNotSeparated):
        memory.recall("x", user_id="alice")
    with pytest.raises(memcore.UsersNotSeparated):
        memory.forget(user_id="alice")
    memory.lifecycle("s1").sync_turn("u", "a")  # the default user still works
    assert drain(memory).delivered == 1 and backend.texts("s1") == ["u", "a"]


@pytest.mark.parametrize("bad", ["", " ", "a\nb", "x\r\nX-Other: y", "x" * 257, 7])
def test_user_ids_are_checked_like_session_ids(make_memory, bad):
    memory = make_memory(UserBackend())
    with pytest.raises(memcore.InvalidSessionId):
        memory.lifecycle("s1", user_id=bad)
    with pytest.raises(memcore.InvalidSessionId):
        memory.forget(user_id=bad)
    assert drain(memory).delivered == 0


def test_two_users_with_one_session_id_are_two_lanes(make_memory):
    backend = UserBackend()
    gate = backend.hold("write", "alice:s1")
    memory = make_memory(backend)
    alice, bob = memory.lifecycle("s1", user_id="alice"), memory.lifecycle("s1", user_id="bob")
    alice.sync_turn("alice 1", "a")
    gate.wait_entered()
    bob.sync_turn("bob 1", "a")
    bob.switch("s2")  # switches keep the user: bob's s1 is committed, not alice's
    assert bob.user_id == "bob" and bob.session.user_id == "bob"
    memory.flush(timeout=0.5)  # alice's write is held; bob's lane does not wait for it
    assert writes(backend, "bob:s1") == ["bob 1"] and backend.commits("bob:s1") == 1
    assert backend.commits("alice:s1") == 0
    gate.release()
    drain(memory)
    assert writes(backend, "alice:s1") == ["alice 1"]


def test_recall_names_the_user_to_every_backend(make_memory):
    backend = UserBackend()
    memory = make_memory(backend)
    memory.recall("x", user_id="alice")
    memory.lifecycle("s1", user_id="bob").recall("x")
    memory.recall("x")
    assert backend.recall_users == ["alice", "bob", None]


def test_events_and_failures_carry_the_user(make_memory):
    heard: list[memcore.Event] = []

    class Ear:
        @memcore.hookimpl
        def memcore_event(self, event: memcore.Event) -> None:
            heard.append(event)

    backend = UserBackend()
    backend.fail_next("write", ValueError("400: no"))
    memory = make_memory(backend, plugins=[Ear()])
    memory.lifecycle("s1", user_id="alice").sync_turn("u", "a")
    report = drain(memory)
    assert report.failures[0].user_id == "alice" and report.failures[0].session_id == "s1"
    assert [(e.kind, e.user_id) for e in heard] == [("failed", "alice")]


# -- forget: a session ----------------------------------------------------------------------------------------------


def test_forget_runs_behind_the_call_in_flight_drops_what_is_queued_and_keeps_what_comes_after(make_memory):
    backend = UserBackend()
    gate = backend.hold("write", "alice:s1", when=lambda turn: turn[0].content == "w1")
    memory = make_memory(backend)
    lc = memory.lifecycle("s1", user_id="alice")
    lc.sync_turn("w1", "a")
    gate.wait_entered()  # w1 is in flight
    lc.sync_turn("w2", "a")
    lc.sync_turn("w3", "a")
    generation = lc.generation
    done = lc.forget()
    assert lc.generation == generation + 1  # recall asked for before the forget is never handed out
    lc.sync_turn("w4", "a")
    assert not done.done
    gate.release()
    assert done.wait(WAIT) and done.ok and done.dropped == 2 and done.kept == {}
    drain(memory)
    assert order(backend, "alice:s1") == ["write w1", "forget", "write w4"]
    memory.close(timeout=WAIT)
    assert order(backend, "alice:s1")[-1] == "commit"  # w4 came after the forget: it is committed at close
    assert backend.violations == []


def test_a_forgotten_session_is_not_committed_for_what_the_forget_erased(make_memory):
    backend = UserBackend()
    memory = make_memory(backend)
    lc = memory.lifecycle("s1", user_id="alice")
    lc.sync_turn("w1", "a")
    drain(memory)
    assert lc.forget().wait(WAIT)
    report = memory.close(timeout=WAIT)
    assert report.ok and backend.commits("alice:s1") == 0 and report.owing_commit == 0


def test_a_backend_without_forget_says_it_keeps_everything(make_memory):
    kept_all = RecordingBackend("plain")
    memory = make_memory(kept_all)
    done = memory.forget(user_id=None, session_id="s1")
    assert done.wait(WAIT) and not done.ok
    assert done.kept == {"plain": memcore._forget.CANNOT_FORGET} and done.failures == ()


def test_a_forget_that_fails_transiently_is_retried_and_one_that_fails_for_good_is_reported(make_memory):
    backend = UserBackend()
    backend.fail_next("forget", memcore.TransientError("503"))
    memory = make_memory(backend, retry=memcore.RetryPolicy(initial=0.001, max_delay=0.01, deadline=WAIT))
    first = memory.forget(user_id="alice", session_id="s1")
    assert first.wait(WAIT) and first.ok and backend.attempts("forget") == 2
    backend.fail_next("forget", ValueError("400: no such session"))
    second = memory.forget(user_id="alice", session_id="s1")
    assert second.wait(WAIT) and not second.ok
    assert [f.operation for f in second.failures] == ["forget"]


# -- forget: a user -------------------------------------------------------------------------------------------------


def test_a_users_forget_holds_that_users_lanes_and_no_one_elses(make_memory):
    backend = UserBackend()
    gate = backend.hold("write", "alice:a1", when=lambda turn: turn[0].content == "a1 first")
    memory = make_memory(backend)
    a1, a2 = memory.lifecycle("a1", user_id="alice"), memory.lifecycle("a2", user_id="alice")
    bob = memory.lifecycle("s1", user_id="bob")
    a1.sync_turn("a1 first", "a")
    gate.wait_entered()  # in flight: the forget waits for it
    a2.sync_turn("a2 queued", "a")  # may be delivered before the forget or dropped by it, never after it
    done = memory.forget(user_id="alice")
    a2.sync_turn("a2 after", "a")  # accepted after the forget: held until it is done, then delivered
    bob.sync_turn("bob 1", "a")
    memory.flush(timeout=0.5)
    assert writes(backend, "bob:s1") == ["bob 1"]  # another user is not held
    assert backend.calls("forget") == [] and "a2 after" not in writes(backend, "alice:a2")
    gate.release()
    assert done.wait(WAIT) and done.ok
    drain(memory)
    log = [(hook, sid, payload) for hook, sid, payload in backend.log if sid and sid.startswith("alice:")]
    forget_at = next(i for i, (hook, *_) in enumerate(log) if hook == "forget")
    assert log[forget_at][1] == "alice:*"
    before = [p[0].content for hook, _, p in log[:forget_at] if hook == "write"]
    after = [p[0].content for hook, _, p in log[forget_at + 1 :] if hook == "write"]
    assert before in (["a1 first"], ["a1 first", "a2 queued"]) and after == ["a2 after"]
    assert done.dropped == (1 if before == ["a1 first"] else 0)
    assert backend.violations == []


def test_forgets_queue_in_order_and_the_users_lanes_run_again_after_the_last(make_memory):
    backend = UserBackend()
    gate = backend.hold("forget")
    memory = make_memory(backend)
    lc = memory.lifecycle("s1", user_id="alice")
    first = memory.forget(user_id="alice")
    gate.wait_entered()
    lc.sync_turn("between", "a")
    second = memory.forget(user_id="alice", session_id="s1")
    lc.sync_turn("last", "a")
    gate.release()
    assert first.wait(WAIT) and second.wait(WAIT)
    drain(memory)
    assert order(backend, "alice:*", "alice:s1") == ["forget", "forget", "write last"]
    assert second.dropped == 1  # "between" was held behind the first forget, then dropped by the second


# -- forget across a crash --------------------------------------------------------------------------------------------


DEAD = "00000000000000000001:gone-host:1"


def put(path: Path, rows: list[tuple[str, str, str | None]]) -> None:
    """Rows a dead owner left: (kind, session id, text) for user alice."""
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO ops (owner, seq, backend, session_id, parent_id, kind, payload, status, created, user_id) "
            "VALUES (?, ?, 'rec', ?, NULL, ?, ?, 'pending', ?, 'alice')",
            [
                (DEAD, n, sid, kind, encode(kind, turn(text)) if text else None, time.time())
                for n, (kind, sid, text) in enumerate(rows, start=1)
            ],
        )
    db.close()


def test_a_forget_left_in_the_journal_is_finished_at_the_next_start_in_its_place(make_memory, memcore_home):
    journal = memcore_home / "journal.sqlite3"
    make_memory(UserBackend()).close(timeout=WAIT)
    put(journal, [("write", "s1", "before"), ("forget", "s1", None), ("write", "s1", "after"), ("forget", "", None)])
    backend = UserBackend()
    memory = make_memory(backend)
    drain(memory)
    got = order(backend, "alice:s1", "alice:*")
    assert got in (["forget", "forget"], ["write before", "forget", "forget"])  # "after" is erased by the user's
    assert "write after" not in got
    memory.close(timeout=WAIT)
    db = sqlite3.connect(journal)
    try:
        assert db.execute("SELECT count(*) FROM ops").fetchone() == (0,)
    finally:
        db.close()


def test_a_forget_erases_the_scopes_failed_rows_from_the_journal(make_memory, memcore_home):
    backend = UserBackend()
    backend.fail_next("write", ValueError("400: refused"))
    memory = make_memory(backend)
    lc = memory.lifecycle("s1", user_id="alice")
    lc.sync_turn("refused", "a")
    other = memory.lifecycle("s2", user_id="alice")
    backend.fail_next("write", ValueError("400: refused"))
    other.sync_turn("kept", "a")
    assert drain(memory).failed == 2
    journal = memcore_home / "journal.sqlite3"

    def failed() -> list[str]:
        db = sqlite3.connect(journal)
        try:
            return [sid for (sid,) in db.execute("SELECT session_id FROM ops WHERE status = 'failed' ORDER BY 1")]
        finally:
            db.close()

    eventually(lambda: failed() == ["s1", "s2"])
    assert lc.forget().wait(WAIT)
    eventually(lambda: failed() == ["s2"])  # nothing of the forgotten session stays, nor comes back with `retry`
    assert memory.forget(user_id="alice").wait(WAIT)
    eventually(lambda: failed() == [])


def test_a_session_written_after_its_forget_is_opened_again(make_memory):
    backend = UserBackend()
    memory = make_memory(backend)
    lc = memory.lifecycle("s1", user_id="alice")
    lc.sync_turn("before", "a")
    drain(memory)
    assert lc.forget().wait(WAIT)
    lc.sync_turn("after", "a")
    drain(memory)
    assert [h for h, sid, _ in backend.log if sid == "alice:s1" and h in ("open", "write", "forget")] == [
        "open",
        "write",
        "forget",
        "open",
        "write",
    ]

"""The SQLite store keeps each operation once per idempotency key, and removes rewound turns (issue 14, items 1 and 2).
An ambiguous failure is staged by an observer that raises after the backend's call returned: the call reached the
store, then its answer was lost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recording import WAIT
from test_reliability import FAST, drain

import memcore
from memcore import Message, Session


class LosesAnswers:
    """Wraps the backend's hooks: the first ``n`` calls of ``hook`` succeed, then raise a transient error."""

    def __init__(self, hook: str, n: int = 1) -> None:
        self.hook, self.left = hook, n

    def _after(self, hook: str) -> None:
        if hook == self.hook and self.left:
            self.left -= 1
            raise memcore.TransientError("connection reset after the request was sent")

    @memcore.hookimpl(wrapper=True)
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> Any:
        result = yield
        self._after("write")
        return result

    @memcore.hookimpl(wrapper=True)
    def memcore_remember(self, session: Session, note: memcore.Note) -> Any:
        result = yield
        self._after("remember")
        return result

    @memcore.hookimpl(wrapper=True)
    def memcore_commit(self, session: Session) -> Any:
        result = yield
        self._after("commit")
        return result


def store(tmp_path: Any) -> memcore.SQLiteBackend:
    return memcore.SQLiteBackend(path=tmp_path / "store.sqlite3")


def test_a_write_whose_answer_was_lost_is_stored_once(make_memory, tmp_path):
    backend = store(tmp_path)
    memory = make_memory(backend, plugins=[LosesAnswers("write")], retry=FAST)
    memory.lifecycle("s1").sync_turn("only once", "a")
    report = drain(memory)
    assert report.retried == 1 and report.delivered == 1
    assert [m.content for m in backend.memcore_history(Session(id="s1"))] == ["only once", "a"]


def test_a_note_whose_answer_was_lost_is_stored_once(make_memory, tmp_path):
    backend = store(tmp_path)
    memory = make_memory(backend, plugins=[LosesAnswers("remember")], retry=FAST)
    memory.lifecycle("s1").remember("prefers tea")
    assert drain(memory).retried == 1
    found = memory.recall("tea")
    assert [r.text for r in found] == ["prefers tea"]


def test_a_commit_whose_answer_was_lost_commits_once(make_memory, tmp_path):
    backend = store(tmp_path)
    memory = make_memory(backend, plugins=[LosesAnswers("commit")], retry=FAST)
    lc = memory.lifecycle("s1")
    lc.sync_turn("espresso every morning", "noted")
    lc.end()
    assert drain(memory).retried == 1
    db = backend._db()
    assert db.execute("SELECT commits FROM sessions WHERE id = 's1'").fetchone() == (1,)
    assert len(memory.recall("espresso")) == 1  # indexed once


def test_a_rewind_removes_the_last_turns_from_history_and_recall(make_memory, tmp_path):
    backend = store(tmp_path)
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    lc.sync_turn("keep the requests library", "ok")
    lc.sync_turn("rip out requests everywhere", "plan")
    lc.end()
    drain(memory)
    assert memory.recall("rip")
    lc.switch("s1", reason="rewind", turns=1)
    lc.sync_turn("only the station fetch concurrent", "sensible")
    lc.end()
    drain(memory)
    texts = [m.content for m in backend.memcore_history(Session(id="s1"))]
    assert texts == ["keep the requests library", "ok", "only the station fetch concurrent", "sensible"]
    assert memory.recall("rip") == []
    memory.close(timeout=WAIT)

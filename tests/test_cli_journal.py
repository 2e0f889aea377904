"""`memcore pending` and `memcore retry`: what the journal holds, and re-queueing what failed for good."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import memcore
from memcore import Message, Session, SQLiteBackend
from memcore._cli import main


class Refusing(SQLiteBackend):
    """The embedded store, refusing writes for good (a final, non-transient error)."""

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        raise ValueError("400: message rejected")


def test_pending_and_retry_deliver_what_failed(tmp_path, capsys):
    store = tmp_path / "store.sqlite3"
    memory = memcore.Memory(backends=[Refusing(path=store)], plugins=[])
    lc = memory.lifecycle("s1")
    lc.sync_turn("first", "a")
    lc.sync_turn("second", "a")
    report = memory.close(timeout=10)
    assert report.failed == 2
    capsys.readouterr()

    assert main(["pending"]) == 0
    out = capsys.readouterr().out
    assert "s1" in out and "failed" in out and "400: message" in out

    assert main(["pending", "--json"]) == 0
    (group,) = json.loads(capsys.readouterr().out)
    assert group["session_id"] == "s1" and group["status"] == "failed" and group["operations"] == 2
    assert group["backend"] == f"sqlite:{store.resolve()}"

    assert main(["retry", "--deliver", "--path", str(store)]) == 0
    out = capsys.readouterr().out
    assert "Re-queued 2 failed operation(s)" in out and "delivered 2" in out
    with sqlite3.connect(store) as db:
        got = db.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id").fetchall()
    assert got == [("first",), ("second",)]

    assert main(["pending"]) == 0
    assert "holds nothing" in capsys.readouterr().out
    assert main(["retry"]) == 0
    assert "No failed operations" in capsys.readouterr().out


def test_retry_without_deliver_leaves_them_for_the_next_start(tmp_path, capsys):
    store = tmp_path / "store.sqlite3"
    memory = memcore.Memory(backends=[Refusing(path=store)], plugins=[])
    memory.lifecycle("s1").sync_turn("again", "a")
    memory.close(timeout=10)
    assert main(["retry", "--session", "s1"]) == 0
    assert "Re-queued 1" in capsys.readouterr().out
    assert main(["pending", "--json"]) == 0
    (group,) = json.loads(capsys.readouterr().out)
    assert group["status"] == "pending" and not group["owner_running"]
    healthy = memcore.Memory(backends=[SQLiteBackend(path=store)], plugins=[])
    report = healthy.close(timeout=10)
    assert report.replayed == 1 and report.delivered == 1


def test_pending_and_retry_before_any_journal_say_there_is_nothing(capsys, tmp_path):
    assert main(["pending"]) == 0
    assert "holds nothing" in capsys.readouterr().out
    assert main(["retry"]) == 0
    assert "No failed operations" in capsys.readouterr().out
    assert main(["pending", "--journal", str(tmp_path / "missing.sqlite3")]) == 2  # a named file must exist
    assert "no journal at" in capsys.readouterr().err

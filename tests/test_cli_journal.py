"""`memcore pending` and `memcore retry`: what the journal holds, and re-queueing what failed for good."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence

from recording import RecordingBackend

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


# -- retry keeps order --------------------------------------------------------------------------------------------


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_retry_delivers_a_sessions_failed_write_before_its_later_pending_ones(memcore_home, capsys):
    first = RecordingBackend()  # w1 fails for good; w2 hangs, so w2 and w3 are left pending at close
    first.fail_next("write", ValueError("400: w1 rejected"))
    gate = first.hold("write", when=lambda messages: messages[0].content == "w2")
    memory = memcore.Memory(backends=[first], plugins=[])
    lc = memory.lifecycle("s1")
    for n in (1, 2, 3):
        lc.sync_turn(f"w{n}", f"a{n}")
    gate.wait_entered()
    report = memory.close(timeout=0.3)
    assert report.failed == 1 and report.pending >= 2
    assert memory._journal is not None and not memory._journal.closed  # w2 is in flight: its rows stay its owner's
    gate.release()  # w2 returns: delivered once, by the Memory that sent it, and the journal is handed over
    assert _wait(lambda: memory._journal.closed)
    capsys.readouterr()

    assert main(["retry"]) == 0
    assert "Re-queued 1 failed operation(s)" in capsys.readouterr().out

    healthy = RecordingBackend()  # the same backend key ("rec"): the next start delivers what is left
    again = memcore.Memory(backends=[healthy], plugins=[])
    assert again.close(timeout=10).ok
    assert first.texts("s1") == ["w2", "a2"]
    assert healthy.texts("s1") == ["w1", "a1", "w3", "a3"]  # the older failed write before the newer one
    assert main(["pending"]) == 0
    assert "holds nothing" in capsys.readouterr().out


def test_a_second_retry_puts_its_rows_after_the_first_ones(tmp_path, capsys):
    store = tmp_path / "store.sqlite3"
    for text in ("older", "newer"):
        memory = memcore.Memory(backends=[Refusing(path=store)], plugins=[])
        memory.lifecycle("s1").sync_turn(text, "a")
        memory.close(timeout=10)
        assert main(["retry"]) == 0
    capsys.readouterr()
    healthy = memcore.Memory(backends=[SQLiteBackend(path=store)], plugins=[])
    assert healthy.close(timeout=10).replayed == 2
    with sqlite3.connect(store) as db:
        got = db.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id").fetchall()
    assert got == [("older",), ("newer",)]


# -- retry --deliver, --only-backend --------------------------------------------------------------------------------


def _two_failed(store):
    memory = memcore.Memory(backends=[Refusing(path=store)], plugins=[])
    lc = memory.lifecycle("s1")
    lc.sync_turn("first", "a")
    lc.sync_turn("second", "a")
    assert memory.close(timeout=10).failed == 2


def test_retry_deliver_after_retry_delivers_what_waits(tmp_path, capsys):
    store = tmp_path / "store.sqlite3"
    _two_failed(store)
    assert main(["retry"]) == 0
    capsys.readouterr()

    assert main(["retry"]) == 0  # nothing failed any more, but two wait: say so
    out = capsys.readouterr().out
    assert "No failed operations to retry." in out
    assert (
        f"2 operation(s) wait in the journal for the next Memory with their backend: sqlite:{store.resolve()} (2)"
        in out
    )

    assert main(["retry", "--deliver", "--path", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"Delivering now what waits in the journal: sqlite:{store.resolve()} (2)." in out
    assert "Delivered now: Report: delivered 2" in out
    with sqlite3.connect(store) as db:
        got = db.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id").fetchall()
    assert got == [("first",), ("second",)]
    assert main(["retry", "--deliver", "--path", str(store)]) == 0
    assert "Nothing waits in the journal to be delivered." in capsys.readouterr().out


def test_retry_deliver_says_what_it_left_for_other_stores(tmp_path, memcore_home, capsys):
    store = tmp_path / "store.sqlite3"
    _two_failed(store)
    other = tmp_path / "other.sqlite3"
    assert main(["retry", "--deliver", "--path", str(other)]) == 0
    out = capsys.readouterr().out
    assert "Re-queued 2" in out and "delivered 0" in out
    assert f"Still waiting in the journal: sqlite:{store.resolve()} (2)" in out


def test_retry_only_backend_that_matches_nothing_says_so(tmp_path, capsys):
    store = tmp_path / "store.sqlite3"
    _two_failed(store)
    assert main(["retry", "--only-backend", "openviking"]) == 0
    out = capsys.readouterr().out
    assert "No failed operations match --only-backend openviking" in out
    assert f"the journal's failed operations are for sqlite:{store.resolve()} (2)" in out

    assert main(["retry", "--session", "elsewhere"]) == 0
    out = capsys.readouterr().out
    assert (
        "No failed operations match --session elsewhere: the journal's failed operations are in the sessions s1 (2)"
        in out
    )
    assert main(["retry", "--only-backend", "sqlite", "--session", "elsewhere"]) == 0
    assert "the failed operations of sqlite are in the sessions s1 (2)" in capsys.readouterr().out

    assert main(["pending", "--json"]) == 0
    assert [g["status"] for g in json.loads(capsys.readouterr().out)] == ["failed"]  # nothing was re-queued


def test_retry_only_backend_takes_the_backend_name(tmp_path, capsys):
    store = tmp_path / "store.sqlite3"
    _two_failed(store)
    assert main(["retry", "--only-backend", "sqlite"]) == 0
    assert "Re-queued 2 failed operation(s)" in capsys.readouterr().out


# -- pending shows the whole error --------------------------------------------------------------------------------


LONG_ERROR = (
    "422: the service refused the message: field 'content' exceeds the maximum length of 8192 characters for "
    "this tier; see https://docs.example.com/limits/messages#content-length"
)


class RefusingAtLength(SQLiteBackend):
    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        raise ValueError(LONG_ERROR)


def test_pending_gives_the_last_error_room_of_its_own(tmp_path, monkeypatch, capsys):
    store = tmp_path / "a-store-with-a-fairly-long-name" / "store.sqlite3"
    memory = memcore.Memory(backends=[RefusingAtLength(path=store)], plugins=[])
    memory.lifecycle("support-ticket-4711").sync_turn("x" * 20, "a")
    memory.close(timeout=10)
    capsys.readouterr()
    for columns in (80, 120, 200):
        monkeypatch.setenv("COLUMNS", str(columns))
        assert main(["pending"]) == 0
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert all(len(line) <= columns for line in lines[2:]), (columns, out)
        error_lines = [line.strip() for line in lines if line.startswith("  ")]
        assert " ".join(error_lines).removeprefix("last error: ") == repr(ValueError(LONG_ERROR))
        assert "support-ticket-4711" in out and f"sqlite:{store.resolve()}"[:20] in out
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["pending"]) == 0
    assert f"sqlite:{store.resolve()}" in capsys.readouterr().out  # wide enough: the key is shown whole

"""Commit debt survives a crash (issue 12, item 3): once a write is delivered and its session not yet committed, the
journal knows the session owes a commit, and the next start commits it once. ``Report.owing_commit``, the
``owes_commit`` event and ``memcore pending`` show it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from recording import WAIT, RecordingBackend
from test_journal_edges import put_rows
from test_reliability import drain, eventually

import memcore
from memcore._cli import main


def debts(path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT backend, session_id FROM debts ORDER BY session_id").fetchall()
    finally:
        db.close()


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []

    @memcore.hookimpl
    def memcore_event(self, event: memcore.Event) -> None:
        self.events.append((event.kind, event.operation, event.session_id))


def test_a_delivered_write_owes_a_commit_until_one_covers_it(make_memory, memcore_home):
    backend = RecordingBackend()
    memory = make_memory(backend)
    journal = memcore_home / "journal.sqlite3"
    lc = memory.lifecycle("s1")
    lc.sync_turn("u1", "a1")
    assert drain(memory).owing_commit == 1
    eventually(lambda: debts(journal) == [("rec", "s1")])
    lc.end()
    report = drain(memory)
    assert report.owing_commit == 0 and backend.commits("s1") == 1
    eventually(lambda: debts(journal) == [])


def test_a_backend_that_does_not_commit_owes_nothing(make_memory, memcore_home):
    class WriteOnly:
        name = "wo"

        def __init__(self) -> None:
            self.written: list[str] = []

        @memcore.hookimpl
        def memcore_write(self, session: memcore.Session, messages: Any) -> None:
            self.written.append(session.id)

    backend = WriteOnly()
    memory = make_memory(backend)
    memory.lifecycle("s1").sync_turn("u", "a")
    assert drain(memory).owing_commit == 0 and backend.written == ["s1"]
    memory.close(timeout=WAIT)
    assert debts(memcore_home / "journal.sqlite3") == []


def test_a_clean_close_commits_and_leaves_no_debt(make_memory, memcore_home):
    backend = RecordingBackend()
    memory = make_memory(backend)
    memory.lifecycle("s1").sync_turn("u1", "a1")
    drain(memory)
    report = memory.close(timeout=WAIT)
    assert report.ok and report.owing_commit == 0 and backend.commits("s1") == 1
    assert debts(memcore_home / "journal.sqlite3") == []


def _dead_debt(path: Path, owner: str, session_id: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO debts (owner, backend, user_id, session_id, parent_id, created) "
            "VALUES (?, 'rec', '', ?, NULL, ?)",
            (owner, session_id, time.time()),
        )
    db.close()


DEAD = "00000000000000000001:gone-host:1"  # an owner of another host: provably not running here


def test_the_next_start_commits_what_a_dead_owner_owed_once(make_memory, memcore_home):
    journal = memcore_home / "journal.sqlite3"
    first = make_memory(RecordingBackend())  # creates the journal file
    first.close(timeout=WAIT)
    _dead_debt(journal, DEAD, "owed")
    # Another session owed a commit, and its commit is still queued: that commit is the one, no second.
    put_rows(journal, DEAD, "queued", ["q0"], commit=True)
    _dead_debt(journal, DEAD, "queued")
    # A third owed a commit, and later writes of it were never delivered: one commit, after them.
    put_rows(journal, "00000000000000000002:gone-host:2", "later", ["l0", "l1"])
    _dead_debt(journal, DEAD, "later")

    heard = Heard()
    backend = RecordingBackend()
    memory = make_memory(backend, plugins=[heard])
    report = drain(memory)
    assert backend.commits("owed") == 1 and backend.commits("queued") == 1 and backend.commits("later") == 1
    assert backend.texts("queued") == ["q0", "a"] and backend.texts("later") == ["l0", "a", "l1", "a"]
    later = [(h, p) for h, sid, p in backend.log if sid == "later" and h in ("write", "commit")]
    assert [h for h, _ in later] == ["write", "write", "commit"]  # the commit comes after the undelivered writes
    assert sorted(sid for kind, _, sid in heard.events if kind == "owes_commit") == ["later", "owed"]
    assert report.owing_commit == 0 and report.failed == 0
    eventually(lambda: debts(journal) == [])

    again = RecordingBackend()  # a second start finds nothing owed: the debts were settled once
    memory.close(timeout=WAIT)
    drain(make_memory(again))
    assert again.log == []


def test_memcore_pending_lists_sessions_owing_a_commit(make_memory, memcore_home, capsys):
    journal = memcore_home / "journal.sqlite3"
    make_memory(RecordingBackend()).close(timeout=WAIT)
    _dead_debt(journal, DEAD, "owed")
    assert main(["pending"]) == 0
    out = capsys.readouterr().out
    assert "owed" in out and "owes commit (commits at start)" in out
    before = journal.read_bytes()
    assert main(["pending", "--json"]) == 0
    assert '"status": "owes commit"' in capsys.readouterr().out
    assert journal.read_bytes() == before  # read-only


def test_a_commit_that_fails_for_good_settles_the_debt_and_stays_as_a_failed_row(make_memory, memcore_home):
    backend = RecordingBackend()
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    drain(memory)
    backend.fail_next("commit", ValueError("400: refused"))
    lc.end()
    report = drain(memory)
    assert report.failed == 1
    journal = memcore_home / "journal.sqlite3"

    def rows() -> list[tuple[str, str]]:
        db = sqlite3.connect(journal)
        try:
            return db.execute("SELECT kind, status FROM ops").fetchall()
        finally:
            db.close()

    eventually(lambda: rows() == [("commit", "failed")])  # the writer's next batches: the write's ack, the failure
    assert debts(journal) == []


# -- a process killed with SIGKILL after every write was delivered ---------------------------------------------------

_DELIVERED = """
import sqlite3, sys, time
import memcore

store, journal, sessions = sys.argv[1], sys.argv[2], int(sys.argv[3])
memory = memcore.Memory(backends=[memcore.SQLiteBackend(path=store)], plugins=[], journal=journal)
for s in range(sessions):
    lc = memory.lifecycle(f"session-{s}")
    for t in range(3):
        lc.sync_turn(f"s{s} turn {t}", f"reply {t}")
assert memory.flush(timeout=30).pending == 0  # delivered, none committed: no boundary was reached
deadline = time.monotonic() + 30
while time.monotonic() < deadline:  # the journal writer puts the debts and acks on disk with its next batches
    with sqlite3.connect(journal) as db:
        owed = db.execute("SELECT count(*) FROM debts").fetchone()[0]
        left = db.execute("SELECT count(*) FROM ops").fetchone()[0]
        if owed == sessions and left == 0:  # every acknowledgement is on disk too
            break
    time.sleep(0.005)
print("delivered", flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_sigkill_after_delivery_the_next_start_commits_each_session_once(tmp_path, memcore_home, make_memory):
    (tmp_path / "child.py").write_text(textwrap.dedent(_DELIVERED))
    store, journal, sessions = tmp_path / "store.sqlite3", tmp_path / "journal.sqlite3", 4
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(store), str(journal), str(sessions)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "MEMCORE_HOME": str(memcore_home)},
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "delivered", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(store) as db:
        assert dict(db.execute("SELECT id, commits FROM sessions").fetchall()) == {
            f"session-{s}": 0 for s in range(sessions)
        }
    db.close()
    assert len(debts(journal)) == sessions

    memory = make_memory(memcore.SQLiteBackend(path=store), journal=journal)
    report = drain(memory)
    assert report.replayed == sessions and report.failed == 0 and report.owing_commit == 0
    memory.close(timeout=WAIT)
    with sqlite3.connect(store) as db:
        commits = dict(db.execute("SELECT id, commits FROM sessions").fetchall())
        users = db.execute("SELECT count(*) FROM messages WHERE role = 'user'").fetchone()[0]
    db.close()
    assert commits == {f"session-{s}": 1 for s in range(sessions)}
    assert users == sessions * 3  # nothing sent twice
    assert debts(journal) == []

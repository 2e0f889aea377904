"""The journal at its edges: an owner is dead only when it provably is (pid reuse, another boot, a version-1 journal),
and the journal never dies silently (content it cannot store is refused at the call; a writer that cannot write
keeps trying, says so, and never counts as durable what it did not write)."""

from __future__ import annotations

import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from recording import WAIT, RecordingBackend
from test_reliability import drain, eventually

import memcore
from memcore import _validate as check
from memcore._journal import (
    SCHEMA_VERSION,
    Journal,
    _alive,
    _boot_id,
    _migrate,
    _start_ticks,
    encode,
    live_owners,
)
from memcore._records import Message, Note, Session

needs_proc = pytest.mark.skipif(_start_ticks(os.getpid()) is None, reason="needs /proc (start times, boot id)")


def journal_of(memory: memcore.Memory) -> Journal:
    journal = memory._journal
    assert journal is not None
    return journal


def turn(user: str) -> tuple[Message, ...]:
    return (Message(role="user", content=user), Message(role="assistant", content="a"))


def put_rows(path: Path, owner: str, session_id: str, texts: list[str], *, commit: bool = False) -> None:
    """Journal rows as a Memory that is gone left them: writes of ``texts`` (and a commit) in ``session_id``."""
    ops: list[tuple[str, str | None]] = [("write", encode("write", turn(t))) for t in texts]
    if commit:
        ops.append(("commit", None))
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO ops (owner, seq, backend, session_id, parent_id, kind, payload, status, created) "
            "VALUES (?, ?, 'rec', ?, NULL, ?, ?, 'pending', ?)",
            [(owner, n, session_id, kind, payload, time.time()) for n, (kind, payload) in enumerate(ops, start=1)],
        )
    db.close()


def rows_of(path: Path, owner: str | None = None) -> int:
    db = sqlite3.connect(path)
    try:
        if owner is None:
            return int(db.execute("SELECT count(*) FROM ops").fetchone()[0])
        return int(db.execute("SELECT count(*) FROM ops WHERE owner = ?", (owner,)).fetchone()[0])
    finally:
        db.close()


def new_journal(path: Path) -> None:
    """A journal file of the current schema, with no owner left in it."""
    assert Journal(path).close(WAIT)


# -- A. dead means dead ---------------------------------------------------------------------------------------------

HOST = socket.gethostname()


@needs_proc
@pytest.mark.parametrize(
    "start_shift, boot, replayed",
    [
        pytest.param(12_345, "same", True, id="same pid and host, another start time: the pid was reused"),
        pytest.param(0, "another", True, id="same pid, host and start time, another boot"),
        pytest.param(0, "same", False, id="this very process (another Memory of it): alive"),
        pytest.param(None, None, False, id="a row without start time or boot id: the pid alone, as before"),
    ],
)
def test_a_an_owner_is_dead_only_when_it_provably_is(make_memory, memcore_home, start_shift, boot, replayed):
    """A container restarts: same hostname, the application is pid 1 again, so a crashed run's owner row holds this
    process's own pid and host. Its start time (or boot id) tells it apart, and its rows are replayed."""
    path = memcore_home / "journal.sqlite3"
    new_journal(path)
    own = _start_ticks(os.getpid())
    assert own is not None
    pid_start = None if start_shift is None else own + start_shift
    boot_id = {"same": _boot_id(), "another": "00000000-dead-beef-0000-000000000000", None: None}[boot]
    owner = f"{1:020d}:{HOST}:{os.getpid()}"
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO owners (owner, pid, host, started, pid_start, boot_id) VALUES (?, ?, ?, ?, ?, ?)",
            (owner, os.getpid(), HOST, time.time() - 60, pid_start, boot_id),
        )
    db.close()
    put_rows(path, owner, "crashed", ["u0", "u1"], commit=True)
    assert _alive(os.getpid(), HOST, pid_start, boot_id) is not replayed

    backend = RecordingBackend()
    memory = make_memory(backend)
    report = drain(memory)
    if replayed:
        assert report.replayed == 3
        assert backend.texts("crashed") == ["u0", "a", "u1", "a"] and backend.commits("crashed") == 1
        assert rows_of(path, owner) == 0
    else:
        assert report.replayed == 0 and backend.log == []
        assert rows_of(path, owner) == 3  # left alone: its owner may be running


_LIVE_OWNER = """
import sys
import memcore
from memcore import TransientError

class Down:
    '''Named like the test's backend, so their journal rows are filed under the same key; its service is "down".'''
    name = "rec"

    @memcore.hookimpl
    def memcore_write(self, session, messages):
        raise TransientError("service unavailable")

memory = memcore.Memory(backends=[Down()], plugins=[], retry=memcore.RetryPolicy(initial=0.05, deadline=3600))
lc = memory.lifecycle("theirs")
for t in range(3):
    lc.sync_turn(f"t{t}", "a")
assert memory._journal.wait_durable(30)
print(memory._journal.owner, flush=True)
sys.stdin.read()  # run until told to stop, or killed
"""


@needs_proc
def test_a_a_live_owner_in_another_process_keeps_its_rows_until_it_dies(tmp_path, memcore_home, make_memory):
    script = tmp_path / "live_owner.py"
    script.write_text(textwrap.dedent(_LIVE_OWNER))
    env = {**os.environ, "MEMCORE_HOME": str(memcore_home)}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        owner = proc.stdout.readline().decode().strip()
        assert owner, proc.stderr.read().decode() if proc.stderr else ""
        path = memcore_home / "journal.sqlite3"
        db = sqlite3.connect(path)
        try:
            row = db.execute("SELECT pid, host, pid_start, boot_id FROM owners WHERE owner = ?", (owner,)).fetchone()
        finally:
            db.close()
        assert row == (proc.pid, HOST, _start_ticks(proc.pid), _boot_id())  # its very process, recorded

        backend = RecordingBackend()
        report = drain(make_memory(backend))  # it runs: nothing of its is taken
        assert report.replayed == 0 and backend.texts("theirs") == []
        assert rows_of(path, owner) == 3
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    later = RecordingBackend()  # it died: the next Memory replays its rows
    report = drain(make_memory(later))
    assert report.replayed == 3
    assert later.texts("theirs") == ["t0", "a", "t1", "a", "t2", "a"]


#: The schema of a version-1 journal (memcore before the owners' start time and boot id), as it was written.
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS owners (owner TEXT PRIMARY KEY, pid INTEGER, host TEXT, started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ops (
    owner TEXT NOT NULL,
    seq INTEGER NOT NULL,
    backend TEXT NOT NULL,
    session_id TEXT NOT NULL,
    parent_id TEXT,
    kind TEXT NOT NULL,
    payload TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (owner, seq)
);
"""

NO_SUCH_PID = 2**30  # above any pid_max: no process has it


def test_a_a_version_1_journal_is_migrated_in_place_and_its_rows_replayed(make_memory, memcore_home):
    path = memcore_home / "journal.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    dead, running = f"{1:020d}:{HOST}:{NO_SUCH_PID}", f"{2:020d}:{HOST}:{os.getpid()}"
    db = sqlite3.connect(path)
    db.executescript(f"{_SCHEMA_V1} PRAGMA user_version = 1;")
    db.execute("PRAGMA journal_mode = WAL")
    with db:
        db.executemany(
            "INSERT INTO owners (owner, pid, host, started) VALUES (?, ?, ?, ?)",
            [(dead, NO_SUCH_PID, HOST, time.time() - 60), (running, os.getpid(), HOST, time.time() - 30)],
        )
    assert live_owners(db) == {running}  # the old rule, on a journal that has not been migrated (the CLI reads so)
    db.close()
    put_rows(path, dead, "old", ["o0", "o1", "o2"], commit=True)
    put_rows(path, running, "kept", ["k0"])
    failed_row = (dead, 99, "rec", "old", None, "write", encode("write", turn("f")), "failed", "boom", time.time())
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO ops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", failed_row)
    db.close()

    backend = RecordingBackend()
    memory = make_memory(backend)
    report = drain(memory)
    assert report.replayed == 4  # the dead owner's pending rows, in order, committed after them
    assert backend.texts("old") == ["o0", "a", "o1", "a", "o2", "a"] and backend.commits("old") == 1
    assert backend.texts("kept") == []  # an old row checked by the old rule: this pid runs, so it is alive

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        columns = [r[1] for r in db.execute("PRAGMA table_info(owners)")]
        assert columns == ["owner", "pid", "host", "started", "pid_start", "boot_id"]
        owners = dict(db.execute("SELECT owner, pid_start FROM owners").fetchall())
        assert owners[running] is None and dead not in owners  # kept as it was; the dead one cleared by the claim
        assert owners[journal_of(memory).owner] == _start_ticks(os.getpid())
        assert db.execute("SELECT count(*) FROM ops WHERE owner = ?", (running,)).fetchone()[0] == 1
        assert db.execute("SELECT status, last_error FROM ops WHERE status = 'failed'").fetchall() == [
            ("failed", "boom")
        ]  # kept, for `memcore retry`
    finally:
        db.close()


def test_a_a_migration_run_twice_does_nothing_the_second_time(memcore_home):
    """The migration re-reads the version under its lock: a journal another process migrated since it was opened is
    used as it is (an ALTER TABLE run twice would fail, and the journal would be moved aside as unusable)."""
    path = memcore_home / "journal.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(f"{_SCHEMA_V1} PRAGMA user_version = 1;")
    db.close()
    first = sqlite3.connect(path, isolation_level=None)
    second = sqlite3.connect(path, isolation_level=None)
    _migrate(first)
    _migrate(second)  # it had read version 1 before: nothing left to do, no error
    first.close()
    second.close()
    assert not list(memcore_home.glob("journal.sqlite3.unreadable-*"))
    assert Journal(path).close(WAIT)


def test_a_alive_keeps_its_old_call(memcore_home):
    """``memcore._journal_admin`` calls ``_alive(pid, host)``: the old rule, unchanged."""
    assert _alive(os.getpid(), HOST)
    assert not _alive(NO_SUCH_PID, HOST)
    assert not _alive(os.getpid(), "another-host")
    assert not _alive(None, HOST)


# -- B. content that cannot be stored is refused at the call --------------------------------------------------------


def cycle() -> list[Any]:
    looped: list[Any] = []
    looped.append(looped)
    return looped


def with_messages(*messages: Any) -> Callable[[memcore.SessionLifecycle], None]:
    return lambda lc: lc.sync_turn("u", "a", messages=list(messages))


def assistant_calling(*calls: Any) -> Callable[[memcore.SessionLifecycle], None]:
    return with_messages({"role": "assistant", "content": None, "tool_calls": list(calls)})


BAD_TURNS: list[Any] = [
    pytest.param(lambda lc: lc.sync_turn("lone \ud800 surrogate", "a"), id="a lone surrogate in a text"),
    pytest.param(assistant_calling(cycle()), id="a tool call that is not a mapping"),
    pytest.param(assistant_calling({"a": cycle()}), id="a cycle in tool_calls"),
    pytest.param(assistant_calling({"f": object()}), id="a non-JSON value in tool_calls"),
    pytest.param(assistant_calling({"n": math.nan}), id="NaN in tool_calls"),
    pytest.param(assistant_calling({"name": "x\udfff"}), id="a lone surrogate in tool_calls"),
    pytest.param(assistant_calling({"\ud800": 1}), id="a lone surrogate in a tool_calls key"),
    pytest.param(
        with_messages({"role": "tool", "content": "r", "name": "\ud800"}), id="a lone surrogate in a message's name"
    ),
    pytest.param(
        with_messages(Message(role="assistant", content="x", tool_calls=({"a": cycle()},))),
        id="a cycle in a Message record's tool_calls",
    ),
    pytest.param(
        with_messages(Message(role="tool", content="x", tool_call_id="\udc80")),
        id="a lone surrogate in a Message record's tool_call_id",
    ),
    pytest.param(with_messages(Message(role=7, content="x")), id="a Message record whose role is no string"),
    pytest.param(lambda lc: lc.remember("note \ud800"), id="a lone surrogate in a note"),
]


BAD_NOTES: list[Any] = [
    pytest.param({"k": "\ud800"}, id="a lone surrogate in metadata"),
    pytest.param({"k": cycle()}, id="a cycle in metadata"),
    pytest.param({"k": object()}, id="a non-JSON value in metadata"),
    pytest.param({"k": math.inf}, id="infinity in metadata"),
    pytest.param({1: "v"}, id="a key that is no string"),
]


def assert_still_journaled_and_delivered(memory: memcore.Memory, backend: RecordingBackend, memcore_home: Path) -> None:
    """After a refusal, later operations reach the disk and the backend as ever."""
    gate = backend.hold("write", "s1")  # held: the rows stay pending in the journal, where they can be counted
    lc = memory.lifecycle("s1")
    lc.sync_turn("later", "still written")
    lc.remember("a later note", metadata={"ok": [1, 2.5, None, True, {"x": "é"}]})
    journal = journal_of(memory)
    assert journal.wait_durable(WAIT) and journal.error is None
    assert journal._thread.is_alive()
    assert rows_of(memcore_home / "journal.sqlite3", journal.owner) == 2
    gate.release()
    drain(memory)
    assert backend.texts("s1") == ["later", "still written"]
    assert [n.text for n in backend.calls("remember", "s1")] == ["a later note"]


@pytest.mark.parametrize("call", BAD_TURNS)
def test_b_content_that_cannot_be_stored_is_refused_at_the_call(make_memory, backend, memcore_home, call):
    memory = make_memory(backend)
    with pytest.raises(memcore.InvalidContent):
        call(memory.lifecycle("s1"))
    assert memory.flush(timeout=0).pending == 0  # nothing of it was accepted
    assert_still_journaled_and_delivered(memory, backend, memcore_home)


@pytest.mark.parametrize("metadata", BAD_NOTES)
def test_b_note_metadata_that_cannot_be_stored_is_refused_at_the_call(make_memory, backend, memcore_home, metadata):
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    try:
        lc.remember("a note", metadata=metadata)
    except memcore.InvalidContent:
        pass
    else:
        raise AssertionError("accepted")
    assert memory.flush(timeout=0).pending == 0
    assert_still_journaled_and_delivered(memory, backend, memcore_home)


@pytest.mark.parametrize("metadata", [param.values[0] for param in BAD_NOTES])
def test_b_check_metadata_refuses_what_cannot_be_stored(metadata):
    with pytest.raises(memcore.InvalidContent):
        check.metadata(metadata)


def test_b_what_can_be_stored_passes_unchanged():
    metadata = {"source": "x", "n": [1, 2.5, None, True], "nested": {"é": "日本"}}
    assert check.metadata(metadata) is metadata
    assert check.metadata(None) is None
    calls = [{"id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"q": 1}'}}]
    (message,) = check.messages([{"role": "assistant", "content": None, "tool_calls": calls}])
    assert message.tool_calls == tuple(calls) and message.content == ""
    record = Message(role="assistant", content="x", tool_calls=tuple(calls))
    assert check.messages([record]) == (record,)
    assert check.text("café \U0001f600", "t") == "café \U0001f600"


def test_b_an_operation_the_writer_cannot_encode_is_left_out_and_reported(memcore_home, caplog):
    """The last line, for whatever reaches the writer unchecked: that operation is left out of its batch (the others
    are written), wait_durable says False for it, and the journal's error names it; the writer goes on."""
    path = memcore_home / "journal.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(path)
    try:
        s = Session(id="s")
        journal.append(1, "rec", s, "remember", Note(text="n", metadata={"k": cycle()}))
        assert not journal.wait_durable(WAIT)
        assert journal.error is not None and "a remember of session 's'" in journal.error
        assert "Circular reference" in journal.error
        assert any("could not be written to the journal" in r.getMessage() for r in caplog.records)
        journal.append(2, "rec", s, "write", turn("fine"))
        assert journal.wait_durable(WAIT)  # a later batch, whole
        assert journal._thread.is_alive()
        db = sqlite3.connect(path)
        try:
            assert db.execute("SELECT seq, kind FROM ops").fetchall() == [(2, "write")]
        finally:
            db.close()
        assert "operations could not be written" in (journal.error or "")  # still said: it was never on disk
    finally:
        assert journal.close(WAIT)


# -- B. a writer that cannot write says so, keeps trying, and claims nothing ----------------------------------------


class Breakage:
    """Makes a journal's writes fail with ``error`` while ``broken`` is set (``_write`` raises before touching the
    file, as SQLite does when the disk is full or gone); counts the attempts."""

    def __init__(self, journal: Journal, monkeypatch: pytest.MonkeyPatch, error: BaseException):
        self.broken = threading.Event()
        self.attempts = 0
        self.failed = 0
        real = journal._write

        def write(*args: Any) -> None:
            self.attempts += 1
            if self.broken.is_set():
                self.failed += 1
                raise error
            real(*args)

        monkeypatch.setattr(journal, "_write", write)


WRITE_ERRORS = [
    pytest.param(sqlite3.OperationalError("disk I/O error"), id="disk I/O error"),
    pytest.param(sqlite3.OperationalError("database or disk is full"), id="disk full"),
    pytest.param(OSError(28, "No space left on device"), id="OSError"),
    pytest.param(RuntimeError("anything else"), id="anything raised"),
]


@pytest.fixture
def held(backend: RecordingBackend) -> Iterator[Callable[[], None]]:
    """Hold every write, so the journal's rows stay pending (an acknowledged row leaves it)."""
    gate = backend.hold("write")
    yield gate.release


@pytest.mark.parametrize("error", WRITE_ERRORS)
def test_b_an_unwritable_journal_is_visible_and_written_once_it_can_be(
    make_memory, backend, memcore_home, monkeypatch, caplog, held, error
):
    memory = make_memory(backend)
    journal = journal_of(memory)
    path = memcore_home / "journal.sqlite3"
    breakage = Breakage(journal, monkeypatch, error)
    breakage.broken.set()
    lc = memory.lifecycle("s1")

    lc.sync_turn("u1", "a")
    start = time.monotonic()
    assert not journal.wait_durable(WAIT)  # the attempt that held u1 failed: said at once, not at the timeout
    assert time.monotonic() - start < WAIT / 2
    assert journal.error is not None and str(error) in journal.error
    assert journal._thread.is_alive()
    assert rows_of(path, journal.owner) == 0

    lc.sync_turn("u2", "a")
    assert not journal.wait_durable(WAIT)  # the next attempt (u1 kept, u2 with it) failed too
    assert breakage.failed >= 2
    failures = [r for r in caplog.records if "could not be written" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None  # logged once, with its traceback: rate-limited

    breakage.broken.clear()  # the disk is back
    lc.sync_turn("u3", "a")
    assert journal.wait_durable(WAIT)
    assert journal.error is None
    assert rows_of(path, journal.owner) == 3  # u1 and u2 kept through the failures, u3 after them
    assert any("is written again" in r.getMessage() for r in caplog.records)

    held()
    drain(memory)
    assert backend.texts("s1") == ["u1", "a", "u2", "a", "u3", "a"]  # delivered all along, in order
    eventually(lambda: rows_of(path, journal.owner) == 0)  # and acknowledged on disk (by the writer, in its time)


def test_b_acknowledgements_during_a_failure_are_not_lost(make_memory, backend, memcore_home, monkeypatch):
    """Operations delivered while the journal could not be written leave no row behind once it can be (their rows
    and deletes are kept and written together)."""
    memory = make_memory(backend)
    journal = journal_of(memory)
    breakage = Breakage(journal, monkeypatch, sqlite3.OperationalError("disk I/O error"))
    gate = backend.hold("write", "s1")
    lc = memory.lifecycle("s1")
    lc.sync_turn("u1", "a")
    assert journal.wait_durable(WAIT)  # on disk before the failure
    breakage.broken.set()
    lc.sync_turn("u2", "a")
    assert not journal.wait_durable(WAIT)
    gate.release()
    drain(memory)  # u1 and u2 acknowledged while writes fail
    assert rows_of(memcore_home / "journal.sqlite3", journal.owner) == 1  # u1's row: its delete is not written yet
    breakage.broken.clear()
    lc.sync_turn("u3", "a")
    drain(memory)
    assert journal.wait_durable(WAIT)
    eventually(lambda: rows_of(memcore_home / "journal.sqlite3", journal.owner) == 0)


def test_b_durability_sync_never_claims_what_it_did_not_get(
    make_memory, backend, memcore_home, monkeypatch, caplog, held
):
    memory = make_memory(backend, durability="sync")
    journal = journal_of(memory)
    path = memcore_home / "journal.sqlite3"
    breakage = Breakage(journal, monkeypatch, sqlite3.OperationalError("disk I/O error"))
    lc = memory.lifecycle("s1")
    lc.sync_turn("u0", "a")
    assert rows_of(path, journal.owner) == 1  # on disk when the call returned

    breakage.broken.set()
    start = time.monotonic()
    lc.sync_turn("u1", "a")  # returns (accepted, delivered later), and says it is not on disk
    lc.remember("n1")
    assert time.monotonic() - start < WAIT / 2
    assert rows_of(path, journal.owner) == 1
    warnings = [r for r in caplog.records if "durability='sync', but" in r.getMessage()]
    assert len(warnings) == 1 and "disk I/O error" in warnings[0].getMessage()  # once: rate-limited

    breakage.broken.clear()
    lc.sync_turn("u2", "a")
    assert rows_of(path, journal.owner) == 4  # on disk again when the call returns, what waited with it
    held()
    drain(memory)
    assert backend.texts("s1") == ["u0", "a", "u1", "a", "u2", "a"]


def test_b_close_with_an_unwritable_journal_returns_and_says_so(
    make_memory, backend, memcore_home, monkeypatch, caplog
):
    gate = backend.hold("write")
    memory = make_memory(backend, retry=memcore.RetryPolicy(initial=0.001, deadline=0.2))
    journal = journal_of(memory)
    breakage = Breakage(journal, monkeypatch, sqlite3.OperationalError("disk I/O error"))
    breakage.broken.set()
    memory.lifecycle("s1").sync_turn("u1", "a")
    gate.wait_entered()
    start = time.monotonic()
    memory.close(timeout=0.5)
    gate.release()
    eventually(lambda: not journal._thread.is_alive())  # the writer gave up at close: no hang
    assert time.monotonic() - start < WAIT
    assert any("not on disk at close" in r.getMessage() for r in caplog.records)


def test_b_spilled_operations_come_back_from_the_buffer_while_the_journal_cannot_be_written(
    make_memory, backend, memcore_home, monkeypatch
):
    """Past the pending bound, operations are kept in the journal only; while it cannot be written they are still in
    its buffer, and are loaded back from there, in order."""
    gate = backend.hold("write", "s1")
    memory = make_memory(backend, max_pending=4)
    journal = journal_of(memory)
    breakage = Breakage(journal, monkeypatch, sqlite3.OperationalError("disk I/O error"))
    breakage.broken.set()
    lc = memory.lifecycle("s1")
    texts = [f"u{i}" for i in range(12)]
    for text in texts:
        lc.sync_turn(text, "a")
    assert memory.flush(timeout=0).spilled > 0
    gate.release()
    report = drain(memory)
    assert report.pending == 0 and report.failed == 0
    assert backend.texts("s1") == [t for text in texts for t in (text, "a")]
    assert journal.error is not None  # all along
    breakage.broken.clear()


def test_b_the_report_shows_the_journal_error(make_memory, backend, monkeypatch, held):
    memory = make_memory(backend)
    journal = journal_of(memory)
    breakage = Breakage(journal, monkeypatch, sqlite3.OperationalError("disk I/O error"))
    breakage.broken.set()
    memory.lifecycle("s1").sync_turn("u1", "a")
    assert not journal.wait_durable(WAIT)
    report = memory.flush(timeout=0)
    assert report.journal_error is not None and "disk I/O error" in report.journal_error
    breakage.broken.clear()
    memory.lifecycle("s1").sync_turn("u2", "a")
    assert journal.wait_durable(WAIT)
    assert memory.flush(timeout=0).journal_error is None

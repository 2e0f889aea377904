"""memcore's journal in PostgreSQL, shared by processes standing in for the hosts of a fleet (issue 18, item 3).

Each process has its own ``MEMCORE_HOME``; they share one database. A process that closes with work left, or is
SIGKILLed while it holds undelivered work, is taken over: by the next Memory to start, or, once its lease expired, by
one that is running. What it accepted arrives once, in the order it was accepted, each session committed once after
its writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import memcore
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from memcore_postgres import PostgresJournal

WAIT = 60.0  # the longest a test waits for something that must happen (a takeover takes one lease and a renewal)


class Recording:
    """A backend named like the dead process's: records what arrives, in arrival order (test instrumentation)."""

    name = "rec"

    def __init__(self) -> None:
        self.log: list[tuple[str, str, Any]] = []

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        self.log.append(("write", session.id, tuple(m.content for m in messages)))

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self.log.append(("commit", session.id, None))

    def texts(self, sid: str) -> list[str]:
        return [t for kind, s, turn in list(self.log) if kind == "write" and s == sid for t in turn]

    def commits(self, sid: str) -> int:
        return sum(1 for kind, s, _ in list(self.log) if kind == "commit" and s == sid)

    def committed_after_writes(self, sid: str) -> bool:
        entries = [kind for kind, s, _ in list(self.log) if s == sid]
        return "commit" in entries and entries.index("commit") == len(entries) - 1


class Down:
    name = "rec"

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: object) -> None:
        raise memcore.TransientError("down")

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        raise memcore.TransientError("down")


def expected(sid: str, turns: int) -> list[str]:
    return [x for n in range(turns) for x in (f"{sid} q{n}", f"{sid} a{n}")]


def until(condition: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def rows(db: psycopg.Connection[Any], schema: str, table: str) -> int:
    return int(db.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()[0])  # type: ignore[index]


def test_operations_left_at_close_are_replayed_by_the_next_memory(
    dsn: str, schema: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    a = memcore.Memory(backends=[Down()], journal=PostgresJournal(dsn, schema=schema), stall_after=None)
    for sid in ("s1", "s2"):
        lc = a.lifecycle(sid)
        for n in range(5):
            lc.sync_turn(f"{sid} q{n}", f"{sid} a{n}")
        lc.end()
    report = a.close(timeout=0.3)
    assert report.pending > 0 and rows(db, schema, "ops") == report.journaled
    # Closed: what it left is anyone's, at once, or, if a call (or a check of the session order) was in flight at
    # the deadline, once it returned.
    until(lambda: rows(db, schema, "owners") == 0)

    rec = Recording()
    b = memcore.Memory(backends=[rec], journal=PostgresJournal(dsn, schema=schema))
    try:
        assert not b.flush(timeout=WAIT).timed_out
        for sid in ("s1", "s2"):
            assert rec.texts(sid) == expected(sid, 5)
            assert rec.commits(sid) == 1 and rec.committed_after_writes(sid)
    finally:
        assert b.close(timeout=WAIT).ok
    assert rows(db, schema, "ops") == 0 and rows(db, schema, "debts") == 0


def test_a_url_names_the_journal(dsn: str, db: psycopg.Connection[Any]) -> None:
    """``journal="postgresql://..."`` finds the store by the ``memcore.journals`` entry point of the scheme."""
    p = conninfo_to_dict(dsn)
    url = f"postgresql://{p['user']}:secret@{p['host']}:{p['port']}/{p['dbname']}"  # the test server trusts loopback
    memory = memcore.Memory(backends=[Recording()], journal=url)
    try:
        assert memory._journal is not None and isinstance(memory._journal.store, PostgresJournal)
        assert memory._journal.name == f"postgresql://{p['host']}:{p['port']}/{p['dbname']}#memcore_journal"
        assert "secret" not in repr(memory._journal.store)
    finally:
        assert memory.close(timeout=WAIT).ok
        db.execute('DROP SCHEMA IF EXISTS "memcore_journal" CASCADE')
    with pytest.raises(memcore.UnknownBackend, match="no journal store named 'nosuchdb'"):
        memcore.Memory(backends=[Recording()], journal="nosuchdb://somewhere")


CHILD = """
import os, sys, time
import memcore
from memcore_postgres import PostgresJournal

class Down:
    name = "rec"
    @memcore.hookimpl
    def memcore_write(self, session, messages):
        raise memcore.TransientError("down")
    @memcore.hookimpl
    def memcore_commit(self, session):
        raise memcore.TransientError("down")

dsn, schema, lease, sessions, turns = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
memory = memcore.Memory(backends=[Down()], journal=PostgresJournal(dsn, schema=schema, lease=lease), stall_after=None)
for n in range(turns):
    for s in range(sessions):
        memory.lifecycle(f"s{s}").sync_turn(f"s{s} q{n}", f"s{s} a{n}")
for s in range(sessions):
    memory.lifecycle(f"s{s}").end()
assert memory._journal.wait_durable(timeout=60)
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def child_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "host-a"
    home.mkdir()
    yield {**os.environ, "MEMCORE_HOME": str(home)}


def test_a_killed_host_is_taken_over_by_a_running_one_within_its_lease(
    dsn: str, schema: str, db: psycopg.Connection[Any], child_env: dict[str, str]
) -> None:
    lease, sessions, turns = 1.0, 8, 25
    rec = Recording()
    b = memcore.Memory(backends=[rec], journal=PostgresJournal(dsn, schema=schema, lease=lease))
    a = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), dsn, schema, str(lease), str(sessions), str(turns)],
        stdout=subprocess.PIPE,
        env=child_env,
        text=True,
    )
    try:
        assert a.stdout is not None and a.stdout.readline().strip() == "ready"
        assert rows(db, schema, "ops") == sessions * (turns + 1)  # A's turns and commits, on the database
        assert rec.log == []  # B leaves a running host's operations alone
        a.send_signal(signal.SIGKILL)
        a.wait(WAIT)
        killed = time.monotonic()
        until(lambda: all(rec.commits(f"s{s}") for s in range(sessions)))
        taken = time.monotonic() - killed
        assert not b.flush(timeout=WAIT).timed_out
        for s in range(sessions):
            assert rec.texts(f"s{s}") == expected(f"s{s}", turns), s  # once each, in the order A accepted them
            assert rec.commits(f"s{s}") == 1 and rec.committed_after_writes(f"s{s}")
        print(f"taken over {taken:.2f} s after the kill (lease {lease} s)")
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(WAIT)
        assert b.close(timeout=WAIT).ok
    assert rows(db, schema, "ops") == 0


PARTITIONED = """
import json, sys, time
import memcore
from memcore.testing import ManualClock
from memcore_postgres import PostgresJournal

class Down:
    \"\"\"Down for the sessions the other host takes over (records every call made to it, and when: before or after the
    partition), up for the session written after it.\"\"\"
    name = "rec"
    def __init__(self):
        self.phase, self.calls, self.log = "before", [], []
    def _call(self, kind, session, contents):
        self.calls.append([self.phase, kind, session.id])
        if session.id.startswith("s"):
            raise memcore.TransientError("down")
        self.log.append([kind, session.id, contents])
    @memcore.hookimpl
    def memcore_write(self, session, messages):
        self._call("write", session, [m.content for m in messages])
    @memcore.hookimpl
    def memcore_commit(self, session):
        self._call("commit", session, None)

dsn, schema, lease, sessions, turns = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
backend, clock = Down(), ManualClock()  # the clock of backoffs: no retry runs until this process moves it
retry = memcore.RetryPolicy(initial=1.0, multiplier=1.0, max_delay=1.0, deadline=3600.0, jitter=0.0)
store = PostgresJournal(dsn, schema=schema, lease=lease)
memory = memcore.Memory(backends=[backend], journal=store, retry=retry, clock=clock, stall_after=None)
for n in range(turns):
    for s in range(sessions):
        memory.lifecycle(f"s{s}").sync_turn(f"s{s} q{n}", f"s{s} a{n}")
for s in range(sessions):
    memory.lifecycle(f"s{s}").end()
deadline = time.monotonic() + 60
while memory.flush(timeout=0).retried < sessions and time.monotonic() < deadline:  # first writes tried
    time.sleep(0.01)
assert memory.flush(timeout=0).retried == sessions and memory._journal.wait_durable(timeout=60)
print("ready", flush=True)
sys.stdin.readline()  # meanwhile: stopped past its lease, taken over by the other host, resumed
backend.phase = "after"
clock.advance(60.0)  # every backoff is due: what this process still holds would be sent now
memory._scheduler.wake()
memory.lifecycle("after").sync_turn("after the partition", "ok")
memory.lifecycle("after").end()
while memory.flush(timeout=0).pending and time.monotonic() < deadline + 60:
    clock.advance(1.0)
    memory._scheduler.wake()
    time.sleep(0.01)
report = memory.close(timeout=60)
result = {"calls": backend.calls, "log": backend.log, "taken_over": report.taken_over, "pending": report.pending,
          "failed": report.failed, "delivered": report.delivered, "committed": report.committed}
print(json.dumps(result), flush=True)
"""


def test_a_host_stopped_past_its_lease_delivers_nothing_the_other_took_over(
    dsn: str, schema: str, db: psycopg.Connection[Any], child_env: dict[str, str]
) -> None:
    """A network partition, simulated by SIGSTOP: host A holds undelivered work and is stopped for longer than its
    lease; B takes it over and delivers it; A, resumed with every retry due at once, finds its lease lapsed and sends
    none of it (it makes no call for those sessions at all), then goes on with what it accepts from then on."""
    lease, sessions, turns = 1.0, 4, 10
    rec = Recording()
    b = memcore.Memory(backends=[rec], journal=PostgresJournal(dsn, schema=schema, lease=lease))
    a = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PARTITIONED), dsn, schema, str(lease), str(sessions), str(turns)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env,
        text=True,
    )
    try:
        assert a.stdout is not None and a.stdin is not None and a.stdout.readline().strip() == "ready"
        assert rows(db, schema, "ops") == sessions * (turns + 1)
        a.send_signal(signal.SIGSTOP)
        until(lambda: all(rec.commits(f"s{s}") for s in range(sessions)))  # B took over once A's lease expired
        assert not b.flush(timeout=WAIT).timed_out
        a.send_signal(signal.SIGCONT)
        a.stdin.write("go\n")
        a.stdin.flush()
        out, _ = a.communicate(timeout=WAIT)
        assert a.returncode == 0, out
        result = json.loads(out.strip().splitlines()[-1])
        late = [call for call in result["calls"] if call[0] == "after" and call[2] != "after"]
        assert late == [], f"A sent what B had taken over: {late}"
        assert result["log"] == [["write", "after", ["after the partition", "ok"]], ["commit", "after", None]]
        assert result["taken_over"] == sessions * (turns + 1)
        assert result["pending"] == 0 and result["failed"] == 0, result
        for s in range(sessions):
            assert rec.texts(f"s{s}") == expected(f"s{s}", turns), s  # once each, in order, by B
            assert rec.commits(f"s{s}") == 1 and rec.committed_after_writes(f"s{s}")
    finally:
        if a.poll() is None:
            a.send_signal(signal.SIGCONT)
            a.kill()
            a.wait(WAIT)
        assert b.close(timeout=WAIT).ok
    assert rows(db, schema, "ops") == 0


class Logged:
    """The service both hosts deliver to: one file that every delivery appends a line to (``host kind session
    contents``), so the order across processes is the order of the lines."""

    name = "log"

    def __init__(self, path: Path, host: str) -> None:
        self.path, self.host = path, host

    def _line(self, kind: str, session: memcore.Session, contents: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{self.host} {kind} {session.id} {contents}\n")

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        self._line("write", session, "|".join(m.content for m in messages))

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self._line("commit", session, "-")

    def lines(self) -> list[str]:
        return self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []


class Watched(PostgresJournal):
    """PostgresJournal that counts the answers that named an undelivered row to wait for (test instrumentation)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = 0
        self.waited = threading.Event()

    def waits_for(self, owner: str, backend: str, session: memcore.Session, loaded: int) -> float | None:
        earliest = super().waits_for(owner, backend, session, loaded)
        if earliest is not None:  # an undelivered row another host accepted (these tests spill nothing)
            self.refused += 1
            if self.refused >= 2:
                self.waited.set()
        return earliest


HANDED_OVER = """
import sys, threading
import memcore
from memcore_postgres import PostgresJournal

class Held:
    \"\"\"The same service as the parent's (a line per delivery in one file); A's first write is held in flight until
    the parent says so, as on a slow link.\"\"\"
    name = "log"
    def __init__(self, path):
        self.path, self.entered, self.release = path, threading.Event(), threading.Event()
    def _line(self, kind, session, contents):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"A {kind} {session.id} {contents}\\n")
    @memcore.hookimpl
    def memcore_write(self, session, messages):
        self.entered.set()
        assert self.release.wait(120)
        self._line("write", session, "|".join(m.content for m in messages))
    @memcore.hookimpl
    def memcore_commit(self, session):
        self._line("commit", session, "-")

dsn, schema, lease, path = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
backend = Held(path)
memory = memcore.Memory(backends=[backend], journal=PostgresJournal(dsn, schema=schema, lease=lease), stall_after=None)
memory.lifecycle("c").sync_turn("c q0", "c a0")
assert backend.entered.wait(60) and memory._journal.wait_durable(timeout=60)
print("ready", flush=True)
sys.stdin.readline()
backend.release.set()
print(memory.close(timeout=60).ok, flush=True)
"""


def test_a_conversation_handed_to_another_host_keeps_its_order_and_is_committed_after_its_writes(
    dsn: str, schema: str, child_env: dict[str, str], tmp_path: Path
) -> None:
    """A conversation moves from host A to host B between two turns while A's write of the first is still in flight
    (a slow link): B accepts the second turn and the end of the session at once, but delivers neither until A's write
    has returned (it asks the database before each operation), then delivers the turn and commits after both."""
    log = Logged(tmp_path / "service.log", "B")
    store = Watched(dsn, schema=schema, lease=5.0)
    b = memcore.Memory(backends=[log], journal=store)
    a = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HANDED_OVER), dsn, schema, "5.0", str(log.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env,
        text=True,
    )
    try:
        assert a.stdout is not None and a.stdin is not None and a.stdout.readline().strip() == "ready"
        lc = b.lifecycle("c")  # the next turn of the conversation reaches host B
        lc.sync_turn("c q1", "c a1")
        lc.end()
        assert store.waited.wait(WAIT), "B was never told to wait for A"
        assert log.lines() == []  # A's write is in flight: B has sent nothing, committed nothing
        a.stdin.write("release\n")
        a.stdin.flush()
        until(lambda: any(line.startswith("B commit c") for line in log.lines()))
        assert not b.flush(timeout=WAIT).timed_out
        out, _ = a.communicate(timeout=WAIT)
        assert a.returncode == 0 and out.strip() == "True", out
        lines = log.lines()
        assert lines[:3] == ["A write c c q0|c a0", "B write c c q1|c a1", "B commit c -"], lines
        assert lines[3:] in ([], ["A commit c -"]), lines  # A's close may commit its side of it too, afterwards
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(WAIT)
        assert b.close(timeout=WAIT).ok


DIES_HOLDING = """
import sys, time
import memcore
from memcore_postgres import PostgresJournal

class Down:
    name = "log"
    @memcore.hookimpl
    def memcore_write(self, session, messages):
        raise memcore.TransientError("down")
    @memcore.hookimpl
    def memcore_commit(self, session):
        raise memcore.TransientError("down")

dsn, schema, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
memory = memcore.Memory(backends=[Down()], journal=PostgresJournal(dsn, schema=schema, lease=lease), stall_after=None)
memory.lifecycle("c").sync_turn("c q0", "c a0")
memory.lifecycle("c").sync_turn("c q1", "c a1")
assert memory._journal.wait_durable(timeout=60)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_conversation_whose_first_host_dies_is_delivered_in_the_order_it_was_accepted(
    dsn: str, schema: str, child_env: dict[str, str], tmp_path: Path
) -> None:
    """Host A accepts two turns and cannot deliver them; the conversation moves to B, which accepts the third turn
    and the end, and waits; A is SIGKILLed; B takes A's turns over and puts them before its own: the service gets
    the three turns in the order they were accepted, then one commit."""
    log = Logged(tmp_path / "service.log", "B")
    store = Watched(dsn, schema=schema, lease=1.0)
    b = memcore.Memory(backends=[log], journal=store)
    a = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(DIES_HOLDING), dsn, schema, "1.0"],
        stdout=subprocess.PIPE,
        env=child_env,
        text=True,
    )
    try:
        assert a.stdout is not None and a.stdout.readline().strip() == "ready"
        lc = b.lifecycle("c")
        lc.sync_turn("c q2", "c a2")
        lc.end()
        assert store.waited.wait(WAIT), "B was never told to wait for A"
        assert log.lines() == []
        a.send_signal(signal.SIGKILL)
        a.wait(WAIT)
        until(lambda: any(line.startswith("B commit c") for line in log.lines()))
        report = b.flush(timeout=WAIT)
        assert not report.timed_out and report.failed == 0, report
        assert log.lines() == [
            "B write c c q0|c a0",
            "B write c c q1|c a1",
            "B write c c q2|c a2",
            "B commit c -",
        ]
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(WAIT)
        assert b.close(timeout=WAIT).ok


def test_a_host_that_outlived_its_lease_registers_again(
    dsn: str, schema: str, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresJournal(dsn, schema=schema, lease=30.0)
    memory = memcore.Memory(backends=[Recording()], journal=store)
    try:
        journal = memory._journal
        assert journal is not None
        db.execute(f"UPDATE \"{schema}\".owners SET expires = now() - interval '1 s'")  # as if cut off
        memory.lifecycle("s").sync_turn("q", "a")
        assert journal.wait_durable(timeout=WAIT)
        alive = db.execute(f'SELECT count(*) FROM "{schema}".owners WHERE expires > now()').fetchone()
        assert alive is not None and alive[0] == 1
        assert "lease" in caplog.text and "had expired" in caplog.text
    finally:
        memory.close(timeout=WAIT)


def test_bad_settings_are_refused(dsn: str) -> None:
    with pytest.raises(ValueError, match="lease"):
        PostgresJournal(dsn, lease=0)
    with pytest.raises(ValueError, match="schema"):
        PostgresJournal(dsn, schema="")
    with pytest.raises(ValueError, match="dsn"):
        PostgresJournal("host=localhost port=notaport ===")

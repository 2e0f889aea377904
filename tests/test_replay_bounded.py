"""Replay is bounded (issue 12, item 5): a start that finds N leftover operations holds at most ``max_pending`` of
them in memory (the rest stay in the journal and are loaded as lanes drain), renumbers them with one update per owner,
and keeps their order, the dead owners' spilled rows included."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from recording import WAIT, RecordingBackend
from test_reliability import drain

import memcore
from memcore._journal import encode
from memcore._records import Message, Note, Session
from memcore.journal import SQLiteJournal

OWNERS = ("00000000000000000001:gone-host:11", "00000000000000000002:gone-host:12", "00000000000000000003:gone-host:13")


def turn(text: str) -> tuple[Message, ...]:
    return (Message(role="user", content=text), Message(role="assistant", content="a"))


def leftovers(path: Path, count: int, sessions: int, backend: str = "fast") -> dict[str, list[str]]:
    """``count`` writes left by three dead owners, spread over ``sessions`` sessions, some pending and some spilled;
    returns each session's texts in the order they were accepted."""
    expected: dict[str, list[str]] = {f"s{k}": [] for k in range(sessions)}
    rows = []
    per_owner = count // len(OWNERS)
    for o, owner in enumerate(OWNERS):
        for n in range(per_owner if o < len(OWNERS) - 1 else count - per_owner * (len(OWNERS) - 1)):
            sid = f"s{n % sessions}"
            text = f"{o}:{n}"
            expected[sid].append(text)
            status = "spilled" if n % 3 == 0 else "pending"
            rows.append((owner, n + 1, backend, sid, "write", encode("write", turn(text)), status, time.time()))
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO ops (owner, seq, backend, session_id, parent_id, kind, payload, status, created) "
            "VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?)",
            rows,
        )
    db.close()
    return expected


class Fast:
    """Records what it is given, and how many operations its Memory held in memory at each write."""

    name = "fast"

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = {}
        self.commits: dict[str, int] = {}
        self.memory: memcore.Memory | None = None
        self.most_in_memory = 0

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[Message]) -> None:
        self.texts.setdefault(session.id, []).append(messages[0].content)
        if self.memory is not None:
            bound = self.memory._scheduler._bound
            self.most_in_memory = max(self.most_in_memory, bound.total)

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self.commits[session.id] = self.commits.get(session.id, 0) + 1


def new_journal(path: Path) -> None:
    memcore.Memory(backends=[RecordingBackend()], plugins=[], journal=path).close(timeout=WAIT)


def test_100000_leftover_operations_replay_in_order_within_max_pending(tmp_path, make_memory):
    journal = tmp_path / "journal.sqlite3"
    new_journal(journal)
    expected = leftovers(journal, 100_000, sessions=500)
    backend = Fast()
    memory = make_memory(backend, journal=journal, max_pending=2_000)
    backend.memory = memory
    report = memory.flush(timeout=120)
    assert not report.timed_out and report.failed == 0
    assert report.replayed == 100_000 and report.delivered == 100_000
    assert backend.texts == expected  # every session in the order its operations were accepted
    assert 0 < backend.most_in_memory <= 2_000
    report = memory.close(timeout=WAIT)
    assert backend.commits == {sid: 1 for sid in expected}  # close commits each replayed session once
    db = sqlite3.connect(journal)
    try:
        assert db.execute("SELECT count(*) FROM ops").fetchone() == (0,)
    finally:
        db.close()


def test_a_new_write_to_a_session_waiting_in_the_backlog_goes_after_it(tmp_path, make_memory):
    journal = tmp_path / "journal.sqlite3"
    new_journal(journal)
    expected = leftovers(journal, 3_000, sessions=3, backend="rec")
    backend = RecordingBackend()
    gate = backend.hold("write")  # nothing is delivered until the new write and its commit were accepted
    memory = make_memory(backend, journal=journal, max_pending=100)
    lc = memory.lifecycle("s0")
    lc.sync_turn("new", "reply")
    lc.end()
    gate.wait_entered()  # a first batch of the backlog is loaded into the lanes, s0's among them
    lane = memory._scheduler._lanes.find(memory._backends[0], "s0")
    assert lane is not None and lane.in_memory > 0
    lc.end()  # the commit already queued (behind the backlog) covers what was loaded: nothing new to commit
    gate.release()
    drain(memory)
    texts = backend.texts("s0")
    assert texts == [t for text in expected["s0"] for t in (text, "a")] + ["new", "reply"]
    assert backend.commits("s0") == 1  # the one commit covers the backlog and the new write
    memory.close(timeout=WAIT)
    assert backend.commits("s0") == 1 and backend.commits("s1") == 1  # close commits the other replayed sessions
    assert backend.violations == []


def test_claim_leaves_the_rows_on_disk_and_renumbers_them_in_order(tmp_path):
    """Each dead owner's rows move past the last, in order; the gaps acknowledged rows left between them may stay
    (they are inside what the claim reserved), and a row that failed for good stays with its owner."""
    journal = tmp_path / "journal.sqlite3"
    new_journal(journal)
    leftovers(journal, 30, sessions=2, backend="rec")
    with sqlite3.connect(journal) as db:  # delivered before the crash (gaps), and one failed for good
        db.execute("DELETE FROM ops WHERE seq IN (2, 3, 9) OR (owner = ? AND seq = 10)", (OWNERS[1],))
        db.execute("UPDATE ops SET status = 'failed' WHERE owner = ? AND seq = 5", (OWNERS[2],))
    db.close()
    kept = [(o, n) for o in range(3) for n in range(10) if n + 1 not in (2, 3, 9) and (o, n) not in ((1, 9), (2, 4))]
    reserved: list[int] = []
    j = memcore._journal.Journal(journal)
    try:
        claim = j.claim(["rec"], lambda n: reserved.append(n) or 1_000)
        db = sqlite3.connect(journal)
        try:
            rows = db.execute("SELECT owner, seq, status, payload FROM ops ORDER BY owner = ?, seq", (j.owner,))
            rows = rows.fetchall()
        finally:
            db.close()
        assert [(owner, seq, status) for owner, seq, status, _ in rows[:1]] == [(OWNERS[2], 5, "failed")]
        mine = rows[1:]
        assert {(owner, status) for owner, _, status, _ in mine} == {(j.owner, "spilled")}
        seqs = [seq for _, seq, _, _ in mine]
        assert seqs == sorted(seqs) and seqs[0] == 1_000 and seqs[-1] < 1_000 + reserved[0]
        assert claim.backlog == {"rec": (len(kept), seqs[-1])} and claim.owed == ()
        texts = [memcore._journal.decode("write", p)[0].content for *_, p in mine]
        assert texts == [f"{o}:{n}" for o, n in kept]
    finally:
        j.close(WAIT)


def test_spilled_rows_read_back_are_the_operations_as_accepted(tmp_path):
    """read_spilled builds the rows into one JSON array in SQLite: every field comes back as it was accepted, the
    acceptance time to the last bit, text that JSON escapes, optional message fields, notes and commits."""
    journal = memcore._journal.Journal(tmp_path / "journal.sqlite3")
    tricky = 'quote " backslash \\ newline \n tab \t \u00e9\u4e2d\U0001f600 </script>'
    ops = [
        ("write", Session(id="s1"), (Message(role="user", content=tricky), Message(role="assistant", content=""))),
        (
            "write",
            Session(id="s2", parent_id="p", user_id="u"),
            (
                Message(role="assistant", content="x", tool_calls=({"id": "c1", "function": {"name": "f"}},)),
                Message(role="tool", content="42", name="f", tool_call_id="c1"),
            ),
        ),
        ("remember", Session(id="s1"), Note(text=tricky, kind="fact", metadata={"n": 1.5, "list": [1, None, "x"]})),
        ("commit", Session(id="s1"), None),
        ("rewind", Session(id="s2", parent_id="p", user_id="u"), 3),
    ]
    try:
        created = [
            journal.append(10 + n, "rec", s, kind, payload, spilled=True) for n, (kind, s, payload) in enumerate(ops)
        ]
        assert journal.wait_durable(timeout=WAIT)
        entries = journal.read_spilled("rec", 0, 100)
        assert [(e.seq, e.kind, e.session, e.payload, e.created) for e in entries] == [
            (10 + n, kind, s, payload, at) for n, ((kind, s, payload), at) in enumerate(zip(ops, created, strict=True))
        ]
        assert [e.seq for e in journal.read_spilled("rec", 11, 2)] == [12, 13]
        assert journal.read_spilled("rec", 14, 100) == [] and journal.read_spilled("other", 0, 100) == []
    finally:
        journal.close(WAIT)


def test_spilled_rows_too_large_for_one_sqlite_string_are_read_one_by_one(tmp_path):
    """Rows that together pass SQLite's longest string (SQLITE_MAX_LENGTH) cannot be built into one JSON array: they
    are fetched one by one, the same operations in the same order, none left behind."""
    journal = memcore._journal.Journal(tmp_path / "journal.sqlite3")
    big = "x" * 3_000
    store = journal.store
    assert isinstance(store, SQLiteJournal)
    reader = None
    try:
        for n in range(6):
            journal.append(n + 1, "rec", Session(id="s"), "write", turn(f"{n} {big}"), spilled=True)
        assert journal.wait_durable(timeout=WAIT)
        assert [e.seq for e in store.read_spilled(journal.owner, "rec", 0, 10)] == [1, 2, 3, 4, 5, 6]
        reader = store._reader
        assert reader is not None
        if hasattr(reader, "setlimit"):  # Python 3.11+: SQLite's own limit
            reader.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)  # one row fits, six together do not
        else:  # Python 3.10: the error SQLite raises for it

            class Limited:
                def execute(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
                    if "json_group_array" in sql:
                        raise sqlite3.DataError("string or blob too big")
                    return reader.execute(sql, args)  # type: ignore[union-attr]

            store._reader = Limited()  # type: ignore[assignment]
        entries = store.read_spilled(journal.owner, "rec", 0, 10)
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
        assert [e.payload[0].content for e in entries] == [f"{n} {big}" for n in range(6)]
        assert {e.created for e in entries} != {0.0} and [e.session for e in entries] == [Session(id="s")] * 6
    finally:
        if reader is not None:
            store._reader = reader  # the real connection, for close
        journal.close(WAIT)


def test_spilled_rows_are_read_back_in_chunks_not_one_at_a_time(tmp_path, make_memory, monkeypatch):
    """A lane that drains one operation at a time must not trigger a reload (a query) per operation: a reload waits
    until there is room for a quarter of the bound (before, 100,000 leftovers took 99,501 one-row queries)."""
    journal = tmp_path / "journal.sqlite3"
    new_journal(journal)
    expected = leftovers(journal, 4_000, sessions=4)
    reads: list[int] = []
    original = memcore._journal.Journal.read_spilled

    def counted(self: memcore._journal.Journal, backend: str, after: int, limit: int) -> list:
        found = original(self, backend, after, limit)
        reads.append(len(found))
        return found

    monkeypatch.setattr(memcore._journal.Journal, "read_spilled", counted)
    backend = Fast()
    memory = make_memory(backend, journal=journal, max_pending=200, workers=1)
    backend.memory = memory
    report = memory.flush(timeout=60)
    assert not report.timed_out and report.delivered == 4_000
    assert backend.texts == expected
    assert 0 < backend.most_in_memory <= 200
    assert sum(reads) == 4_000
    assert len(reads) <= 4_000 // 50 + 2, f"{len(reads)} reads of {sorted(reads)[:5]}... rows"  # chunks of >= 50


def test_the_journal_connections_page_caches_are_bounded(tmp_path):
    """RSS must not grow with the journal's size: the writer's and the reader's connections (the file's cache and
    the temporary tables' one, where the claim sorts) are capped at CACHE_KIB, not SQLite's 2,000 KiB."""
    from memcore._checkpoint import CACHE_KIB

    journal = SQLiteJournal(tmp_path / "journal.sqlite3")
    journal.register("me", sync=False)
    try:
        journal.claim("me", ["recording"], 1)
        journal.read_spilled("me", "recording", 0, 10)  # opens the reader
        assert journal._db is not None and journal._reader is not None
        for db in (journal._db, journal._reader):
            for schema in ("main", "temp"):
                assert db.execute(f"PRAGMA {schema}.cache_size").fetchone()[0] == -CACHE_KIB
    finally:
        assert journal.close("me", 5.0)

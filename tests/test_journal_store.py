"""The journal's storage contract (memcore.journal.JournalStore): the SQLite file is one store, not a special case.

A store written from the contract alone (rows in a dict that several Memories share, standing in for a database every
host of a fleet reaches) carries a Memory's operations across a close with work left, and the next Memory replays them
in order, commits each session once, and leaves nothing behind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from recording import WAIT, RecordingBackend
from test_reliability import FAST, drain

import memcore
from memcore.journal import Batch, Claim, JournalStore, Spilled, SQLiteJournal, decode


class Shelf:
    """What the "database" holds: owners running, operations by (owner, seq), commit debts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the database's own consistency, as a server's transactions give it
        self.owners: set[str] = set()
        self.ops: dict[tuple[str, int], dict[str, Any]] = {}
        self.debts: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.transactions = 0


class DictJournal:
    """A JournalStore on a :class:`Shelf`, following the protocol's docstrings and nothing else."""

    def __init__(self, shelf: Shelf, name: str = "dict://shelf") -> None:
        self.shelf = shelf
        self.name = name
        self.registered: list[tuple[str, bool]] = []

    def register(self, owner: str, *, sync: bool) -> None:
        self.registered.append((owner, sync))
        with self.shelf.lock:
            self.shelf.owners.add(owner)

    def write(self, owner: str, batch: Batch) -> None:
        s = self.shelf
        with s.lock:
            s.transactions += 1
            for _, seq, backend, sid, parent, kind, payload, _created, status, user in batch.rows:
                s.ops[(owner, seq)] = dict(
                    backend=backend, sid=sid, parent=parent, kind=kind, payload=payload, status=status, user=user
                )
            for seq in batch.acks:
                s.ops.pop((owner, seq), None)
            for error, seq in batch.fails:
                if (owner, seq) in s.ops:
                    s.ops[(owner, seq)].update(status="failed", error=error)
            for (backend, user, sid), session in batch.debts.items():
                key = (owner, backend, user or "", sid)
                if session is not None:
                    s.debts.setdefault(key, dict(parent=session.parent_id))
                elif sid:
                    s.debts.pop(key, None)
                else:
                    for k in [k for k in s.debts if k[:3] == (owner, backend, user or "")]:
                        del s.debts[k]
            for backend, user, scoped in batch.erasures:
                for k, op in list(s.ops.items()):
                    if (op["backend"], op["user"] or "", op["status"]) == (backend, user or "", "failed") and (
                        scoped is None or op["sid"] == scoped
                    ):
                        del s.ops[k]

    def claim(
        self, owner: str, backends: Sequence[str], first_seq: int | Callable[[int], int], *, fresh: bool = False
    ) -> Claim:
        s = self.shelf
        with s.lock:
            mine = sorted(
                k
                for k, op in s.ops.items()
                if k[0] not in s.owners and op["backend"] in backends and op["status"] in ("pending", "spilled")
            )
            found = [s.ops[k] for k in mine]
            committing = {(op["backend"], op["user"] or "", op["sid"]) for op in found if op["kind"] == "commit"}
            owed: dict[tuple[str, str, str], memcore.Session] = {}
            for k, debt in sorted(s.debts.items()):
                if k[0] not in s.owners and k[1] in backends and k[1:] not in committing:
                    owed.setdefault(k[1:], memcore.Session(id=k[3], parent_id=debt["parent"], user_id=k[2] or None))
            base = first_seq(len(mine) + len(owed)) if callable(first_seq) else first_seq
            backlog: dict[str, tuple[int, int]] = {}
            for n, k in enumerate(mine):
                op = s.ops.pop(k)
                op.update(status="spilled", key=op.get("key") or f"{k[0]}:{k[1]}")
                s.ops[(owner, base + n)] = op
                count, _ = backlog.get(op["backend"], (0, 0))
                backlog[op["backend"]] = (count + 1, base + n)
            for n, ((backend, _, _), session) in enumerate(owed.items(), start=len(mine)):
                s.ops[(owner, base + n)] = dict(
                    backend=backend, sid=session.id, parent=session.parent_id, kind="commit", payload=None,
                    status="spilled", user=session.user_id,
                )  # fmt: skip
                count, _ = backlog.get(backend, (0, 0))
                backlog[backend] = (count + 1, base + n)
            for k in [k for k in s.debts if k[0] not in s.owners and k[1] in backends]:
                del s.debts[k]
        return Claim(backlog=backlog, owed=tuple((k[0], v) for k, v in owed.items()))

    def read_spilled(self, owner: str, backend: str, after: int, limit: int) -> list[Spilled]:
        with self.shelf.lock:
            keys = sorted(
                k
                for k, op in self.shelf.ops.items()
                if k[0] == owner and k[1] > after and op["backend"] == backend and op["status"] == "spilled"
            )[:limit]
            ops = [(k[1], self.shelf.ops[k]) for k in keys]
        return [
            Spilled(
                seq=seq,
                session=memcore.Session(id=op["sid"], parent_id=op["parent"], user_id=op["user"]),
                kind=op["kind"],
                payload=decode(op["kind"], op["payload"]),
                key=op.get("key"),
            )
            for seq, op in ops
        ]

    def close(self, owner: str, timeout: float) -> bool:
        with self.shelf.lock:
            self.shelf.owners.discard(owner)
        return True


class Down:
    """The service is down: every write, note and commit raises TransientError."""

    name = "rec"

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: object) -> None:
        raise memcore.TransientError("down")

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note) -> None:
        raise memcore.TransientError("down")

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        raise memcore.TransientError("down")


def test_both_stores_implement_the_protocol(tmp_path: Any) -> None:
    assert isinstance(SQLiteJournal(tmp_path / "j.sqlite3"), JournalStore)
    assert isinstance(DictJournal(Shelf()), JournalStore)


def test_a_store_of_its_own_carries_operations_to_the_next_memory() -> None:
    shelf = Shelf()
    first = DictJournal(shelf)
    a = memcore.Memory(backends=[Down()], journal=first, retry=FAST, stall_after=None)
    for sid in ("s1", "s2"):
        lc = a.lifecycle(sid)
        for n in range(3):
            lc.sync_turn(f"{sid} q{n}", f"{sid} a{n}")
        lc.remember(f"{sid} note")
    a.lifecycle("s1").end()  # s1's commit is asked for; s2's comes from the close (G10: every dirty session)
    report = a.close(timeout=0.2)
    assert report.pending > 0 and report.journaled == report.pending
    ((a_owner, sync),) = first.registered
    assert not sync and shelf.owners == set()  # closed: what it left is anyone's
    assert {k[0] for k in shelf.ops} == {a_owner} and len(shelf.ops) == report.journaled

    b_store = DictJournal(shelf)
    rec = RecordingBackend("rec")
    b = memcore.Memory(backends=[rec], journal=b_store, retry=FAST)
    try:
        drain(b)
        for sid in ("s1", "s2"):
            assert rec.texts(sid) == [x for n in range(3) for x in (f"{sid} q{n}", f"{sid} a{n}")]
            assert [note.text for note in rec.calls("remember", sid)] == [f"{sid} note"]
        assert rec.commits("s1") == 1 and rec.commits("s2") == 1  # once each: s2 by the close, after its writes
        assert rec.log.index(("commit", "s2", None)) > max(
            i for i, e in enumerate(rec.log) if e[1] == "s2" and e[0] != "commit"
        )
        assert rec.violations == []
    finally:
        assert b.close(timeout=WAIT).ok
    assert shelf.ops == {} and shelf.debts == {}  # every replayed operation acknowledged in the store, none owed
    assert shelf.owners == set()


def test_a_store_that_cannot_write_is_reported_and_nothing_is_lost() -> None:
    shelf = Shelf()
    store = DictJournal(shelf)
    broken = threading.Event()
    real = store.write

    def write(owner: str, batch: Batch) -> None:
        if broken.is_set():
            raise OSError("the database is unreachable")
        real(owner, batch)

    store.write = write  # type: ignore[method-assign]
    broken.set()
    rec = RecordingBackend("rec")
    gate = rec.hold("write")
    memory = memcore.Memory(backends=[rec], journal=store, retry=FAST)
    try:
        memory.lifecycle("s").sync_turn("q", "a")
        gate.wait_entered()
        assert memory._journal is not None and not memory._journal.wait_durable(timeout=WAIT)
        assert "dict://shelf could not be written: OSError: the database is unreachable" in (
            memory.flush(timeout=0).journal_error or ""
        )
        broken.clear()
        gate.release()
        drain(memory)
        assert memory._journal.wait_durable(timeout=WAIT) and memory.flush(timeout=0).journal_error is None
        assert rec.texts("s") == ["q", "a"]
    finally:
        assert memory.close(timeout=WAIT).ok
    assert shelf.ops == {} and shelf.owners == set()


@pytest.mark.parametrize("bad", [object(), 3, b"\0"])
def test_a_journal_that_is_neither_path_nor_store_is_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="journal must be"):
        memcore.Memory(backends=[RecordingBackend("rec")], journal=bad)  # type: ignore[arg-type]


class LeasedJournal(DictJournal):
    """A store that keeps owners by lease, as a database several hosts share does: ``renew`` is called by the idle
    writer every third of ``lease``; ``cut_off`` stands for a host the database no longer hears from."""

    lease = 0.03

    def __init__(self, shelf: Shelf) -> None:
        super().__init__(shelf)
        self.cut_off = threading.Event()
        self.renewals = 0

    def write(self, owner: str, batch: Batch) -> None:
        if self.cut_off.is_set():
            raise OSError("the database is unreachable")
        super().write(owner, batch)

    def renew(self, owner: str, backends: Sequence[str]) -> bool:
        if self.cut_off.is_set():
            raise OSError("the database is unreachable")
        with self.shelf.lock:
            self.renewals += 1
            self.shelf.owners.add(owner)
            return any(
                k[0] not in self.shelf.owners and op["backend"] in backends and op["status"] in ("pending", "spilled")
                for k, op in self.shelf.ops.items()
            )


def test_a_running_memory_takes_over_an_owner_whose_lease_ended() -> None:
    shelf = Shelf()
    a_store, b_store = LeasedJournal(shelf), LeasedJournal(shelf)
    a = memcore.Memory(backends=[Down()], journal=a_store, retry=FAST, stall_after=None)
    rec = RecordingBackend("rec")
    b = memcore.Memory(backends=[rec], journal=b_store, retry=FAST)
    try:
        for sid in ("s1", "s2"):
            lc = a.lifecycle(sid)
            for n in range(4):
                lc.sync_turn(f"{sid} q{n}", f"{sid} a{n}")
            lc.end()
        assert a._journal is not None and a._journal.wait_durable(timeout=WAIT)
        until_renewed = b_store.renewals + 3
        wait_for(lambda: b_store.renewals >= until_renewed)
        assert rec.log == []  # a running owner's operations are left alone
        a_store.cut_off.set()  # A's host is cut off: its lease ends, B finds its rows at its next renewal
        with shelf.lock:
            shelf.owners.discard(a._journal.owner)
        wait_for(lambda: rec.commits("s1") == 1 and rec.commits("s2") == 1)
        drain(b)
        for sid in ("s1", "s2"):
            assert rec.texts(sid) == [x for n in range(4) for x in (f"{sid} q{n}", f"{sid} a{n}")]
        assert rec.violations == []
    finally:
        a.close(timeout=0.2)
        assert b.close(timeout=WAIT).ok
    assert shelf.ops == {}  # what B took over is acknowledged; A, cut off, wrote nothing more


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = threading.Event()
    timer = threading.Timer(WAIT, deadline.set)
    timer.start()
    try:
        while not condition():
            assert not deadline.wait(0.001), "condition never held"
    finally:
        timer.cancel()

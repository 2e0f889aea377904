"""`memcore status`: the journal's processes, what is pending, owed and failed per backend, the oldest pending
operation, recent failures and the store's counts; read-only, and never a traceback."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import memcore
from memcore import Message, Note, Session, SQLiteBackend
from memcore._cli import main
from memcore._status import read_status, status_text

LONG_ERROR = (
    "422: the service refused the note: field 'text' exceeds the maximum length of 8192 characters for this tier"
)

# A Memory that dies (os._exit) with two writes of "tuesday" pending in the journal (they hang) and one write of
# alice's "monday" delivered but never committed: a gone owner, two operations for the next start, one debt.
GONE = """
import os, sys, time
import memcore
from memcore import SQLiteBackend

class Slow(SQLiteBackend):
    @memcore.hookimpl
    def memcore_write(self, session, messages, key, attempt):
        if messages[0].content.startswith("slow"):
            time.sleep(60)
        super().memcore_write(session=session, messages=messages, key=key, attempt=attempt)

memory = memcore.Memory(backends=[Slow(path=sys.argv[1])], plugins=[], durability="sync")
monday = memory.lifecycle("monday", user_id="alice")
monday.sync_turn("fast turn", "ok")
deadline = time.monotonic() + 20
while memory._scheduler.report().delivered < 1 and time.monotonic() < deadline:
    time.sleep(0.01)
tuesday = memory.lifecycle("tuesday")
tuesday.sync_turn("slow turn 1", "a")
tuesday.sync_turn("slow turn 2", "b")
time.sleep(0.5)  # the journal writer records the debt and the two appends
os._exit(0)
"""


class Refusing(SQLiteBackend):
    """The embedded store; every note fails for good."""

    @memcore.hookimpl
    def memcore_remember(self, session: Session, note: Note, key: str, attempt: int) -> None:
        raise ValueError(LONG_ERROR)


class Hung(SQLiteBackend):
    """Writes wait until released: they stay pending in a running Memory."""

    def __init__(self, path: Path) -> None:
        super().__init__(path=path)
        self.release = threading.Event()

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message], key: str, attempt: int) -> None:
        self.release.wait(30)
        super().memcore_write(session=session, messages=messages, key=key, attempt=attempt)


def _wait(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _fill(memcore_home: Path) -> tuple[memcore.Memory, Hung]:
    """The busy home, made step by step (the order matters: who takes over what)."""
    store = memcore_home / "memory.sqlite3"
    memcore_home.mkdir(parents=True, exist_ok=True)
    # 1. A Memory on another store whose notes fail for good (its rows are its own: nothing to take over).
    other = memcore_home / "other.sqlite3"
    refusing = memcore.Memory(backends=[Refusing(path=other)], plugins=[])
    lc = refusing.lifecycle("notes")
    lc.remember("first note", kind="fact")
    lc.remember("second note", kind="fact")
    assert refusing.close(timeout=10).failed == 2
    # 2. A process that dies with two writes pending and a debt, on the main store.
    subprocess.run([sys.executable, "-c", textwrap.dedent(GONE), str(store)], check=True, timeout=120)
    # 3. A running Memory on a third store with a hung write and a queued one.
    hung = Hung(memcore_home / "third.sqlite3")
    running = memcore.Memory(backends=[hung], plugins=[])
    lc = running.lifecycle("wednesday")
    lc.sync_turn("held", "a")
    lc.sync_turn("queued", "b")
    return running, hung


@pytest.fixture
def home(memcore_home: Path) -> Iterator[Path]:
    running, hung = _fill(memcore_home)
    _wait(lambda: _journal_rows(memcore_home, "wednesday") == 2)
    yield memcore_home
    hung.release.set()
    running.close(timeout=10)


def _journal_rows(home: Path, session: str) -> int:
    with sqlite3.connect(f"{(home / 'journal.sqlite3').as_uri()}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM ops WHERE session_id = ?", (session,)).fetchone()[0])


def _files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_status_of_a_busy_home(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # whole backend keys
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"memcore home: {home}" in out
    assert "2 processes: 1 running, 1 gone" in out
    store, third, other = (
        f"sqlite:{(home / n).resolve()}" for n in ("memory.sqlite3", "third.sqlite3", "other.sqlite3")
    )
    rows = {line.split()[0]: line.split()[1:5] for line in out.splitlines() if line.startswith("sqlite:")}
    #                  RUNNING AT START OWE COMMIT FAILED
    assert rows[store] == ["0", "2", "1", "0"]
    assert rows[third] == ["2", "0", "0", "0"]
    assert rows[other] == ["0", "0", "0", "2"]
    assert "Oldest pending: write of session 'tuesday'" in out and "waiting for the next Memory" in out
    assert "Recent failures (2, newest first):" in out
    assert "remember of session 'notes'" in out and 'last error: ValueError("422: the service refused' in out
    assert "Store: sessions" in out


def test_status_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["status", "--json", "--failures", "1"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["home"] == str(home) and got["journal"] == str(home / "journal.sqlite3")
    owners = sorted(got["owners"], key=lambda o: o["running"])
    assert [o["running"] for o in owners] == [False, True]
    assert owners[0]["pending"] == 2 and owners[1]["pending"] == 2
    backends = {b["backend"].rsplit("/", 1)[1]: b for b in got["backends"]}
    assert backends["memory.sqlite3"] | {"oldest_pending": None} == {
        "backend": f"sqlite:{(home / 'memory.sqlite3').resolve()}",
        "pending": 2,
        "running": 0,
        "at_start": 2,
        "owing_commit": 1,
        "failed": 0,
        "oldest_pending": None,
    }
    assert backends["memory.sqlite3"]["oldest_pending"] <= time.time()
    assert got["oldest_pending"]["session_id"] == "tuesday" and got["oldest_pending"]["running"] is False
    assert got["failed"] == 2 and len(got["failures"]) == 1
    (failure,) = got["failures"]
    assert failure["kind"] == "remember" and failure["last_error"] == repr(ValueError(LONG_ERROR))
    assert got["store_stats"]["sessions"] >= 1


def test_status_reads_and_never_writes(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With a running Memory on the journal (its -wal and -shm files exist): the databases and their write-ahead
    logs are byte-identical and nothing is created; only SQLite's -shm index may differ (every reader of a WAL
    database, the running Memory too, takes its read lock there)."""
    before = _files(home)
    for argv in (["status"], ["status", "--json"], ["status", "--failures", "50"]):
        assert main(argv) == 0
    capsys.readouterr()
    after = _files(home)
    assert set(after) == set(before)

    def read(files: dict[str, str]) -> dict[str, str]:  # what status reads (third.* is the running Memory's own store)
        return {k: v for k, v in files.items() if not k.endswith("-shm") and not k.startswith("third.")}

    assert read(after) == read(before) and len(read(before)) >= 3


def test_status_of_files_no_process_has_open_is_byte_identical(memcore_home: Path, capsys) -> None:
    running, hung = _fill(memcore_home)
    hung.release.set()
    running.close(timeout=10)
    db = sqlite3.connect(memcore_home / "memory.sqlite3")  # the dead process's WAL, checkpointed away
    db.execute("SELECT count(*) FROM sessions").fetchone()
    db.close()
    before = _files(memcore_home)
    assert not [n for n in before if n.endswith(("-wal", "-shm"))]  # closed: nothing of a WAL is left
    for argv in (["status"], ["status", "--json"]):
        assert main(argv) == 0
    assert _files(memcore_home) == before
    out = capsys.readouterr().out
    assert "1 gone" in out or "gone" in out


def test_status_of_an_empty_home_creates_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    home = tmp_path / "nowhere"
    monkeypatch.setenv("MEMCORE_HOME", str(home))
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "Journal: none yet" in out and "Store: none yet" in out
    assert main(["status", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["journal"] is None and got["owners"] == [] and got["store_stats"] is None
    assert not home.exists()


def test_status_after_everything_was_delivered(memcore_home: Path, capsys) -> None:
    memory = memcore.Memory(plugins=[])
    memory.lifecycle("s1").sync_turn("hello", "hi")
    assert memory.close(timeout=10).ok
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "no process has it open" in out
    assert "Nothing pending, no session owes a commit, nothing failed." in out
    assert "Store: sessions 1, messages 2" in out


def test_status_with_named_files(tmp_path: Path, memcore_home: Path, capsys) -> None:
    store = tmp_path / "team.sqlite3"
    journal = tmp_path / "team-journal.sqlite3"
    memory = memcore.Memory(backends=[SQLiteBackend(path=store)], plugins=[], journal=journal)
    memory.lifecycle("s1").sync_turn("hello", "hi")
    memory.close(timeout=10)
    assert main(["status", "--journal", str(journal), "--path", str(store), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["journal"] == str(journal) and got["store"] == str(store) and got["store_stats"]["messages"] == 2
    assert not memcore_home.exists()  # the default home is not touched


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--journal", "{text}"], "is not a memcore journal: it is not an SQLite database; it was left as it is"),
        (["--journal", "{store}"], "is a memcore memory store, not a journal; it was left as it is"),
        (["--journal", "{missing}"], "no journal at"),
        (["--journal", "{dir}"], "is a directory, not a journal"),
        (["--path", "{journal}"], "is memcore's journal, not a memory store; it was left as it is"),
        (["--path", "{text}"], "is not a memcore memory store"),
        (["--path", "{missing}"], "no memory store at"),
        (["--failures", "0"], "must be at least 1"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path: Path, memcore_home: Path, capsys, argv, message) -> None:
    store = tmp_path / "store.sqlite3"
    journal = tmp_path / "journal.sqlite3"
    memory = memcore.Memory(backends=[SQLiteBackend(path=store)], plugins=[], journal=journal)
    memory.lifecycle("s1").sync_turn("hello", "hi")
    memory.close(timeout=10)
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    names = {"text": text, "store": store, "journal": journal, "missing": tmp_path / "missing", "dir": tmp_path}
    argv = [a.format(**names) for a in argv]
    before = _files(tmp_path)
    assert main(["status", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3  # argparse's usage lines, or one memcore: error: line
    assert _files(tmp_path) == before


def test_an_unusable_default_journal_is_an_error_and_left_alone(memcore_home: Path, capsys) -> None:
    memcore_home.mkdir(parents=True)
    (memcore_home / "journal.sqlite3").write_text("garbage")
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("memcore: error: ") and "it was left as it is" in err and "Traceback" not in err
    assert (memcore_home / "journal.sqlite3").read_text() == "garbage"


#: A version-1 journal (memcore before owners' start time and boot id, users, keys and debts).
SCHEMA_V1 = """
CREATE TABLE owners (owner TEXT PRIMARY KEY, pid INTEGER, host TEXT, started REAL NOT NULL);
CREATE TABLE ops (
    owner TEXT NOT NULL, seq INTEGER NOT NULL, backend TEXT NOT NULL, session_id TEXT NOT NULL, parent_id TEXT,
    kind TEXT NOT NULL, payload TEXT, status TEXT NOT NULL DEFAULT 'pending', last_error TEXT, created REAL NOT NULL,
    PRIMARY KEY (owner, seq)
);
PRAGMA user_version = 1;
"""


def test_a_version_1_journal_is_read_as_it_is(tmp_path: Path, capsys) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_V1)
        db.execute("INSERT INTO owners VALUES (?, ?, ?, ?)", (f"{1:020d}:h:{2**30}", 2**30, "h", time.time() - 60))
        db.execute(
            "INSERT INTO ops VALUES (?, 1, 'rec', 's1', NULL, 'write', '[]', 'failed', 'boom', ?)",
            (f"{1:020d}:h:{2**30}", time.time() - 50),
        )
        db.execute(
            "INSERT INTO ops VALUES (?, 2, 'rec', 's1', NULL, 'write', '[]', 'pending', NULL, ?)",
            (f"{1:020d}:h:{2**30}", time.time() - 40),
        )
    db.close()
    before = path.read_bytes()
    assert main(["status", "--journal", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["owners"][0]["running"] is False
    assert got["backends"] == [
        {
            "backend": "rec",
            "pending": 1,
            "running": 0,
            "at_start": 1,
            "owing_commit": 0,
            "failed": 1,
            "oldest_pending": got["backends"][0]["oldest_pending"],
        }
    ]
    assert got["failures"][0]["user_id"] is None and got["failures"][0]["last_error"] == "boom"
    assert path.read_bytes() == before


def test_the_table_fits_and_ages_read_well(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    memory = memcore.Memory(backends=[Refusing(path=tmp_path / "s.sqlite3")], plugins=[], journal=path)
    memory.lifecycle("s1", user_id="alice").remember("x", kind="fact")
    memory.close(timeout=10)
    status = read_status(path, None)
    accepted = status.failures[0].accepted
    text = status_text(status, width=80, now=accepted + 3725)
    assert "(1 h 2 min ago)" in text and "remember of session 's1' of user 'alice'" in text
    assert all(len(line) <= 80 for line in text.splitlines() if "/tmp" not in line), text


def test_help(capsys) -> None:
    assert main(["status", "--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--journal", "--path", "--json", "--failures", "Read-only", "memcore status --json"):
        assert word in out

"""Whatever file a user points the command line at: no traceback, no damage. A command refuses a file that is not
what it needs with one clear line and a non-zero exit, and leaves the file byte-for-byte as it was (nothing moved,
nothing written beside it); a read-only command opens the store read-only and creates nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from recording import RecordingBackend

import memcore
from memcore import SQLiteBackend
from memcore._cli import main

LOG = '{"op": "note", "text": "Prefers green tea", "kind": "preference"}\n'


def make_text(path: Path) -> None:
    path.write_text("my shopping list\nmilk\n", encoding="utf-8")


def make_foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    db.execute("INSERT INTO invoices (total) VALUES (12.5)")
    db.commit()
    db.close()


def make_store(path: Path) -> None:
    memory = memcore.Memory(backends=[SQLiteBackend(path)], plugins=[], journal=False)
    memory.lifecycle("s1").remember("Prefers green tea", kind="preference")
    assert memory.close(timeout=10).ok


def make_journal(path: Path) -> None:
    memory = memcore.Memory(backends=[RecordingBackend()], plugins=[], journal=path)
    memory.lifecycle("s1").sync_turn("hello", "hi")
    assert memory.close(timeout=10).ok


def make_empty(path: Path) -> None:
    path.write_bytes(b"")


def make_dir(path: Path) -> None:
    path.mkdir()


KINDS: dict[str, Callable[[Path], None]] = {
    "text": make_text,
    "foreign": make_foreign,
    "store": make_store,
    "journal": make_journal,
    "empty": make_empty,
    "dir": make_dir,
}


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file under ``folder`` with its bytes (None for a directory): what must not change."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    for kind, make in KINDS.items():
        make(folder / kind)
    return folder


REFUSALS = [
    (["pending", "--journal", "{text}"], "is not a memcore journal: it is not an SQLite database"),
    (["pending", "--journal", "{foreign}"], "is not a memcore journal: it is an SQLite database of something else"),
    (["pending", "--journal", "{store}"], "is a memcore memory store, not a journal"),
    (["pending", "--journal", "{empty}"], "is empty, not a memcore journal"),
    (["pending", "--journal", "{dir}"], "is a directory, not a journal"),
    (["retry", "--journal", "{text}"], "is not a memcore journal: it is not an SQLite database"),
    (["retry", "--journal", "{foreign}"], "is not a memcore journal: it is an SQLite database of something else"),
    (["retry", "--journal", "{store}"], "is a memcore memory store, not a journal"),
    (["retry", "--journal", "{empty}"], "is empty, not a memcore journal"),
    (["retry", "--deliver", "--journal", "{journal}", "--path", "{text}"], "is not a memcore memory store"),
    (["retry", "--deliver", "--journal", "{journal}", "--path", "{foreign}"], "is not a memcore memory store"),
    (["retry", "--deliver", "--journal", "{journal}", "--path", "{journal}"], "is memcore's journal, not a memory"),
    (["recall", "tea", "--path", "{text}"], "is not a memcore memory store: it is not an SQLite database"),
    (["recall", "tea", "--path", "{foreign}"], "SQLite database of something else (its tables: invoices)"),
    (["recall", "tea", "--path", "{journal}"], "is memcore's journal, not a memory store"),
    (["recall", "tea", "--path", "{empty}"], "no memory store at"),
    (["recall", "tea", "--path", "{dir}"], "is a directory, not a memory store"),
    (["replay", "{log}", "-q", "--path", "{text}"], "is not a memcore memory store: it is not an SQLite database"),
    (["replay", "{log}", "-q", "--path", "{foreign}"], "SQLite database of something else (its tables: invoices)"),
    (["replay", "{log}", "-q", "--path", "{journal}"], "is memcore's journal, not a memory store"),
    (["replay", "{log}", "-q", "--path", "{dir}"], "is a directory, not a memory store"),
    (["demo", "-q", "--path", "{text}"], "is not a memcore memory store"),
    (["demo", "-q", "--path", "{foreign}"], "is not a memcore memory store"),
    (["demo", "-q", "--path", "{journal}"], "is memcore's journal, not a memory store"),
]


@pytest.mark.parametrize(("argv", "expected"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_a_file_that_is_not_what_the_command_needs_is_refused_and_left_untouched(
    argv: list[str], expected: str, files: Path, tmp_path: Path, memcore_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "chat.jsonl"
    log.write_text(LOG, encoding="utf-8")
    before = snapshot(files)
    argv = [a.format(log=log, **{kind: files / kind for kind in KINDS}) for a in argv]

    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.startswith("memcore: error: ") and len(err.strip().splitlines()) == 1
    assert expected in err
    assert snapshot(files) == before  # byte for byte, and nothing moved aside or created beside it
    assert not (memcore_home / "memory.sqlite3").exists()


def test_retry_does_not_move_a_text_file_aside(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (files / "text").read_bytes()
    assert main(["retry", "--journal", str(files / "text")]) == 2
    assert (files / "text").read_bytes() == before
    assert not list(files.glob("text.unreadable-*"))


def _set_user_version(path: Path, version: int) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


def test_retry_refuses_a_journal_of_a_newer_memcore_without_moving_it(
    tmp_path: Path, memcore_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    named = tmp_path / "journal.sqlite3"
    make_journal(named)
    _set_user_version(named, 99)
    before = snapshot(tmp_path)
    assert main(["retry", "--journal", str(named)]) == 2
    assert "journal of a newer memcore (schema 99" in capsys.readouterr().err
    assert main(["retry", "--deliver", "--journal", str(named)]) == 2
    assert main(["pending", "--journal", str(named)]) == 2
    capsys.readouterr()
    assert snapshot(tmp_path) == before


def test_a_damaged_default_journal_is_reported_with_status_1_and_left_for_the_library(
    memcore_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    memcore_home.mkdir()
    journal = memcore_home / "journal.sqlite3"
    journal.write_bytes(b"\x00garbage that is not a database" * 10)
    before = snapshot(memcore_home)
    for argv in (["pending"], ["pending", "--json"], ["retry"], ["retry", "--deliver"]):
        assert main(argv) == 1, argv
        out, err = capsys.readouterr()
        assert out == "" and "Traceback" not in err
        assert f"{journal} is not a memcore journal: it is not an SQLite database" in err
        assert "the next Memory that starts moves it aside" in err
    assert snapshot(memcore_home) == before


def test_a_default_store_that_is_not_memcores_is_refused_with_status_1(
    memcore_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    memcore_home.mkdir()
    make_foreign(memcore_home / "memory.sqlite3")
    log = tmp_path / "chat.jsonl"
    log.write_text(LOG, encoding="utf-8")
    before = snapshot(memcore_home)
    assert main(["replay", str(log), "-q"]) == 1
    assert main(["recall", "tea"]) == 1
    err = capsys.readouterr().err
    assert err.count("memory.sqlite3 is not a memcore memory store") == 2 and "Traceback" not in err
    assert snapshot(memcore_home) == before


def test_a_store_of_a_newer_memcore_is_refused_and_left_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite3"
    make_store(store)
    _set_user_version(store, 99)
    log = tmp_path / "chat.jsonl"
    log.write_text(LOG, encoding="utf-8")
    before = snapshot(tmp_path)
    assert main(["recall", "tea", "--path", str(store)]) == 2
    assert main(["replay", str(log), "-q", "--path", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("is a memory store of a newer memcore (schema 99") == 2
    assert snapshot(tmp_path) == before


# -- read-only commands open read-only ------------------------------------------------------------------------------


def test_recall_opens_the_store_read_only_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "stores"
    folder.mkdir()
    store = folder / "store.sqlite3"
    make_store(store)
    before = snapshot(folder)
    opened: list[tuple[str, bool]] = []
    real = sqlite3.connect

    def spy(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append((str(database), bool(kwargs.get("uri"))))
        return real(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    assert main(["recall", "green tea", "--path", str(store)]) == 0
    assert "Prefers green tea" in capsys.readouterr().out
    to_store = [(db, uri) for db, uri in opened if "store.sqlite3" in db]
    assert to_store, opened
    assert all(uri and "mode=ro" in db for db, uri in to_store), to_store  # never a read-write connection
    assert snapshot(folder) == before  # no -wal or -shm file left beside it either


def test_pending_reads_a_journal_in_use_without_disturbing_it(
    tmp_path: Path, memcore_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = RecordingBackend()
    gate = backend.hold("write")
    memory = memcore.Memory(backends=[backend], plugins=[], durability="sync")  # on disk before sync_turn returns
    try:
        memory.lifecycle("s1").sync_turn("hello", "hi")
        gate.wait_entered()
        assert main(["pending"]) == 0
        out = capsys.readouterr().out
        assert "s1" in out and "pending (running)" in out
    finally:
        gate.release()
        assert memory.close(timeout=10).ok


# -- writing commands may make a new store where there is none ------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_replay_makes_a_new_store_where_there_is_none(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "new" / "store.sqlite3"
    if kind == "empty":
        store.parent.mkdir()
        store.write_bytes(b"")
    log = tmp_path / "chat.jsonl"
    log.write_text(LOG, encoding="utf-8")
    assert main(["replay", str(log), "-q", "--path", str(store)]) == 0
    assert "notes 1" in capsys.readouterr().out
    assert main(["recall", "green tea", "--path", str(store)]) == 0
    assert "Prefers green tea" in capsys.readouterr().out


def test_replay_into_an_existing_store_adds_to_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store.sqlite3"
    make_store(store)
    log = tmp_path / "chat.jsonl"
    log.write_text(LOG.replace("green tea", "black coffee"), encoding="utf-8")
    assert main(["replay", str(log), "-q", "--path", str(store)]) == 0
    assert "notes 2" in capsys.readouterr().out

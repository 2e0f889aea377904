"""The journal's WAL checkpoints run beside the writer, never inside its COMMIT (memcore/_checkpoint.py)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from test_reliability import eventually

import memcore
from memcore import _checkpoint
from memcore._checkpoint import Checkpointer, writer_pragmas
from memcore._journal import Journal


def _database(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    writer_pragmas(db)
    db.execute("CREATE TABLE t (n INTEGER, pad TEXT)")
    return db


def _rows_without_the_wal(path: Path, tmp: Path) -> int:
    """What the main database file holds by itself: only what a checkpoint copied there."""
    alone = tmp / "alone.sqlite3"
    shutil.copyfile(path, alone)
    with sqlite3.connect(alone) as db:
        try:
            return int(db.execute("SELECT count(*) FROM t").fetchone()[0])
        except sqlite3.OperationalError:  # not even the table: nothing was checkpointed
            return -1


def test_the_writer_never_checkpoints(memcore_home: Path) -> None:
    journal = Journal(memcore_home / "journal.sqlite3")
    try:
        assert journal.store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert journal.store._db.execute("PRAGMA journal_size_limit").fetchone()[0] == _checkpoint.SIZE_LIMIT
    finally:
        assert journal.close(timeout=10)


def test_a_checkpoint_runs_once_enough_rows_were_written(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    db = _database(path)
    checkpointer = Checkpointer(path)
    try:
        db.executemany("INSERT INTO t VALUES (?, 'x')", [(n,) for n in range(100)])
        checkpointer.wrote(_checkpoint.EVERY - 1)  # not yet: the rows stay in the WAL
        assert checkpointer.runs == 0 and _rows_without_the_wal(path, tmp_path) == -1
        checkpointer.wrote(1)
        eventually(lambda: checkpointer.runs == 1)
        assert _rows_without_the_wal(path, tmp_path) == 100 and checkpointer.truncates == 0
        assert path.with_name("j.sqlite3-wal").stat().st_size > 0  # PASSIVE leaves the file for reuse
    finally:
        assert checkpointer.close(timeout=10)
        db.close()


def test_past_the_bound_the_wal_is_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_checkpoint, "WAL_BOUND", 64 * 1024)
    path = tmp_path / "j.sqlite3"
    db = _database(path)
    checkpointer = Checkpointer(path)
    try:
        db.executemany("INSERT INTO t VALUES (?, ?)", [(n, "x" * 1000) for n in range(500)])
        wal = path.with_name("j.sqlite3-wal")
        assert wal.stat().st_size > _checkpoint.WAL_BOUND
        checkpointer.wrote(_checkpoint.EVERY)
        eventually(lambda: checkpointer.runs == 1)
        assert checkpointer.truncates == 1 and wal.stat().st_size == 0
        assert _rows_without_the_wal(path, tmp_path) == 500
    finally:
        assert checkpointer.close(timeout=10)
        db.close()


def test_a_memory_checkpoints_its_journal_as_it_writes(memcore_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: a Memory's journal is checkpointed as it writes (the writer alone would let the WAL grow)."""
    monkeypatch.setattr(_checkpoint, "WAL_BOUND", 256 * 1024)
    memory = memcore.Memory(plugins=[])
    try:
        lc = memory.lifecycle("long")
        for n in range(3_000):
            lc.sync_turn(f"question {n} " + "q" * 200, f"answer {n} " + "a" * 200)
        assert memory.flush(timeout=60).timed_out is False
        journal = memory._journal
        assert journal is not None
        eventually(lambda: journal.store.checkpointer.runs >= 1, timeout=60)
    finally:
        memory.close(timeout=60)

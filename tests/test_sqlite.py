"""The embedded SQLite backend, on a real database file under MEMCORE_HOME."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from recording import WAIT

import memcore
from memcore import Session
from memcore._sqlite import SQLiteBackend, fts_query


def rows(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql, args).fetchall()


def test_default_store_is_wal_under_memcore_home(make_memory, memcore_home):
    memory = make_memory()
    assert memory.backends == ("sqlite",)
    memory.lifecycle("s1").sync_turn("hello", "world")
    memory.flush(timeout=WAIT)
    path = memcore_home / "memory.sqlite3"
    assert path.exists()
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "SELECT session_id, role, content FROM messages ORDER BY id") == [
        ("s1", "user", "hello"),
        ("s1", "assistant", "world"),
    ]


def test_turns_become_recallable_on_commit_notes_at_once(make_memory):
    memory = make_memory()
    lc = memory.lifecycle("s1")
    lc.sync_turn("I brew espresso every morning", "Lovely ritual")
    lc.remember("Takes oat milk", kind="preference")
    memory.flush(timeout=WAIT)
    assert [r.text for r in lc.recall("espresso milk")] == ["Takes oat milk"]
    lc.end()
    memory.flush(timeout=WAIT)
    got = lc.recall("espresso milk")
    assert {r.text for r in got} == {"Takes oat milk", "I brew espresso every morning"}
    assert all(r.source == "sqlite" and r.session_id == "s1" and r.score is not None for r in got)


def test_recall_ranks_by_bm25_across_sessions_and_honours_limit(make_memory):
    memory = make_memory()
    lc = memory.lifecycle("a")
    lc.sync_turn("rust lifetimes and rust borrow checker", "indeed")
    lc.switch("b", reason="new")
    lc.sync_turn("a note on gardening, with one mention of rust", "tomatoes")
    lc.switch("c", reason="new")
    lc.remember("Rust is the user's main language", kind="fact")
    lc.end()
    memory.flush(timeout=WAIT)
    got = memory.recall("rust", limit=10)
    assert {r.session_id for r in got} == {"a", "b", "c"}
    assert got[0].text == "rust lifetimes and rust borrow checker"
    assert [r.score for r in got] == sorted((r.score for r in got), reverse=True)
    assert len(memory.recall("rust", limit=2)) == 2


def test_recall_with_punctuation_and_fts_syntax_is_safe(make_memory):
    memory = make_memory()
    lc = memory.lifecycle("s1")
    lc.remember('He said "coffee" AND tea? NEAR(x) -- * ^')
    memory.flush(timeout=WAIT)
    for query in ["coffee?", '"coffee"', "AND OR NOT", "NEAR(", "*", "", "???"]:
        lc.recall(query)  # never raises an FTS syntax error
    assert [r.text for r in lc.recall("coffee?")] == ['He said "coffee" AND tea? NEAR(x) -- * ^']
    assert fts_query("") == "" and fts_query('a"b') == '"a" OR "b"'


def test_commit_marks_committed_and_counts_commits(make_memory, memcore_home):
    memory = make_memory()
    lc = memory.lifecycle("s1", parent_session_id="s0")
    lc.sync_turn("u1", "a1")
    lc.end()
    memory.flush(timeout=WAIT)
    lc.sync_turn("u2", "a2")
    memory.close(timeout=WAIT)
    path = memcore_home / "memory.sqlite3"
    assert rows(path, "SELECT id, parent_id, commits FROM sessions") == [("s1", "s0", 2)]
    assert rows(path, "SELECT count(*) FROM messages WHERE committed = 0") == [(0,)]


def test_history_round_trips_tool_calls_and_unicode(tmp_path):
    backend = SQLiteBackend(path=tmp_path / "db.sqlite3")
    session = Session(id="emoji 🧠 ../x")
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        memcore.Message(role="assistant", content="", tool_calls=(call,)),
        memcore.Message(role="tool", content="עברית e\u0301 🎉", tool_call_id="c1", name="f"),
    ]
    backend.memcore_open_session(session)
    backend.memcore_write(session, messages)
    assert list(backend.memcore_history(session)) == messages
    assert list(backend.memcore_history(Session(id="emoji 🧠"))) == []
    backend.memcore_close()


def test_a_megabyte_message_is_stored_whole(make_memory):
    memory = make_memory()
    big = "x" * (1 << 20)
    lc = memory.lifecycle("s1")
    lc.sync_turn(big, "ok")
    memory.flush(timeout=WAIT)
    backend = memory.plugin_manager.get_plugin("sqlite")
    assert backend.memcore_history(Session(id="s1"))[0].content == big


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        SQLiteBackend(path=path)


def _writer(path: str, name: str, turns: int) -> None:
    memory = memcore.Memory(backends=["sqlite"], settings={"sqlite": {"path": path}}, plugins=[])
    lc = memory.lifecycle(name)
    for i in range(turns):
        lc.sync_turn(f"{name} {i}", "ok")
    lc.end()
    report = memory.close(timeout=60)
    assert report.ok, report


def test_several_processes_share_one_store(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, f"p{k}", 200)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    for k in range(3):
        got = rows(
            Path(path), "SELECT content FROM messages WHERE session_id = ? AND role = 'user' ORDER BY id", f"p{k}"
        )
        assert [c for (c,) in got] == [f"p{k} {i}" for i in range(200)]
    assert rows(Path(path), "SELECT id, commits FROM sessions ORDER BY id") == [("p0", 1), ("p1", 1), ("p2", 1)]


def test_exit_without_close_still_commits_and_drains(tmp_path, memcore_home):
    script = textwrap.dedent(
        """
        import memcore
        memory = memcore.Memory(plugins=[])
        lc = memory.lifecycle("s1")
        for i in range(100):
            lc.sync_turn(f"turn {i}", "ok")
        lc.switch("s2", reason="new")
        lc.sync_turn("last words", "ok")
        # no close(): the interpreter's exit runs it
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    path = memcore_home / "memory.sqlite3"
    assert rows(path, "SELECT count(*) FROM messages") == [(202,)]
    assert rows(path, "SELECT id, commits FROM sessions ORDER BY id") == [("s1", 1), ("s2", 1)]


def test_a_store_locked_past_busy_timeout_is_transient_and_the_retry_lands(tmp_path):
    """Another process holding the write lock longer than ``busy_timeout`` makes the hook raise TransientError (memcore
    retries it and keeps it journaled), never SQLite's OperationalError (a final failure); once the lock is gone the
    same call stores the turn, once."""
    path = tmp_path / "memory.sqlite3"
    backend = SQLiteBackend(path, busy_timeout=0.01)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other writer holds the lock
    turn = [memcore.Message(role="user", content="held up")]
    try:
        with pytest.raises(memcore.TransientError, match="locked"):
            backend.memcore_write(Session(id="s"), turn, key="k1", attempt=1)
    finally:
        other.execute("ROLLBACK")
        other.close()
    backend.memcore_write(Session(id="s"), turn, key="k1", attempt=2)
    assert rows(path, "SELECT content FROM messages") == [("held up",)]
    with pytest.raises(sqlite3.OperationalError, match="no such table"):  # other errors stay what they were
        backend._db().execute("SELECT * FROM no_such_table")

"""`memcore forget`: says what it will erase, asks on a terminal, and erases only that user's session or user."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from recording import WAIT
from test_sqlite_users import SCHEMA_V1, make_v1_store

import memcore
from memcore import Message, Session, SQLiteBackend
from memcore._cli import main

USERS: tuple[str | None, ...] = ("alice", "bob", None)


class Terminal(io.StringIO):
    """A stdin that says it is a terminal, and what input() answers on it: ``answers`` in turn (then end of input);
    ``prompts`` records what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[str] = []
        self.prompts: list[str] = []

    def isatty(self) -> bool:
        return True

    def input(self, prompt: str = "") -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    tty = Terminal()
    monkeypatch.setattr(sys, "stdin", tty)
    monkeypatch.setattr("builtins.input", tty.input)
    return tty


@pytest.fixture
def not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))

    def never(prompt: str = "") -> str:
        raise AssertionError("input() was called with stdin not a terminal")

    monkeypatch.setattr("builtins.input", never)


def fill(store: Path, users: Sequence[str | None] = USERS) -> None:
    """Each user: sessions s1 and s2, one committed turn and one note in each (the same words for everyone)."""
    memory = memcore.Memory(backends=[SQLiteBackend(path=store)], plugins=[])
    for user in users:
        for sid in ("s1", "s2"):
            lc = memory.lifecycle(sid, user_id=user)
            lc.sync_turn(f"espresso for {user} in {sid}", "noted")
            lc.remember(f"{user} likes espresso ({sid})")
            lc.end()
    assert memory.close(timeout=WAIT).ok


def snapshot(*dirs: Path) -> dict[str, bytes]:
    """Every file under ``dirs``, by path, with its bytes."""
    return {str(p): p.read_bytes() for d in dirs if d.exists() for p in sorted(d.rglob("*")) if p.is_file()}


def scope(store: Path, user: str | None, sid: str | None = None) -> dict[str, int]:
    backend = SQLiteBackend(path=store)
    try:
        return backend.scope_counts(user, sid)
    finally:
        backend.memcore_close()


def recalled(store: Path, user: str | None) -> set[str]:
    backend = SQLiteBackend(path=store)
    try:
        return {r.text for r in backend.memcore_recall("espresso", None, 100, user)}
    finally:
        backend.memcore_close()


ALL = {"sessions": 2, "messages": 4, "notes": 2}
ONE = {"sessions": 1, "messages": 2, "notes": 1}
NONE = {"sessions": 0, "messages": 0, "notes": 0}


@pytest.fixture
def store(memcore_home: Path) -> Path:
    """The default store, filled (its journal is the default one, empty now)."""
    path = memcore_home / "memory.sqlite3"
    fill(path)
    return path


# -- asking ---------------------------------------------------------------------------------------------------------


def test_refused_at_the_prompt_leaves_every_file_byte_identical(store, memcore_home, terminal, capsys):
    before = snapshot(memcore_home)
    terminal.answers.append("n")
    assert main(["forget", "--user", "alice", "--session", "s1"]) == 1
    out = capsys.readouterr().out
    assert f"This erases session 's1' of user 'alice' from {store}: 1 session, 2 messages and 1 note." in out
    assert "Nothing was erased." in out
    assert terminal.prompts == ["Erase it? [y/N] "]
    assert snapshot(memcore_home) == before
    # no answer at all (end of input) is no too; and so is anything but y or yes
    for answer in ([], ["", "N"], ["yes please"]):
        terminal.answers[:] = answer
        assert main(["forget", "--user", "alice"]) == 1
        assert "Nothing was erased." in capsys.readouterr().out
        assert snapshot(memcore_home) == before


def test_confirmed_at_the_prompt_erases_the_user(store, terminal, capsys):
    terminal.answers.append("y")
    assert main(["forget", "--user", "alice"]) == 0
    out = capsys.readouterr().out
    assert "This erases everything of user 'alice'" in out and "2 sessions, 4 messages and 2 notes" in out
    assert "Erased everything of user 'alice': 2 sessions, 4 messages and 2 notes." in out
    assert scope(store, "alice") == NONE
    assert scope(store, "bob") == ALL and scope(store, None) == ALL
    assert recalled(store, "alice") == set() and len(recalled(store, "bob")) == 4


def test_not_a_terminal_without_yes_is_refused_and_changes_nothing(store, memcore_home, not_a_terminal, capsys):
    before = snapshot(memcore_home)
    assert main(["forget", "--user", "alice"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("memcore: error: ") and "--yes" in err
    assert snapshot(memcore_home) == before


# -- erasing only the scope -----------------------------------------------------------------------------------------


def test_yes_erases_only_that_session_of_that_user(tmp_path, memcore_home, not_a_terminal, capsys):
    store = tmp_path / "team.sqlite3"
    fill(store)
    assert main(["forget", "--user", "alice", "--session", "s1", "--yes", "--path", str(store)]) == 0
    out = capsys.readouterr().out
    assert "Erased session 's1' of user 'alice': 1 session, 2 messages and 1 note." in out
    assert scope(store, "alice", "s1") == NONE
    assert scope(store, "alice", "s2") == ONE
    assert scope(store, "bob") == ALL and scope(store, None) == ALL
    assert recalled(store, "alice") == {"espresso for alice in s2", "alice likes espresso (s2)"}
    assert main(["forget", "--user", "alice", "--session", "s1", "--yes", "--path", str(store)]) == 0
    assert "Nothing to forget" in capsys.readouterr().out


def test_default_user_is_its_own_flag(store, not_a_terminal, capsys):
    assert main(["forget", "--default-user", "--session", "s2", "--yes"]) == 0
    assert "Erased session 's2' of the default user" in capsys.readouterr().out
    assert scope(store, None) == ONE and scope(store, "alice") == ALL


def test_a_named_store_leaves_memcore_home_alone(tmp_path, memcore_home, not_a_terminal, capsys):
    store = tmp_path / "elsewhere" / "store.sqlite3"
    store.parent.mkdir()
    backend = SQLiteBackend(path=store)
    session = Session(id="s1", user_id="alice")
    backend.memcore_write(session, [Message(role="user", content="espresso")])
    backend.memcore_close()
    assert not memcore_home.exists()
    assert main(["forget", "--user", "alice", "--yes", "--path", str(store)]) == 0
    assert not memcore_home.exists()  # no journal was made, and the default store was not opened
    assert scope(store, "alice") == NONE


# -- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--user", ""],
        ["--user", "   "],
        ["--user", "x" * 257],
        ["--user", "a\x00b"],
        ["--user", "a\nb"],
        ["--user", "alice", "--session", ""],
        ["--user", "alice", "--session", "s\x7f"],
        ["--user", "alice", "--session", "y" * 257],
    ],
)
def test_bad_ids_are_one_line_and_exit_2(argv, store, memcore_home, capsys):
    before = snapshot(memcore_home)
    assert main(["forget", *argv, "--yes"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("memcore: error: ") and "Traceback" not in err
    assert snapshot(memcore_home) == before


def test_exactly_one_of_user_and_default_user(store, capsys):
    assert main(["forget", "--yes"]) == 2
    assert main(["forget", "--user", "alice", "--default-user", "--yes"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_missing_store_or_a_file_that_is_not_one_is_refused(tmp_path, not_a_terminal, capsys):
    missing = tmp_path / "missing.sqlite3"
    assert main(["forget", "--user", "alice", "--yes", "--path", str(missing)]) == 2
    assert "no memory store at" in capsys.readouterr().err
    assert not missing.exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a store\n")
    assert main(["forget", "--user", "alice", "--yes", "--path", str(text)]) == 2
    assert "is not a memcore memory store" in capsys.readouterr().err
    assert text.read_text() == "not a store\n"


def test_help_lists_forget(capsys):
    assert main(["--help"]) == 0
    assert "forget" in capsys.readouterr().out
    assert main(["forget", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--default-user" in out and "--yes" in out


# -- the journal, and stores of schema 1 ------------------------------------------------------------------------------

_LEFT_BEHIND = textwrap.dedent(
    """
    import os, sys, threading
    import memcore

    class Hung(memcore.SQLiteBackend):
        @memcore.hookimpl
        def memcore_write(self, session, messages):
            threading.Event().wait()  # never delivered: the process dies with its writes in the journal

    memory = memcore.Memory(backends=[Hung(path=sys.argv[1])], plugins=[], durability="sync")
    for user, sid in [("alice", "s1"), ("alice", "s1"), ("alice", "s2"), ("bob", "s1")]:
        memory.lifecycle(sid, user_id=user).sync_turn(f"queued espresso of {user} {sid}", "ok")
    os._exit(0)
    """
)


def test_what_of_the_scope_waits_in_the_journal_is_dropped(store, memcore_home, not_a_terminal, capsys):
    done = subprocess.run([sys.executable, "-c", _LEFT_BEHIND, str(store)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert main(["forget", "--user", "alice", "--session", "s1", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "and 2 operations of it waiting in the journal" in out
    assert "Also delivered what waited in the journal for this store" in out
    assert scope(store, "alice", "s1") == NONE
    assert "queued espresso of alice s2" in {m.content for m in _history(store, "alice", "s2")}
    assert "queued espresso of bob s1" in {m.content for m in _history(store, "bob", "s1")}
    assert not any("alice s1" in m.content for m in _history(store, "alice", "s1"))
    journal = memcore_home / "journal.sqlite3"
    db = sqlite3.connect(journal)
    try:
        assert db.execute("SELECT count(*) FROM ops WHERE user_id = 'alice' AND session_id = 's1'").fetchone() == (0,)
    finally:
        db.close()


def _history(store: Path, user: str | None, sid: str) -> list[Message]:
    backend = SQLiteBackend(path=store)
    try:
        return list(backend.memcore_history(Session(id=sid, user_id=user)))
    finally:
        backend.memcore_close()


class Refusing(SQLiteBackend):
    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        raise ValueError("400: message rejected")


def test_failed_operations_it_cannot_drop_are_named(store, not_a_terminal, capsys):
    memory = memcore.Memory(backends=[Refusing(path=store)], plugins=[])
    memory.lifecycle("s1", user_id="alice").sync_turn("refused espresso", "a")
    assert memory.close(timeout=WAIT).failed == 1
    assert main(["forget", "--user", "alice", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "Not erased: 1 failed operation of it, kept in the journal" in out
    assert scope(store, "alice") == NONE


def test_a_schema_1_store_is_counted_read_only_and_migrated_when_erased(tmp_path, terminal, capsys):
    store = tmp_path / "old.sqlite3"
    make_v1_store(store)
    assert "CREATE TABLE IF NOT EXISTS sessions" in SCHEMA_V1
    before = snapshot(tmp_path)
    terminal.answers.append("n")
    assert main(["forget", "--default-user", "--session", "s1", "--path", str(store)]) == 1
    assert "1 session, 2 messages and 1 note" in capsys.readouterr().out
    assert main(["forget", "--user", "alice", "--path", str(store), "--yes"]) == 0
    assert "Nothing to forget" in capsys.readouterr().out  # a schema-1 store has only the default user
    assert main(["recall", "espresso", "--path", str(store)]) == 0  # read as it is, not migrated
    assert "Likes espresso" in capsys.readouterr().out
    assert snapshot(tmp_path) == before
    assert main(["forget", "--default-user", "--session", "s1", "--path", str(store), "--yes"]) == 0
    assert "Erased session 's1' of the default user: 1 session, 2 messages and 1 note." in capsys.readouterr().out
    assert scope(store, None) == {"sessions": 1, "messages": 2, "notes": 0}

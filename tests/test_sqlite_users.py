"""The SQLite backend keeps users apart and forgets (schema 2), through the public API; and the migration of a
schema-1 store in place."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from recording import WAIT

import memcore
from memcore import Session, _sqlite
from memcore._sqlite import SCHEMA_VERSION, SQLiteBackend

#: The store's schema before users (schema 1, memcore up to 776185f), as ``SQLiteBackend`` created it then.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    parent_id TEXT,
    opened_at REAL NOT NULL,
    committed_at REAL,
    commits INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    extra TEXT,
    created_at REAL NOT NULL,
    committed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (session_id, id);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    metadata TEXT,
    created_at REAL NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS recall USING fts5 (
    text, origin UNINDEXED, ref UNINDEXED, session_id UNINDEXED, kind UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);
"""

USERS = ("alice", "bob")
SESSIONS = ("s1", "s2")


def rows(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def turn(user: str | None, sid: str) -> str:
    return f"espresso with oat milk, said {user} in {sid}"


def note(user: str | None, sid: str) -> str:
    return f"espresso lover: {user} of {sid}"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite3"


@pytest.fixture
def open_memory(tmp_path: Path, store: Path) -> Iterator[Callable[[], memcore.Memory]]:
    made: list[memcore.Memory] = []

    def make() -> memcore.Memory:
        memory = memcore.Memory(
            backends=[memcore.SQLiteBackend(path=store)], plugins=[], journal=tmp_path / "journal.sqlite3"
        )
        made.append(memory)
        return memory

    yield make
    for memory in made:
        memory.close(timeout=WAIT)


def fill(memory: memcore.Memory, users: tuple[str | None, ...] = USERS, sessions: tuple[str, ...] = SESSIONS) -> None:
    """Every user gets the same sessions with the same words: one committed turn and one note in each."""
    for user in users:
        for sid in sessions:
            lc = memory.lifecycle(sid, user_id=user)
            lc.sync_turn(turn(user, sid), "noted")
            lc.remember(note(user, sid), kind="preference")
            lc.end()
    assert memory.flush(timeout=WAIT).ok


def texts(found: list[memcore.Recollection]) -> set[str]:
    return {r.text for r in found}


def own(user: str | None, sessions: tuple[str, ...] = SESSIONS) -> set[str]:
    return {t for sid in sessions for t in (turn(user, sid), note(user, sid))}


def backend_of(memory: memcore.Memory) -> SQLiteBackend:
    backend = memory.plugin_manager.get_plugin("sqlite")
    assert isinstance(backend, SQLiteBackend)
    return backend


def history(memory: memcore.Memory, user: str | None, sid: str) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in backend_of(memory).memcore_history(Session(id=sid, user_id=user))]


# -- users kept apart -------------------------------------------------------------------------------------------------


def test_the_backend_declares_that_it_keeps_users_apart(open_memory):
    assert SQLiteBackend.separates_users is True
    open_memory().lifecycle("s1", user_id="alice")  # no UsersNotSeparated


def test_recall_as_one_user_never_returns_anothers_turns_or_notes(open_memory):
    memory = open_memory()
    fill(memory, (*USERS, None))
    for user in (*USERS, None):
        assert texts(memory.recall("espresso oat milk lover", limit=50, user_id=user)) == own(user)
        for sid in SESSIONS:  # in a session (of the same id as the other users' sessions): the same, only this user's
            lc = memory.lifecycle(sid, user_id=user)
            assert texts(lc.recall("espresso oat milk lover", limit=50)) == own(user)
    assert memory.recall("espresso", limit=50, user_id="carol") == []


def test_notes_are_recalled_before_commit_only_for_their_user(open_memory):
    memory = open_memory()
    for user in USERS:
        memory.lifecycle("s1", user_id=user).remember(note(user, "s1"))
    memory.flush(timeout=WAIT)
    for user in USERS:
        assert texts(memory.recall("espresso", limit=50, user_id=user)) == {note(user, "s1")}
    assert memory.recall("espresso", limit=50) == []  # the default user has nothing


def test_history_is_per_user(open_memory):
    memory = open_memory()
    fill(memory, (*USERS, None))
    for user in (*USERS, None):
        for sid in SESSIONS:
            assert history(memory, user, sid) == [("user", turn(user, sid)), ("assistant", "noted")]
    assert history(memory, "carol", "s1") == []


def test_sessions_of_the_same_id_are_committed_and_counted_per_user(open_memory, store):
    memory = open_memory()
    fill(memory, (*USERS, None), ("s1",))
    lc = memory.lifecycle("s1", user_id="alice")
    lc.sync_turn("again", "ok")
    lc.end()
    memory.close(timeout=WAIT)
    assert rows(store, "SELECT user_id, id, commits FROM sessions ORDER BY user_id") == [
        ("", "s1", 1),
        ("alice", "s1", 2),
        ("bob", "s1", 1),
    ]
    assert rows(store, "SELECT count(*) FROM messages WHERE committed = 0") == [(0,)]


# -- forget -----------------------------------------------------------------------------------------------------------


def test_forget_of_a_session_erases_it_and_leaves_the_rest(open_memory, store):
    memory = open_memory()
    fill(memory, (*USERS, None))
    done = memory.forget(user_id="alice", session_id="s1")
    assert done.wait(WAIT) and done.ok and done.kept == {}
    assert texts(memory.recall("espresso oat milk lover", limit=50, user_id="alice")) == own("alice", ("s2",))
    assert texts(memory.lifecycle("s2", user_id="alice").recall("espresso", limit=50)) == own("alice", ("s2",))
    assert history(memory, "alice", "s1") == []
    assert history(memory, "alice", "s2") == [("user", turn("alice", "s2")), ("assistant", "noted")]
    for user in ("bob", None):  # the other users' s1 is untouched
        assert texts(memory.recall("espresso oat milk lover", limit=50, user_id=user)) == own(user)
        assert history(memory, user, "s1") == [("user", turn(user, "s1")), ("assistant", "noted")]
    assert rows(store, "SELECT count(*) FROM recall WHERE user_id = 'alice' AND session_id = 's1'") == [(0,)]
    assert rows(store, "SELECT count(*) FROM notes WHERE user_id = 'alice' AND session_id = 's1'") == [(0,)]
    assert rows(store, "SELECT count(*) FROM sessions WHERE user_id = 'alice' AND id = 's1'") == [(0,)]
    assert rows(store, "SELECT count(*) FROM recall") == [
        (15,)
    ]  # 3 users x 2 sessions x 3 (2 messages, 1 note), less alice's s1


def test_forget_of_a_user_erases_all_of_it_and_nothing_else(open_memory, store):
    memory = open_memory()
    fill(memory, (*USERS, None))
    done = memory.forget(user_id="alice")
    assert done.wait(WAIT) and done.ok
    assert memory.recall("espresso oat milk lover", limit=50, user_id="alice") == []
    assert all(history(memory, "alice", sid) == [] for sid in SESSIONS)
    for user in ("bob", None):
        assert texts(memory.recall("espresso oat milk lover", limit=50, user_id=user)) == own(user)
    for table in ("sessions", "messages", "notes", "recall"):
        assert rows(store, f"SELECT count(*) FROM {table} WHERE user_id = 'alice'") == [(0,)]
    assert backend_of(memory).scope_counts("alice") == {"sessions": 0, "messages": 0, "notes": 0}
    assert backend_of(memory).scope_counts("bob") == {"sessions": 2, "messages": 4, "notes": 2}
    fill(memory, ("alice",), ("s3",))  # after the forget, the user starts afresh
    assert texts(memory.recall("espresso", limit=50, user_id="alice")) == own("alice", ("s3",))


def test_forget_of_the_default_user_leaves_the_named_users(open_memory):
    memory = open_memory()
    fill(memory, (*USERS, None))
    assert memory.forget(user_id=None).wait(WAIT)
    assert memory.recall("espresso", limit=50) == []
    for user in USERS:
        assert texts(memory.recall("espresso oat milk lover", limit=50, user_id=user)) == own(user)


def test_the_store_keeps_nothing_and_says_so(store):
    backend = SQLiteBackend(path=store)
    session = Session(id="s1", user_id="alice")
    backend.memcore_open_session(session)
    backend.memcore_write(session, [memcore.Message(role="user", content="espresso")])
    backend.memcore_commit(session)
    assert backend.memcore_forget("alice", "s1") is None
    assert backend.memcore_forget("nobody", None) is None  # nothing to erase is no error
    assert backend.stats()["messages"] == 0
    backend.memcore_close()


UNMAPPED = (
    "SELECT count(*) FROM recall WHERE rowid NOT IN "
    "(SELECT recall_id FROM messages WHERE recall_id IS NOT NULL "
    "UNION SELECT recall_id FROM notes WHERE recall_id IS NOT NULL)"
)


def test_every_recall_row_is_found_through_its_message_or_note(open_memory, store):
    memory = open_memory()
    fill(memory, (*USERS, None))
    lc = memory.lifecycle("s1", user_id="bob")
    lc.sync_turn("more espresso", "")  # an empty message is stored, and not indexed
    lc.end()
    memory.flush(timeout=WAIT)
    assert rows(store, "SELECT count(*) FROM recall") == [(19,)]  # 3 users x 2 sessions x 3, and one more
    assert rows(store, UNMAPPED) == [(0,)]  # so a forget deletes every one of them by rowid
    assert rows(store, "SELECT count(*) FROM messages WHERE content = '' AND recall_id IS NOT NULL") == [(0,)]
    ids = [r for (r,) in rows(store, "SELECT rowid FROM recall ORDER BY rowid")]
    assert len(set(ids)) == len(ids)


# -- ids that try to leave their scope ----------------------------------------------------------------------------

TRICKY = (
    "alice",
    "\uff41lice",  # fullwidth a: looks like alice, is not
    "ALICE",
    "../alice",
    "alice/..",
    "a/b",
    "%2F",
    "%",
    "_",
    "alice' OR '1'='1",
    'alice"; DROP TABLE notes; --',
    "x" * 256,
    "x" * 255,
    "e\u0301",  # e + combining acute
    "\u00e9",  # é precomposed
)


def test_ids_that_try_to_leave_their_scope_stay_exact_and_apart(open_memory, store):
    memory = open_memory()
    fill(memory, TRICKY, TRICKY[:4])
    for user in TRICKY:
        assert texts(memory.recall("espresso oat milk lover", limit=200, user_id=user)) == own(user, TRICKY[:4])
        for sid in TRICKY[:4]:
            assert history(memory, user, sid) == [("user", turn(user, sid)), ("assistant", "noted")]
    assert memory.forget(user_id="alice", session_id="../alice").wait(WAIT)
    assert memory.forget(user_id="%").wait(WAIT)  # a LIKE wildcard, were it one
    assert memory.forget(user_id="x" * 256).wait(WAIT)
    expected = {user: own(user, TRICKY[:4]) for user in TRICKY}
    expected["alice"] = own("alice", ("alice", "\uff41lice", "ALICE"))
    expected["%"] = expected["x" * 256] = set()
    for user in TRICKY:
        assert texts(memory.recall("espresso oat milk lover", limit=200, user_id=user)) == expected[user], user
    assert rows(store, "SELECT count(*) FROM notes") == [(sum(len(e) for e in expected.values()) // 2,)]


# -- migration from schema 1 ----------------------------------------------------------------------------------------


def make_v1_store(path: Path) -> None:
    """A schema-1 store as memcore wrote it: two sessions, committed and uncommitted turns, notes, recall rows."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(f"BEGIN IMMEDIATE; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;")
        db.execute(
            "INSERT INTO sessions (id, parent_id, opened_at, committed_at, commits) VALUES ('s1', NULL, 1, 2, 1)"
        )
        db.execute("INSERT INTO sessions (id, parent_id, opened_at) VALUES ('s2', 's1', 3)")
        for sid, role, content, committed in [
            ("s1", "user", "I drink espresso at seven", 1),
            ("s1", "assistant", "Noted, espresso at seven", 1),
            ("s2", "user", "Still espresso, later now", 0),
            ("s2", "assistant", "Later espresso it is", 0),
        ]:
            db.execute(
                "INSERT INTO messages (session_id, role, content, created_at, committed) VALUES (?, ?, ?, 1, ?)",
                (sid, role, content, committed),
            )
        db.execute("INSERT INTO notes (session_id, text, kind, created_at) VALUES ('s1', 'Likes espresso', 'fact', 1)")
        # v1's order: the note was indexed when remembered, the turns at commit
        db.execute(
            "INSERT INTO recall (text, origin, ref, session_id, kind) "
            "VALUES ('Likes espresso', 'note', 1, 's1', 'fact')"
        )
        db.execute(
            "INSERT INTO recall (text, origin, ref, session_id, kind) "
            "SELECT content, 'message', id, session_id, role FROM messages WHERE committed = 1"
        )
    finally:
        db.close()


def schema_of(path: Path) -> dict[str, object]:
    """Columns and indexes of every table (FTS5 shadow tables included), as SQLite describes them."""
    db = sqlite3.connect(path)
    try:
        tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {
            t: (
                db.execute(f"PRAGMA table_info('{t}')").fetchall(),
                sorted(
                    (row[1], db.execute(f"PRAGMA index_info('{row[1]}')").fetchall())
                    for row in db.execute(f"PRAGMA index_list('{t}')")
                ),
            )
            for t in tables
        }
    finally:
        db.close()


def test_a_schema_1_store_is_migrated_in_place_and_its_rows_are_the_default_users(tmp_path, store):
    make_v1_store(store)
    memory = memcore.Memory(backends=[SQLiteBackend(path=store)], plugins=[], journal=False)
    try:
        assert rows(store, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 2
        fresh = tmp_path / "fresh.sqlite3"
        SQLiteBackend(path=fresh).memcore_close()
        assert schema_of(store) == schema_of(fresh)  # the same tables, columns and indexes as a new store
        assert rows(store, "SELECT user_id, id, parent_id, commits FROM sessions ORDER BY id") == [
            ("", "s1", None, 1),
            ("", "s2", "s1", 0),
        ]
        assert rows(store, "SELECT DISTINCT user_id FROM messages UNION SELECT user_id FROM notes") == [("",)]
        assert rows(store, UNMAPPED) == [(0,)]  # the migrated recall rows are found through their messages and notes
        assert rows(store, "SELECT count(*) FROM messages WHERE committed = 1 AND recall_id IS NULL") == [(0,)]
        found = memory.recall("espresso seven", limit=10)
        assert texts(found) == {"I drink espresso at seven", "Noted, espresso at seven", "Likes espresso"}
        assert memory.recall("espresso", limit=10, user_id="alice") == []
        assert history(memory, None, "s2") == [
            ("user", "Still espresso, later now"),
            ("assistant", "Later espresso it is"),
        ]
        lc = memory.lifecycle("s2")  # the uncommitted turns are committed as before
        lc.sync_turn("one more espresso", "ok")
        lc.end()
        memory.flush(timeout=WAIT)
        assert len(memory.recall("espresso", limit=10)) == 6
        assert memory.forget(user_id=None, session_id="s1").wait(WAIT)  # the migrated rows forget by their rowids
        assert texts(memory.recall("espresso", limit=10)) == {
            "Still espresso, later now",
            "Later espresso it is",
            "one more espresso",
        }
        assert rows(store, "SELECT count(*) FROM recall WHERE session_id = 's1'") == [(0,)]
        assert rows(store, UNMAPPED) == [(0,)]
    finally:
        memory.close(timeout=WAIT)
    SQLiteBackend(path=store).memcore_close()  # opening a migrated store again changes nothing
    assert rows(store, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def test_a_migration_that_fails_leaves_the_schema_1_store_as_it_was(store, monkeypatch):
    make_v1_store(store)
    before = dump(store)
    monkeypatch.setattr(_sqlite, "_MIGRATE_1_TO_2", (*_sqlite._MIGRATE_1_TO_2, "SELECT no_such_function()"))
    with pytest.raises(sqlite3.OperationalError, match="no_such_function"):
        SQLiteBackend(path=store)
    assert dump(store) == before
    assert rows(store, "PRAGMA user_version") == [(1,)]
    monkeypatch.undo()
    backend = SQLiteBackend(path=store)  # and the next attempt migrates it
    assert backend.scope_counts(None) == {"sessions": 2, "messages": 4, "notes": 1}
    backend.memcore_close()


def test_a_migration_another_process_finished_first_is_not_run_again(store):
    make_v1_store(store)
    first = SQLiteBackend(path=store)
    schema, counts = schema_of(store), first.scope_counts(None)
    first._upgrade(first._db(), 1)  # what a process that read version 1 before the other migrated does next
    assert schema_of(store) == schema and first.scope_counts(None) == counts
    assert rows(store, "SELECT count(*) FROM recall") == [(3,)]
    first.memcore_close()

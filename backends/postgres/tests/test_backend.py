"""What the shared suite does not ask: users kept apart, forget, ranking, reconnecting after the server restarts,
timeouts, exactly-once per key, awkward and look-alike ids, NUL, and connections that do not leak."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import memcore
import psycopg
import pytest
from pgserver import Server

from memcore_postgres import PostgresBackend

Make = Callable[..., PostgresBackend]
QUICK = memcore.RetryPolicy(initial=0.05, multiplier=2.0, max_delay=0.5, deadline=60.0)


@pytest.fixture
def memory(make_backend: Make) -> Iterator[memcore.Memory]:
    with memcore.Memory(backends=[make_backend()], journal=False, plugins=[], retry=QUICK) as m:
        yield m


def _ok(report: memcore.Report) -> memcore.Report:
    assert report.ok and report.pending == 0 and report.failed == 0, report
    return report


def _texts(found: list[memcore.Recollection]) -> list[str]:
    return [r.text for r in found]


def _history(backend: PostgresBackend, session_id: str, user_id: str | None = None) -> list[str]:
    return [m.content for m in backend.memcore_history(memcore.Session(id=session_id, user_id=user_id))]


# -- users -------------------------------------------------------------------------------------------------------


def test_users_with_the_same_session_id_and_the_same_words_stay_apart(make_backend: Make) -> None:
    backend = make_backend()
    users = ["alice", "bob", None, "Alice", "alice "]  # case and a trailing space make other users
    with memcore.Memory(backends=[backend], journal=False, plugins=[]) as memory:
        for user in users:
            lc = memory.lifecycle("shared", user_id=user)
            lc.sync_turn(f"my locker code is zebra for {user!r}", "noted")
            lc.remember(f"zebra note of {user!r}", kind="fact")
            lc.end()
        _ok(memory.flush(timeout=30))
        for user in users:
            mine = {f"my locker code is zebra for {user!r}", f"zebra note of {user!r}"}
            outside = memory.recall("zebra locker code", limit=20, timeout=10, user_id=user)
            inside = memory.lifecycle("shared", user_id=user).recall("zebra", limit=20, timeout=10)
            assert set(_texts(outside)) == mine, (user, _texts(outside))
            assert set(_texts(inside)) == mine, (user, _texts(inside))
            assert _history(backend, "shared", user) == [f"my locker code is zebra for {user!r}", "noted"]
            assert {r.session_id for r in outside} == {"shared"}
        assert backend.stats("alice")["notes"] == 1 and backend.stats("nobody")["messages"] == 0


# -- forget ------------------------------------------------------------------------------------------------------


def _three_users(memory: memcore.Memory) -> None:
    for user in ("alice", "bob", None):
        for sid in ("s1", "s2"):
            lc = memory.lifecycle(sid, user_id=user)
            lc.sync_turn(f"apricot turn of {user} in {sid}", "ok")
            lc.remember(f"apricot note of {user} in {sid}")
            lc.end()
    _ok(memory.flush(timeout=30))


def _recalled(memory: memcore.Memory, user: str | None) -> set[str]:
    return set(_texts(memory.recall("apricot", limit=50, timeout=10, user_id=user)))


def test_forget_a_session_erases_only_that_session_of_that_user(make_backend: Make, db: Any, schema: str) -> None:
    backend = make_backend()
    with memcore.Memory(backends=[backend], journal=False, plugins=[]) as memory:
        _three_users(memory)
        forgetting = memory.forget(user_id="alice", session_id="s1")
        assert forgetting.wait(30) and forgetting.ok, (forgetting.kept, forgetting.failures)
        assert _history(backend, "s1", "alice") == [] and _history(backend, "s2", "alice") != []
        assert _recalled(memory, "alice") == {"apricot turn of alice in s2", "apricot note of alice in s2"}
        assert len(_recalled(memory, "bob")) == 4 and len(_recalled(memory, None)) == 4
        assert _history(backend, "s1", "bob") == ["apricot turn of bob in s1", "ok"]
        for table in ("messages", "notes", "commits", "sessions"):
            left = db.execute(
                f"SELECT count(*) FROM \"{schema}\".{table} WHERE user_id = 'alice' AND session_id = 's1'"
            ).fetchone()
            assert left == (0,), table
        # the session can be used again after it was forgotten
        lc = memory.lifecycle("s1", user_id="alice")
        lc.sync_turn("apricot after the forget", "ok")
        lc.end()
        _ok(memory.flush(timeout=30))
        assert "apricot after the forget" in _recalled(memory, "alice")


def test_forget_a_user_erases_every_session_of_that_user_only(make_backend: Make, db: Any, schema: str) -> None:
    backend = make_backend()
    with memcore.Memory(backends=[backend], journal=False, plugins=[]) as memory:
        _three_users(memory)
        forgetting = memory.forget(user_id="bob")
        assert forgetting.wait(30) and forgetting.ok, (forgetting.kept, forgetting.failures)
        assert _recalled(memory, "bob") == set()
        assert len(_recalled(memory, "alice")) == 4 and len(_recalled(memory, None)) == 4
        for table in ("messages", "notes", "commits", "sessions"):
            assert db.execute(f"SELECT count(*) FROM \"{schema}\".{table} WHERE user_id = 'bob'").fetchone() == (0,)
        forgetting = memory.forget(user_id=None)  # the default user
        assert forgetting.wait(30) and forgetting.ok
        assert _recalled(memory, None) == set() and len(_recalled(memory, "alice")) == 4


# -- recall ------------------------------------------------------------------------------------------------------


def test_recall_ranks_by_relevance(memory: memcore.Memory) -> None:
    lc = memory.lifecycle("ranking")
    weak = "A long note that mentions a marmalade recipe only in passing, among many other things said."
    strong = "Marmalade from Seville oranges: the marmalade recipe needs bitter oranges."
    middle = "Grandmother's marmalade, made every winter."
    for text in (weak, middle, strong, "Nothing relevant here at all."):
        lc.remember(text)
    _ok(memory.flush(timeout=30))
    found = lc.recall("seville oranges marmalade recipe", limit=10, timeout=10)
    assert _texts(found) == [strong, weak, middle], _texts(found)
    scores = [r.score for r in found]
    assert all(s is not None and s > 0 for s in scores) and scores == sorted(scores, reverse=True)  # type: ignore
    assert _texts(lc.recall("seville oranges marmalade recipe", limit=1, timeout=10)) == [strong]
    assert lc.recall("words nobody wrote", timeout=10) == [] and lc.recall("!!! ...", timeout=10) == []


def test_turns_are_recalled_once_committed_and_identical_texts_once(memory: memcore.Memory) -> None:
    lc = memory.lifecycle("commit")
    lc.sync_turn("the quince jam is in the cellar", "noted")
    lc.sync_turn("the quince jam is in the cellar", "noted again")
    _ok(memory.flush(timeout=30))
    assert lc.recall("quince", timeout=10) == []  # written, not committed
    lc.end()
    _ok(memory.flush(timeout=30))
    found = lc.recall("quince cellar", limit=5, timeout=10)
    assert _texts(found) == ["the quince jam is in the cellar"]
    assert found[0].metadata["origin"] == "message" and found[0].metadata["kind"] == "user"


# -- failures and retries ----------------------------------------------------------------------------------------


class Events:
    def __init__(self) -> None:
        self.seen: list[memcore.Event] = []

    @memcore.hookimpl
    def memcore_event(self, event: memcore.Event) -> None:
        self.seen.append(event)


def test_a_write_while_the_server_restarts_is_retried_and_delivered_once(make_backend: Make, postgres: Server) -> None:
    backend = make_backend()
    events = Events()
    with memcore.Memory(backends=[backend], journal=False, plugins=[events], retry=QUICK) as memory:
        lc = memory.lifecycle("restart")
        lc.sync_turn("before the restart", "ok")
        _ok(memory.flush(timeout=30))
        assert backend.open_connections >= 1
        postgres.stop()
        try:
            lc.sync_turn("while the server is down", "ok")
            deadline = time.monotonic() + 30
            while not any(e.kind == "retried" for e in events.seen):
                assert time.monotonic() < deadline, events.seen
                time.sleep(0.02)
        finally:
            postgres.start()
        lc.sync_turn("after the restart", "ok")
        report = _ok(memory.flush(timeout=60))
        assert report.delivered == 3 and report.retried >= 1, report
    retried = [e for e in events.seen if e.kind == "retried"]
    # Any call on a connection the restart broke is retried: the writes, and the closing commit when it runs on a worker
    # thread whose connection predates the restart.
    assert all(e.error and e.error.startswith("TransientError(") for e in retried), [
        (e.operation, e.error) for e in retried
    ]
    assert any(e.operation == "write" for e in retried), [(e.operation, e.error) for e in retried]
    assert _history(backend, "restart") == [
        "before the restart", "ok", "while the server is down", "ok", "after the restart", "ok",
    ]  # fmt: skip


def test_a_statement_timeout_is_transient_and_the_connection_stays_usable(make_backend: Make, db: Any) -> None:
    backend = make_backend(statement_timeout=0.3)
    session = memcore.Session(id="slow")
    backend.memcore_write(session, [memcore.Message(role="user", content="first")], key="k1")
    with db.transaction():
        db.execute(f'LOCK TABLE "{backend.schema}".messages IN ACCESS EXCLUSIVE MODE')
        started = time.monotonic()
        with pytest.raises(memcore.TransientError, match="57014"):
            backend.memcore_write(session, [memcore.Message(role="user", content="second")], key="k2")
        assert time.monotonic() - started < 5
    backend.memcore_write(session, [memcore.Message(role="user", content="second")], key="k2")
    assert _history(backend, "slow") == ["first", "second"] and backend.open_connections == 1


def test_no_server_is_transient_and_bounded_by_connect_timeout(schema: str) -> None:
    from pgserver import free_port

    backend = PostgresBackend(dsn=f"host=127.0.0.1 port={free_port()} dbname=x user=x", schema=schema)
    started = time.monotonic()
    with pytest.raises(memcore.TransientError):
        backend.memcore_open_session(memcore.Session(id="s"))
    assert time.monotonic() - started < 5


def test_data_errors_are_final(make_backend: Make) -> None:
    backend = make_backend(text_search_config="no_such_configuration")
    with pytest.raises(psycopg.errors.UndefinedObject):
        backend.memcore_write(memcore.Session(id="s"), [memcore.Message(role="user", content="x")], key="k")


def test_each_key_is_stored_once(make_backend: Make, db: Any) -> None:
    """A call that reached the database and whose answer was lost is sent again with the same key."""
    backend = make_backend()
    session = memcore.Session(id="keys", user_id="u")
    turn = [memcore.Message(role="user", content="once"), memcore.Message(role="assistant", content="only")]
    backend.memcore_open_session(session)
    backend.memcore_open_session(session)
    for _ in range(3):
        backend.memcore_write(session, turn, key="origin:1")
        backend.memcore_remember(session, memcore.Note(text="a note once"), key="origin:2")
    backend.memcore_write(session, turn, key="origin:3")  # the same turn again, a new call: stored again
    for _ in range(2):
        backend.memcore_commit(session, key="origin:4")
    assert _history(backend, "keys", "u") == ["once", "only", "once", "only"]
    stats = backend.stats("u")
    assert stats == {"sessions": 1, "messages": 4, "committed_messages": 4, "notes": 1, "commits": 1}, stats


# -- ids and content ---------------------------------------------------------------------------------------------

AWKWARD = [
    "a/b",
    "/",
    "..",
    "../x",
    ".",
    "it's",
    'say "hi"',
    "back\\slash",
    "%2e%2e",
    "semi;colon -- DROP TABLE x",
    "x" * 256,
    "x" * 255,
    "café",  # composed
    "cafe\u0301",  # decomposed: another id
    "paypal",
    "p\u0430ypal",  # a Cyrillic a
    "\uff21\uff22\uff23",  # fullwidth ABC
    "ABC",
    "\ufb01le",  # an fi ligature
    "file",
    "\u212a",  # Kelvin sign
    "K",
    "k",
    "a b",
    "a\u00a0b",  # no-break space
    "🧠",
]


def test_awkward_and_look_alike_ids_stay_exact(make_backend: Make) -> None:
    assert len(set(AWKWARD)) == len(AWKWARD)
    backend = make_backend()
    with memcore.Memory(backends=[backend], journal=False, plugins=[]) as memory:
        for i, sid in enumerate(AWKWARD):
            for user in (None, sid):  # the same strings as user ids too
                lc = memory.lifecycle(sid, user_id=user)
                lc.sync_turn(f"turn {i} of tapioca", f"for {user!r}")
                lc.remember(f"note {i} tapioca")
                lc.end()
        _ok(memory.flush(timeout=60))
        for i, sid in enumerate(AWKWARD):
            assert _history(backend, sid) == [f"turn {i} of tapioca", "for None"], sid
            assert _history(backend, sid, sid) == [f"turn {i} of tapioca", f"for {sid!r}"], sid
            mine = memory.recall("tapioca", limit=10, timeout=10, user_id=sid)
            assert sorted(_texts(mine)) == sorted([f"turn {i} of tapioca", f"note {i} tapioca"]), sid
            assert {r.session_id for r in mine} == {sid}
        everyone = memory.recall("tapioca", limit=1000, timeout=10)
        assert {r.session_id for r in everyone} == set(AWKWARD)


def test_nul_and_unicode_round_trip_exactly(make_backend: Make) -> None:
    backend = make_backend()
    session = memcore.Session(id="nul")
    tool = {"id": "c\x001", "type": "function", "function": {"name": "f", "arguments": '{"a": "\\u0000"}'}}
    messages = [
        memcore.Message(role="user", content="nul\x00inside and e\u0301 \ufeff persimmon"),
        memcore.Message(role="assistant", content="", tool_calls=(tool,)),
        memcore.Message(role="tool", content="r\x00", tool_call_id="c\x001", name="n\x00"),
    ]
    backend.memcore_write(session, messages, key="k1")
    backend.memcore_remember(session, memcore.Note(text="note\x00 persimmon", metadata={"x": "\x00"}), key="k2")
    backend.memcore_commit(session, key="k3")
    assert list(backend.memcore_history(session)) == messages
    found = backend.memcore_recall("persimmon", session, 10, None)
    assert sorted(r.text for r in found) == sorted(["nul\x00inside and e\u0301 \ufeff persimmon", "note\x00 persimmon"])
    assert backend.memcore_recall("inside", None, 10, None)[0].text.startswith("nul\x00inside")


# -- connections and schemas -------------------------------------------------------------------------------------


def test_connections_are_per_thread_and_closed_at_close(make_backend: Make, db: Any, dsn: str) -> None:
    backend = make_backend()
    name = db.execute("SELECT current_database()").fetchone()[0]

    def ours() -> int:
        count = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
        ).fetchone()[0]
        return int(count)

    before = ours()
    memory = memcore.Memory(backends=[backend], journal=False, plugins=[], workers=3, recall_workers=2)
    for k in range(40):
        lc = memory.lifecycle(f"s{k}")
        lc.sync_turn(f"turn {k}", "ok")
        lc.recall("turn", timeout=5)
    _ok(memory.flush(timeout=30))
    assert 1 <= backend.open_connections <= 3 + 3 + 2  # lane workers (and stand-ins) and recall workers
    assert ours() - before == backend.open_connections
    _ok(memory.close(timeout=30))
    assert backend.open_connections == 0
    deadline = time.monotonic() + 10
    while ours() != before:
        assert time.monotonic() < deadline, "the backend's connections stayed open after close"
        time.sleep(0.05)

    def worker() -> None:  # a thread that ends takes its connection with it
        backend.memcore_open_session(memcore.Session(id="thread"))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    deadline = time.monotonic() + 10
    while backend.open_connections:
        assert time.monotonic() < deadline, "a finished thread's connection stayed open"
        time.sleep(0.05)


def test_schemas_keep_stores_apart_and_are_created_once_under_concurrency(dsn: str, db: Any) -> None:
    import uuid

    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    try:
        backends = [PostgresBackend(dsn=dsn, schema=names[k % 2]) for k in range(8)]
        errors: list[BaseException] = []
        start = threading.Barrier(len(backends))

        def use(k: int) -> None:
            try:
                start.wait()
                session = memcore.Session(id="same")
                backends[k].memcore_write(session, [memcore.Message(role="user", content=f"b{k}")], key=f"k{k}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=use, args=(k,)) for k in range(len(backends))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for k in range(2):
            got = sorted(_history(backends[k], "same"))
            assert got == sorted(f"b{j}" for j in range(k, 8, 2)), got
        for backend in backends:
            backend.memcore_close()
    finally:
        for name in names:
            db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_a_memory_loads_it_by_name(dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("MEMCORE_HOME", str(tmp_path))
    settings = {"postgres": {"url": dsn, "schema": schema}}
    with memcore.Memory(backends=["postgres"], settings=settings, plugins=[], strict=True) as memory:
        lc = memory.lifecycle("by-name", user_id="carol")
        lc.sync_turn("the loquat tree is in bloom", "lovely")
        lc.end()
        _ok(memory.flush(timeout=30))
        assert _texts(memory.recall("loquat", timeout=10, user_id="carol")) == ["the loquat tree is in bloom"]
        assert memory.recall("loquat", timeout=10) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(make_backend: Make) -> None:
    backend = make_backend()
    session = memcore.Session(id="fork")
    backend.memcore_write(session, [memcore.Message(role="user", content="parent before")], key="p1")
    pid = os.fork()
    if pid == 0:  # the child: write through a connection of its own, drop the inherited one, exit without cleanup
        code = 1
        try:
            backend.memcore_write(session, [memcore.Message(role="user", content="child")], key="c1")
            backend.memcore_close()
            gc.collect()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    held = backend._local.held
    backend.memcore_write(session, [memcore.Message(role="user", content="parent after")], key="p2")
    assert backend._local.held is held, "the parent's connection was broken by the child"
    assert _history(backend, "fork") == ["parent before", "child", "parent after"]

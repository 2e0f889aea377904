"""Idempotency keys (issue 14, item 1): every accepted write, note and commit has a key, unique, the same on every
retry and on every replay after a crash; ``attempt`` says whether an earlier call with it may have reached the
service. Hooks that do not name them keep working (pluggy passes only what an implementation names)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from recording import WAIT
from test_reliability import FAST, drain

import memcore
from memcore import Message, Note, Session
from memcore._journal import encode


class KeyBackend:
    """Records (hook, session, key, attempt); fails the calls a test asks it to, after or before "storing"."""

    name = "keys"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, int]] = []
        self.fail_after: list[BaseException] = []  # the call reached the service, then the reply was lost

    def _seen(self, hook: str, session: Session, key: str, attempt: int) -> None:
        self.calls.append((hook, session.id, key, attempt))
        if self.fail_after:
            raise self.fail_after.pop(0)

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message], key: str, attempt: int) -> None:
        self._seen("write", session, key, attempt)

    @memcore.hookimpl
    def memcore_remember(self, session: Session, note: Note, key: str, attempt: int) -> None:
        self._seen("remember", session, key, attempt)

    @memcore.hookimpl
    def memcore_commit(self, session: Session, key: str, attempt: int) -> None:
        self._seen("commit", session, key, attempt)


def test_every_operation_has_its_own_key_and_a_first_attempt(make_memory):
    backend = KeyBackend()
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    lc.remember("a note")
    lc.end()
    drain(memory)
    assert [(h, a) for h, _, _, a in backend.calls] == [("write", 1), ("remember", 1), ("commit", 1)]
    keys = [k for *_, k, _ in backend.calls]
    assert len(set(keys)) == 3 and all(isinstance(k, str) and k for k in keys)


def test_a_retry_after_an_ambiguous_failure_has_the_same_key_and_says_it_may_have_landed(make_memory):
    backend = KeyBackend()
    backend.fail_after = [memcore.TransientError("reply lost"), memcore.TransientError("reply lost")]
    memory = make_memory(backend, retry=FAST)
    memory.lifecycle("s1").sync_turn("u", "a")
    drain(memory)
    assert [(h, a) for h, _, _, a in backend.calls] == [("write", 1), ("write", 2), ("write", 3)]
    assert len({k for *_, k, _ in backend.calls}) == 1


def test_two_memories_never_make_the_same_key(make_memory, tmp_path):
    first, second = KeyBackend(), KeyBackend()
    for backend, journal in ((first, tmp_path / "a.sqlite3"), (second, False)):
        memory = make_memory(backend, journal=journal)
        memory.lifecycle("s1").sync_turn("u", "a")
        drain(memory)
    assert first.calls[0][2] != second.calls[0][2]


def test_an_operation_taken_over_at_start_keeps_its_key_and_is_not_a_first_attempt(make_memory, memcore_home):
    journal = memcore_home / "journal.sqlite3"
    make_memory(KeyBackend()).close(timeout=WAIT)
    dead = "00000000000000000001:gone-host:1"
    turn = (Message(role="user", content="u"), Message(role="assistant", content="a"))
    with sqlite3.connect(journal) as db:
        db.executemany(
            "INSERT INTO ops (owner, seq, backend, session_id, parent_id, kind, payload, status, created) "
            "VALUES (?, ?, 'keys', 's1', NULL, ?, ?, 'pending', ?)",
            [(dead, 7, "write", encode("write", turn), time.time()), (dead, 8, "commit", None, time.time())],
        )
    db.close()
    backend = KeyBackend()
    memory = make_memory(backend)
    drain(memory)
    assert backend.calls == [("write", "s1", f"{dead}:7", 2), ("commit", "s1", f"{dead}:8", 2)]


def test_a_key_survives_a_second_takeover(make_memory, memcore_home):
    """Taken over, not delivered (the service is down), taken over again: the key is still the first owner's."""
    journal = memcore_home / "journal.sqlite3"
    make_memory(KeyBackend()).close(timeout=WAIT)
    dead = "00000000000000000001:gone-host:1"
    turn = (Message(role="user", content="u"), Message(role="assistant", content="a"))
    with sqlite3.connect(journal) as db:
        db.execute(
            "INSERT INTO ops (owner, seq, backend, session_id, parent_id, kind, payload, status, created) "
            "VALUES (?, 3, 'keys', 's1', NULL, 'write', ?, 'pending', ?)",
            (dead, encode("write", turn), time.time()),
        )
    db.close()

    class Down(KeyBackend):
        def _seen(self, hook: str, session: Session, key: str, attempt: int) -> None:
            super()._seen(hook, session, key, attempt)
            raise memcore.TransientError("down")

    down = Down()
    memory = make_memory(down, retry=memcore.RetryPolicy(initial=0.001, max_delay=0.01, deadline=3600))
    memory.flush(timeout=0.2)
    memory.close(timeout=0.2)
    assert down.calls and {k for *_, k, _ in down.calls} == {f"{dead}:3"}
    backend = KeyBackend()
    drain(make_memory(backend))
    (write, commit) = backend.calls  # the second Memory's close asked for a commit behind it: it is replayed too
    assert write[0] == "write" and write[2] == f"{dead}:3" and commit[0] == "commit"


def test_hooks_that_do_not_name_key_or_attempt_still_work(make_memory):
    got: list[Any] = []

    class Plain:
        name = "plain"

        @memcore.hookimpl
        def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
            got.append(session.id)

    memory = make_memory(Plain())
    memory.lifecycle("s1").sync_turn("u", "a")
    drain(memory)
    assert got == ["s1"]

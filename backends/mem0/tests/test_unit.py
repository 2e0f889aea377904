"""The local backend's own tests: what a commit extracts, retries by key, faults under the model client, ids, users,
forget, and the one-client-per-path rule."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import memcore
import openai
import pytest
from memcore.http import FaultInjector, FaultTransport
from support.fake_openai import FACT_PREFIX, FakeOpenAI

from memcore_mem0 import Mem0Backend, decode_id, encode_id
from memcore_mem0._transient import is_transient

USER = memcore.Message(role="user", content="I water the ferns on Sundays")
ASSISTANT = memcore.Message(role="assistant", content="Noted.")


@pytest.fixture
def backend(settings: dict[str, Any]) -> Any:
    backend = Mem0Backend(**settings)
    yield backend
    backend.memcore_close()


def test_commit_extracts_only_what_the_session_gained_since_its_last_commit(
    backend: Mem0Backend, fake_openai: FakeOpenAI
) -> None:
    session = memcore.Session(id="s1")
    start = len(fake_openai.extractions)
    backend.memcore_write(session, [USER, ASSISTANT], key="w1", attempt=1)
    assert backend.memcore_commit(session, key="c1", attempt=1) == 2
    later = memcore.Message(role="user", content="I moved the ferns to the balcony")
    backend.memcore_write(session, [later], key="w2", attempt=1)
    assert backend.memcore_commit(session, key="c2", attempt=1) == 1
    assert backend.memcore_commit(session, key="c3", attempt=1) == 0  # nothing new: no extraction at all
    assert backend.memcore_commit(session, key="c2", attempt=2) == 0  # a retry of a commit that landed
    assert fake_openai.extractions[start:] == [
        ["user: I water the ferns on Sundays", "assistant: Noted."],
        ["user: I moved the ferns to the balcony"],
    ]
    found = backend.memcore_recall("ferns", session=None, limit=10, user_id=None)
    facts = {r.text for r in found if r.metadata["origin"] == "memory"}
    assert facts == {FACT_PREFIX + "I water the ferns on Sundays", FACT_PREFIX + "I moved the ferns to the balcony"}
    assert [m.content for m in backend.memcore_history(session)] == [USER.content, "Noted.", later.content]


def test_a_retried_write_adds_only_what_the_earlier_attempt_did_not(backend: Mem0Backend) -> None:
    session = memcore.Session(id="s1")
    backend.memcore_write(session, [USER], key="w1", attempt=1)  # the first attempt stored one message, then failed
    backend.memcore_write(session, [USER, ASSISTANT], key="w1", attempt=2)
    backend.memcore_write(session, [USER, ASSISTANT], key="w1", attempt=3)
    note = memcore.Note(text="Prefers ferns", kind="preference")
    backend.memcore_remember(session, note, key="n1", attempt=1)
    backend.memcore_remember(session, note, key="n1", attempt=2)
    assert [m.content for m in backend.memcore_history(session)] == [USER.content, ASSISTANT.content]
    notes = [r for r in backend.memcore_recall("ferns", None, 10, None) if r.metadata["origin"] == "note"]
    assert [(r.text, r.metadata["kind"]) for r in notes] == [("Prefers ferns", "preference")]


def test_faults_under_the_model_client_end_with_every_turn_stored_once_in_order(
    settings: dict[str, Any], fake_openai: FakeOpenAI
) -> None:
    faults = FaultInjector(rng=random.Random(7))
    faults.add("status", status=503, times=3, retry_after=0)
    faults.add("status", status=503, every=5)
    faults.add("timeout", every=7)
    faults.add("reset", phase="read", every=4)  # the endpoint answered, the answer was lost
    backend = Mem0Backend(**settings, transport=FaultTransport(httpx.HTTPTransport(), faults))
    retry = memcore.RetryPolicy(initial=0.001, max_delay=0.01, deadline=20)
    with memcore.Memory(backends=[backend], plugins=[], journal=False, retry=retry) as memory:
        sessions = {sid: memory.lifecycle(sid) for sid in ("a", "b")}
        for i in range(8):
            for sid, lc in sessions.items():
                lc.sync_turn(f"I said {sid}{i}", f"ok {sid}{i}")
        for lc in sessions.values():
            lc.end()
        report = memory.flush(timeout=60)
        assert report.failed == 0 and report.committed == 2 and report.retried, report
        for sid in sessions:
            stored = [m.content for m in backend.memcore_history(memcore.Session(id=sid))]
            assert stored == [t for i in range(8) for t in (f"I said {sid}{i}", f"ok {sid}{i}")]
    assert all(faults.faulted[kind] for kind in ("status", "timeout", "reset")), faults.faulted


@pytest.mark.parametrize("value", ["plain", "a/b?c#d", "  padded  ", "with spaces", "%2e%2e", "%", "tab\there", "x"])
def test_ids_have_no_whitespace_and_come_back(value: str) -> None:
    encoded = encode_id(value)
    assert encoded == encoded.strip() and not any(c.isspace() for c in encoded)
    assert decode_id(encoded) == value
    assert (encoded == value) == (value in ("plain", "a/b?c#d", "x"))


def test_an_explicit_user_with_the_default_users_mem0_id_is_refused(backend: Mem0Backend) -> None:
    with pytest.raises(ValueError, match="default user"):
        backend.memcore_write(memcore.Session(id="s", user_id="memcore"), [USER], key="w", attempt=1)


def test_forget_erases_mem0s_history_rows_of_the_scope_too(backend: Mem0Backend) -> None:
    mine, other = memcore.Session(id="s1", user_id="alice"), memcore.Session(id="s2", user_id="alice")
    for i, session in enumerate((mine, other)):
        backend.memcore_write(session, [USER, ASSISTANT], key=f"w{i}", attempt=1)
        backend.memcore_commit(session, key=f"c{i}", attempt=1)
    assert backend.memcore_forget("alice", "s1") is None
    assert backend.memcore_history(mine) == [] and len(backend.memcore_history(other)) == 2
    with sqlite3.connect(backend.history_db) as db:
        scopes = {row[0] for row in db.execute("SELECT session_scope FROM messages")}
        texts = [row[0] for row in db.execute("SELECT old_memory FROM history WHERE event = 'DELETE'")]
    assert scopes == {"run_id=s2&user_id=alice"}
    assert texts == []  # the change log of what was forgotten went with it
    assert backend.memcore_forget("alice", None) is None
    assert backend.memcore_history(other) == []
    assert backend.memcore_recall("ferns", None, 10, "alice") == []


def test_a_second_backend_on_the_same_path_is_refused(backend: Mem0Backend, settings: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="already accessed"):
        Mem0Backend(**settings)
    backend.memcore_close()
    Mem0Backend(**settings).memcore_close()  # closing releases the path


def test_model_failures_that_are_worth_retrying() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/embeddings")

    def status(code: int) -> openai.APIStatusError:
        return openai.APIStatusError("boom", response=httpx.Response(code, request=request), body=None)

    wrapped = RuntimeError("LLM extraction failed")
    wrapped.__cause__ = status(503)
    assert is_transient(wrapped) and is_transient(status(429)) and is_transient(openai.APITimeoutError(request))
    assert not is_transient(status(400)) and not is_transient(ValueError("no"))
    assert is_transient(sqlite3.OperationalError("database is locked"))


def test_journal_key_names_the_store(backend: Mem0Backend, settings: dict[str, Any]) -> None:
    assert backend.journal_key == f"mem0:{Path(settings['path']).resolve()}:memcore"

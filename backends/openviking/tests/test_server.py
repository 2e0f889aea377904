"""Against a real OpenViking server: users kept apart (trusted mode) and not claimed with one key (api_key mode),
forget, and each turn and commit stored once when replies are lost or a crashed process's work is taken over."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import memcore
import pytest
from conftest import REQUIRED, drain
from memcore.http import FaultInjector, FaultTransport
from support.stack import Stack, find_server, start

from memcore_openviking import OpenVikingBackend, encode_session_id

RETRY = memcore.RetryPolicy(initial=0.01, max_delay=0.2, deadline=60.0)


def backend_for(
    stack: Stack, tenant: dict[str, str], transport: httpx.BaseTransport | None = None
) -> OpenVikingBackend:
    return OpenVikingBackend(url=stack.url, api_key=stack.api_key, auth_mode="trusted", transport=transport, **tenant)


def as_user(stack: Stack, account: str, user: str) -> httpx.Client:
    """A plain client as OpenViking user ``user`` (an OpenViking id, not memcore's)."""
    headers = {"X-API-Key": stack.api_key, "X-OpenViking-Account": account, "X-OpenViking-User": user}
    return httpx.Client(base_url=stack.url + "/api/v1", headers=headers, timeout=60)


def result(response: httpx.Response) -> Any:
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok", (response.status_code, body)
    return body["result"]


def settle(stack: Stack, account: str, *users: str) -> None:
    """Wait for the extraction of every commit of these OpenViking users, then for the server's queues."""
    for user in users:
        drain(stack, {"X-API-Key": stack.api_key, "X-OpenViking-Account": account, "X-OpenViking-User": user}, 180)


def until(what: str, check: Callable[[], Any], deadline: float = 60.0) -> Any:
    stop = time.monotonic() + deadline
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < stop, f"{what}: not within {deadline:g} s"
        time.sleep(0.3)


def recalled(memory: memcore.Memory, query: str, user: str | None) -> list[str]:
    return [r.text for r in memory.recall(query, limit=50, timeout=20, user_id=user)]


# -- users ----------------------------------------------------------------------------------------------------------


def test_recall_never_returns_the_accounts_shared_resources_nor_another_users_memory(
    openviking: Stack, tenant: dict[str, str]
) -> None:
    word = f"zq{uuid.uuid4().hex[:8]}"
    backend = backend_for(openviking, tenant)
    odd = "Bob Smith / ünïcode"  # no id OpenViking takes: it goes as "_m-" and a hash
    with as_user(openviking, tenant["account"], "mallory") as mallory:
        secret = {"uri": f"viking://resources/{word}.md", "content": f"{word} salary of everyone", "wait": True}
        result(mallory.post("/content/write", json={**secret, "mode": "replace"}))
    with memcore.Memory(backends=[backend], plugins=[], journal=False, retry=RETRY) as memory:
        for user in (None, "alice", odd):
            lc = memory.lifecycle("s1", user_id=user)
            lc.sync_turn(f"{word} the salary note of {user} says {abs(hash(user))}", "Noted.")
            lc.end()
        assert memory.flush(timeout=60).ok
        settle(openviking, tenant["account"], *(backend.openviking_user(u) for u in (None, "alice", odd)))
        with as_user(openviking, tenant["account"], "alice") as alice:  # what recall found before the fix
            unscoped = result(alice.post("/search/find", json={"query": f"{word} salary", "limit": 20}))
        assert any(h["uri"].startswith("viking://resources/") for h in unscoped["resources"]), unscoped
        for user in (None, "alice", odd):
            own = f"salary note of {user} says {abs(hash(user))}"
            got = until(f"{user!r}'s memory", lambda user=user: recalled(memory, f"{word} salary", user))
            assert any(own in text for text in got), got
            assert not [t for t in got if "of everyone" in t or ("salary note of" in t and own not in t)], got
    mapped = backend.openviking_user(odd)
    assert mapped.startswith("_m-") and len(mapped) == 67
    with as_user(openviking, tenant["account"], mapped) as client:
        assert result(client.get(f"/sessions/{encode_session_id('s1')}"))["commit_count"] == 1


# -- forget ---------------------------------------------------------------------------------------------------------


def test_forget_of_a_session_then_of_its_user_erases_exactly_that(openviking: Stack, tenant: dict[str, str]) -> None:
    backend = backend_for(openviking, tenant)
    word = f"zq{uuid.uuid4().hex[:8]}"
    scopes = [("alice", "s/1"), ("alice", "s2"), ("bob", "s/1"), (None, "s/1")]
    tokens = {scope: (f"{word}t{i}", f"{word}n{i}") for i, scope in enumerate(scopes)}
    reader = backend_for(openviking, tenant)
    with memcore.Memory(backends=[backend], plugins=[], journal=False, retry=RETRY) as memory:
        for (user, sid), (turn, note) in tokens.items():
            lc = memory.lifecycle(sid, user_id=user)
            lc.sync_turn(f"My locker code is {turn}", "Noted.")
            lc.remember(f"{note} is the note to keep or forget")
            lc.end()
        assert memory.flush(timeout=60).ok
        settle(openviking, tenant["account"], "alice", "bob", tenant["user"])

        def present(user: str | None, *words: str) -> bool:
            got = recalled(memory, " ".join(words), user)
            return all(any(w in t for t in got) for w in words)

        for (user, _), words in tokens.items():
            until(f"{words} recalled as {user!r}", lambda user=user, words=words: present(user, *words))

        handle = memory.forget(user_id="alice", session_id="s/1")
        assert handle.wait(120) and not handle.failures, handle.failures
        kept = handle.kept["openviking"]
        assert "vector store" in kept and not handle.ok, kept
        gone = tokens.pop(("alice", "s/1"))
        for w in gone:  # neither the extracted memory nor the note
            assert not [t for t in recalled(memory, w, "alice") if w in t]
        assert reader.memcore_history(memcore.Session(id="s/1", user_id="alice")) == []
        for (user, sid), words in tokens.items():
            assert present(user, *words), (user, sid)
            assert len(reader.memcore_history(memcore.Session(id=sid, user_id=user))) == 2, (user, sid)

        handle = memory.forget(user_id="alice")
        assert handle.wait(120) and not handle.failures, handle.failures
        assert "vector store" in handle.kept["openviking"]
        gone = tokens.pop(("alice", "s2"))
        for w in gone:
            assert not [t for t in recalled(memory, w, "alice") if w in t]
        assert reader.memcore_history(memcore.Session(id="s2", user_id="alice")) == []
        for (user, sid), words in tokens.items():  # bob's and the default user's sessions of the same id
            assert present(user, *words), (user, sid)
            assert len(reader.memcore_history(memcore.Session(id=sid, user_id=user))) == 2, (user, sid)

        lc = memory.lifecycle("s3", user_id="alice")  # the user goes on after being forgotten
        lc.sync_turn(f"My new locker code is {word}again", "Noted.")
        lc.end()
        assert memory.flush(timeout=60).ok
        settle(openviking, tenant["account"], "alice")
        until("a memory made after the forget", lambda: present("alice", f"{word}again"))
        nothing = memory.forget(user_id="carol")  # never wrote anything: nothing kept
        assert nothing.wait(60) and nothing.ok, (nothing.kept, nothing.failures)


def test_forget_right_after_a_commit_waits_for_what_the_commit_extracts(
    openviking: Stack, tenant: dict[str, str]
) -> None:
    backend = backend_for(openviking, tenant)
    word = f"zq{uuid.uuid4().hex[:8]}"
    with memcore.Memory(backends=[backend], plugins=[], journal=False, retry=RETRY) as memory:
        lc = memory.lifecycle("quick", user_id="dora")
        lc.sync_turn(f"My bike lock code is {word}", "Noted.")
        lc.end()
        handle = lc.forget()  # queued right behind the commit: the extraction has not run yet
        assert handle.wait(120) and not handle.failures, handle.failures
        settle(openviking, tenant["account"], "dora")
        assert not [t for t in recalled(memory, word, "dora") if word in t]
    with as_user(openviking, tenant["account"], "dora") as dora:
        found = result(dora.post("/search/find", json={"query": word, "target_uri": "viking://~/memories"}))
        assert not [h for h in found["memories"] if word in (h.get("abstract") or "")], found


# -- exactly once ---------------------------------------------------------------------------------------------------


def _posts(faults: FaultInjector, suffix: str) -> list[str]:
    """Outcomes of the POSTs to paths ending with ``suffix`` that reached the server."""
    return [e.outcome for e in faults.log if e.method == "POST" and e.path.split("?")[0].endswith(suffix)]


def test_lost_replies_leave_one_copy_of_each_turn_and_one_commit(openviking: Stack, tenant: dict[str, str]) -> None:
    faults = FaultInjector()
    faults.add("reset", phase="read", every=2, match=lambda r: r.url.path.endswith("/messages/batch"))
    faults.add("timeout", phase="read", times=2, match=lambda r: r.url.path.endswith("/commit"))
    backend = backend_for(openviking, tenant, FaultTransport(faults=faults))
    sessions = {"s1": "alice", "s2": None}
    with memcore.Memory(backends=[backend], plugins=[], journal=False, retry=RETRY) as memory:
        for sid, user in sessions.items():
            lc = memory.lifecycle(sid, user_id=user)
            for t in range(5):
                lc.sync_turn(f"{sid} turn {t}", f"{sid} answer {t}")
            lc.end()
        report = memory.flush(timeout=120)
        assert report.ok and report.delivered == 10 and report.committed == 2, report
    assert faults.faulted["reset"] == 5 and faults.faulted["timeout"] == 2, faults.faulted
    reader = backend_for(openviking, tenant)
    for sid, user in sessions.items():
        texts = [m.content for m in reader.memcore_history(memcore.Session(id=sid, user_id=user))]
        assert texts == [x for t in range(5) for x in (f"{sid} turn {t}", f"{sid} answer {t}")], texts
        with as_user(openviking, tenant["account"], backend.openviking_user(user)) as client:
            state = result(client.get(f"/sessions/{sid}"))
        assert (state["commit_count"], state["total_message_count"]) == (1, 10), state
    # Every batch reached the server once (half of them lost their reply, and the retry found them there); the two
    # commits once each (their replies were lost too).
    assert sorted(_posts(faults, "/messages/batch")) == ["forwarded"] * 5 + ["read reset"] * 5
    assert _posts(faults, "/commit") == ["read timeout"] * 2


def test_a_crashed_process_taken_over_does_not_store_its_turn_twice(
    openviking: Stack, tenant: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first process's write reaches the server, its reply is lost, and the process stops before it knows:
    the journal keeps the write (and the commit behind it). The next process takes them over (``attempt > 1``)."""
    monkeypatch.setenv("MEMCORE_HOME", str(tmp_path / "home"))
    faults = FaultInjector()
    faults.add("reset", phase="read", match=lambda r: r.url.path.endswith("/messages/batch"))
    slow = memcore.RetryPolicy(initial=30.0, max_delay=30.0, deadline=120.0)  # still backing off at the close
    first = memcore.Memory(
        backends=[backend_for(openviking, tenant, FaultTransport(faults=faults))], plugins=[], retry=slow
    )
    lc = first.lifecycle("crash", user_id="erin")
    lc.sync_turn("erin's turn before the crash", "ok")
    until("the write reached the server", lambda: faults.faulted["reset"])
    report = first.close(timeout=1.0)
    assert report.pending >= 1 and report.journaled >= 1, report
    second = memcore.Memory(backends=[backend_for(openviking, tenant)], plugins=[], retry=RETRY)
    try:
        report = second.flush(timeout=60)
        assert report.ok and report.replayed >= 1, report
    finally:
        second.close(timeout=30)
    reader = backend_for(openviking, tenant)
    texts = [m.content for m in reader.memcore_history(memcore.Session(id="crash", user_id="erin"))]
    assert texts == ["erin's turn before the crash", "ok"], texts
    with as_user(openviking, tenant["account"], "erin") as erin:
        assert result(erin.get("/sessions/crash"))["commit_count"] == 1


def test_a_retry_finds_a_batch_that_a_commit_archived_meanwhile(openviking: Stack, tenant: dict[str, str]) -> None:
    backend = backend_for(openviking, tenant)
    session = memcore.Session(id="archived", user_id="fay")
    backend.memcore_open_session(session)
    turn = [memcore.Message(role="user", content="fay's only turn"), memcore.Message(role="assistant", content="ok")]
    backend.memcore_write(session, turn, key="k1", attempt=1)
    assert backend.memcore_commit(session, attempt=1)  # archived (someone else's commit, as far as the retry knows)
    settle(openviking, tenant["account"], "fay")  # extraction done: the messages are in a completed archive only
    backend.memcore_write(session, turn, key="k1", attempt=2)
    assert backend.memcore_commit(session, attempt=2) is None  # nothing live: no second commit
    assert [m.content for m in backend.memcore_history(session)] == ["fay's only turn", "ok"]
    with as_user(openviking, tenant["account"], "fay") as fay:
        state = result(fay.get("/sessions/archived"))
    assert (state["commit_count"], state["total_message_count"]) == (1, 2), state
    backend.memcore_write(session, turn, key="k2", attempt=2)  # another key: a new turn, stored
    assert len(backend.memcore_history(session)) == 4


# -- api_key mode: one key is one user ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_key_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    server = find_server()
    if server is None:
        if REQUIRED:
            pytest.fail("MEMCORE_REQUIRE_OPENVIKING=1 but openviking-server is not installed", pytrace=False)
        pytest.skip("openviking-server is not installed (pip install openviking)")
    stack = start(tmp_path_factory.mktemp("openviking-api-key"), server, deadline=60.0, auth_mode="api_key")
    yield stack
    stack.stop()


def test_with_one_users_key_only_the_default_user_is_served(api_key_server: Stack) -> None:
    stack = api_key_server
    admin = {"X-API-Key": stack.api_key}
    made = result(
        httpx.post(
            stack.url + "/api/v1/admin/accounts", json={"account_id": "acme", "admin_user_id": "boss"}, headers=admin
        )
    )
    key = made["user_key"]
    backend = OpenVikingBackend(url=stack.url, api_key=key)
    assert backend.separates_users is False
    with memcore.Memory(backends=[backend], plugins=[], journal=False, retry=RETRY) as memory:
        with pytest.raises(memcore.UsersNotSeparated):
            memory.lifecycle("s1", user_id="alice")
        lc = memory.lifecycle("s1")
        lc.sync_turn("the key's own user writes", "ok")
        lc.remember("a note of the key's user")
        lc.end()
        assert memory.flush(timeout=60).ok
    reader = OpenVikingBackend(url=stack.url, api_key=key)  # memcore closed the other one
    assert [m.content for m in reader.memcore_history(memcore.Session(id="s1"))] == ["the key's own user writes", "ok"]
    # Claiming trusted mode with a user's key: the server ignores the user header, and memcore-openviking sees it.
    claimed = OpenVikingBackend(url=stack.url, api_key=key, auth_mode="trusted", account="acme")
    with pytest.raises(RuntimeError, match="does not take X-OpenViking-User"):
        claimed.memcore_open_session(memcore.Session(id="s2", user_id="alice"))

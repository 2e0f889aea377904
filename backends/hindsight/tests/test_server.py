"""What the shared suite does not cover, against the real server: users, forget, rewind, idempotent retries, session
scoped recall, and commit -> consolidation -> observations."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import memcore
import pytest
from memcore.http import FaultInjector, FaultTransport
from support.stack import Stack

from memcore_hindsight import HindsightBackend

Found = Callable[[list[memcore.Recollection]], bool]


def open_memory(backend: HindsightBackend) -> memcore.Memory:
    return memcore.Memory(backends=[backend], plugins=[], journal=False)


def until(fetch: Callable[[], list[memcore.Recollection]], ok: Found, deadline: float = 30.0) -> list[Any]:
    end = time.monotonic() + deadline
    while True:
        got = fetch()
        if ok(got) or time.monotonic() > end:
            return got
        time.sleep(0.1)


def has(word: str) -> Found:
    return lambda got: any(word in r.text for r in got)


def test_users_are_kept_apart_each_in_a_bank_of_its_own(hindsight: Stack, bank: str) -> None:
    backend = HindsightBackend(url=hindsight.url, bank=bank)
    with open_memory(backend) as memory:
        for user in ("alice", "bob/../x"):
            memory.lifecycle("shared-id", user_id=user).sync_turn(f"{user.split('/')[0]}word lives here", "ok")
        memory.lifecycle("shared-id").sync_turn("nobodyword is the default user's", "ok")
        assert memory.flush(timeout=60).ok
        alice = until(lambda: memory.recall("lives here", limit=10, user_id="alice"), has("aliceword"))
        assert has("aliceword")(alice) and not has("bobword")(alice) and not has("nobodyword")(alice)
        bob = until(lambda: memory.recall("lives here", limit=10, user_id="bob/../x"), has("bobword"))
        assert has("bobword")(bob) and not has("aliceword")(bob)
        default = until(lambda: memory.recall("default user", limit=10), has("nobodyword"))
        assert not has("aliceword")(default) and not has("bobword")(default)
    banks = {b["bank_id"] for b in httpx.get(hindsight.url + "/v1/default/banks").json()["banks"]}
    assert {bank, f"{bank}--alice", f"{bank}--bob%2F..%2Fx"} <= banks


def test_forget_a_session_then_a_user(hindsight: Stack, bank: str) -> None:
    backend = HindsightBackend(url=hindsight.url, bank=bank)
    with open_memory(backend) as memory:
        gone, stays = memory.lifecycle("gone", user_id="carol"), memory.lifecycle("stays", user_id="carol")
        gone.sync_turn("gonetoken was said", "ok")
        gone.remember("gonenote is a note of it", kind="preference")
        stays.sync_turn("staytoken was said", "ok")
        assert memory.flush(timeout=60).ok
        recall: Callable[[], list[memcore.Recollection]] = lambda: memory.recall("said note", 10, user_id="carol")  # noqa: E731
        assert has("gonenote")(until(recall, has("gonenote")))
        forgetting = memory.forget(user_id="carol", session_id="gone")
        assert forgetting.wait(60) and not forgetting.failures
        assert "llm-requests" in forgetting.kept["hindsight"]
        after = recall()
        assert not has("gonetoken")(after) and not has("gonenote")(after) and has("staytoken")(after)
        assert backend.memcore_history(memcore.Session(id="gone", user_id="carol")) == []
        everything = memory.forget(user_id="carol")
        assert everything.wait(60) and everything.ok
        assert memory.recall("said", 10, user_id="carol") == []


def test_rewind_removes_the_last_turns_from_the_document(hindsight: Stack, bank: str) -> None:
    backend = HindsightBackend(url=hindsight.url, bank=bank)
    with open_memory(backend) as memory:
        lc = memory.lifecycle("r1")
        for i in range(4):
            lc.sync_turn(f"turn {i} rewindword{i}", f"answer {i}")
        assert memory.flush(timeout=60).ok
        lc.switch("r1", reason="rewind", turns=2)
        assert memory.flush(timeout=60).ok
        texts = [m.content for m in backend.memcore_history(memcore.Session(id="r1"))]
        assert texts == ["turn 0 rewindword0", "answer 0", "turn 1 rewindword1", "answer 1"]
        assert not has("rewindword3")(memory.recall("turn rewindword3", limit=10))
        lc.switch("r1", reason="rewind", turns=5)
        assert memory.flush(timeout=60).ok
        assert backend.memcore_history(memcore.Session(id="r1")) == []


def test_lost_answers_never_duplicate_a_turn_or_a_note(hindsight: Stack, bank: str) -> None:
    """Every write's answer is lost once (the server did the work): the retry finds its key and sends nothing."""
    faults = FaultInjector()
    faults.add("reset", phase="read", every=2, match=lambda r: r.method == "POST" and r.url.path.endswith("/memories"))
    backend = HindsightBackend(url=hindsight.url, bank=bank, transport=FaultTransport(httpx.HTTPTransport(), faults))
    with open_memory(backend) as memory:
        lc = memory.lifecycle("dup")
        for i in range(6):
            lc.sync_turn(f"question {i}", "ok")  # the same answer every time: only the keys tell turns apart
            if i % 2:
                lc.remember(f"note {i}")
        report = memory.flush(timeout=120)
        assert report.ok and report.retried >= 4, report
        faults.clear()
        texts = [m.content for m in backend.memcore_history(memcore.Session(id="dup"))]
        assert texts == [t for i in range(6) for t in (f"question {i}", "ok")]
    listed = httpx.get(f"{hindsight.url}/v1/default/banks/{bank}/documents", params={"tags": ["memcore:note"]})
    assert listed.json()["total"] == 3


def test_scoped_recall_keeps_sessions_apart(hindsight: Stack, bank: str) -> None:
    backend = HindsightBackend(url=hindsight.url, bank=bank, scoped_recall=True)
    with open_memory(backend) as memory:
        a, b = memory.lifecycle("a"), memory.lifecycle("b")
        a.sync_turn("scopeword alpha belongs to a", "ok")
        b.sync_turn("scopeword bravo belongs to b", "ok")
        assert memory.flush(timeout=60).ok
        in_a = until(lambda: a.recall("scopeword", limit=10), has("alpha"))
        assert has("alpha")(in_a) and not has("bravo")(in_a)
        assert {r.session_id for r in in_a} == {"a"}
        everywhere = until(lambda: memory.recall("scopeword", limit=10), lambda got: has("bravo")(got))
        assert has("alpha")(everywhere) and has("bravo")(everywhere)


def test_commit_queues_a_consolidation_whose_observations_recall_finds(hindsight: Stack, bank: str) -> None:
    backend = HindsightBackend(url=hindsight.url, bank=bank)
    session = memcore.Session(id="obs")
    backend.memcore_write(session, [memcore.Message(role="user", content="obsword runs on Tuesdays")], "k1", 1)
    started = time.monotonic()
    operation = backend.memcore_commit(session)
    assert operation and time.monotonic() - started < 5
    url = f"{hindsight.url}/v1/default/banks/{bank}/operations/{operation}"
    deadline = time.monotonic() + 60
    while (status := httpx.get(url).json()["status"]) not in ("completed", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert status == "completed"
    found = until(lambda: list(backend.memcore_recall("obsword Tuesdays", None, 10, None)), has("Observed: obsword"))
    observed = [r for r in found if r.text.startswith("Observed: obsword")]
    assert observed and observed[0].metadata["origin"] == "observation", [(r.text, r.metadata) for r in found]
    fact = next(r for r in found if r.text == "obsword runs on Tuesdays")
    assert fact.session_id == "obs" and fact.metadata["origin"] == "world" and fact.score is not None


@pytest.mark.parametrize("sid", ["a/b", "x/chunks", "..", "%2F", "🧠 space"])
def test_awkward_ids_are_documents_of_their_own(hindsight: Stack, bank: str, sid: str) -> None:
    backend = HindsightBackend(url=hindsight.url, bank=bank)
    session = memcore.Session(id=sid)
    backend.memcore_write(session, [memcore.Message(role="user", content=f"in {sid}")], "k", 1)
    assert [m.content for m in backend.memcore_history(session)] == [f"in {sid}"]
    for decoy in {sid.replace("/", "_"), sid.split("/")[0], sid + "-other"} - {sid}:
        assert backend.memcore_history(memcore.Session(id=decoy)) == []

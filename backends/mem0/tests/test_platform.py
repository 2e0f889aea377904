"""Platform mode against the fake of mem0's API (``support/fake_platform.py``): the fake checked with mem0's own
``MemoryClient``, then the shared conformance suite and commit -> extraction -> recall through memcore."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import httpx
import memcore
import pytest
from memcore.http import FaultInjector, FaultTransport
from memcore.testing import BackendSuite
from support.fake_openai import FACT_PREFIX
from support.fake_platform import FakePlatform

from memcore_mem0 import Mem0PlatformBackend


def make(fake: FakePlatform, key: str, transport: httpx.BaseTransport | None = None) -> Mem0PlatformBackend:
    return Mem0PlatformBackend(api_key=key, url=fake.url, threshold=0.0, transport=transport)


def test_mem0s_own_client_works_against_the_fake(fake_platform: FakePlatform) -> None:
    """The fake answers mem0ai's MemoryClient (2.2.1) the way the SDK expects, for every call the backend makes."""
    from mem0 import MemoryClient

    key = uuid.uuid4().hex
    client = MemoryClient(api_key=key, host=fake_platform.url)
    added = client.add(
        [{"role": "user", "content": "I like green tea"}, {"role": "assistant", "content": "Noted."}],
        user_id="alice",
        run_id="s1",
        metadata={"source": "sdk"},
        infer=False,
    )
    assert added["status"] == "SUCCEEDED" and [r["data"]["memory"] for r in added["results"]] == [
        "I like green tea",
        "Noted.",
    ]
    listed = client.get_all(filters={"AND": [{"user_id": "alice"}, {"run_id": "s1"}]}, page=1, page_size=1)
    assert listed["count"] == 2 and listed["next"] and len(listed["results"]) == 1
    assert listed["results"][0]["session_id"] == "s1" and listed["results"][0]["metadata"] == {"source": "sdk"}
    found = client.search("green tea", filters={"user_id": "alice"}, top_k=5, threshold=0.0)
    assert found["results"][0]["memory"] == "I like green tea" and found["results"][0]["run_id"] == "s1"
    memory_id = found["results"][0]["id"]
    assert client.update(memory_id, metadata={"seen": True})["metadata"] == {"seen": True}
    assert client.get(memory_id)["metadata"] == {"seen": True}
    queued = client.add([{"role": "user", "content": "I live in Lyon"}], user_id="alice", run_id="s1")
    assert queued["status"] == "PENDING" and queued["event_id"]
    assert client.search("Lyon", filters={"user_id": "alice"}, threshold=0.0)["results"][0]["memory"] == (
        FACT_PREFIX + "I live in Lyon"
    )
    assert client.delete(memory_id)["message"]
    assert client.search("green tea", filters={"user_id": "bob"}, threshold=0.0)["results"] == []
    assert "Delete in progress" in client.delete_all(user_id="alice")["message"]
    assert client.get_all(filters={"user_id": "alice"})["count"] == 0
    with pytest.raises(Exception, match="entity"):
        client.search("x", filters={"metadata_only": 1})


class TestMem0Platform(BackendSuite):
    # No http_backend: the suite's HTTP fault tests check that the service received each turn's words once, in call
    # order, and a commit sends the session's new turns again (the platform extracts from the messages it is given).
    # test_faults_... below puts the same faults under the client and checks the store instead.
    scoped_recall = False
    index_deadline = 10.0

    @pytest.fixture
    def backend(self, fake_platform: FakePlatform) -> Iterator[Mem0PlatformBackend]:
        yield make(fake_platform, uuid.uuid4().hex)  # a key of its own: an empty project


class TestMem0PlatformSessionScope(TestMem0Platform):
    scoped_recall = True

    @pytest.fixture
    def backend(self, fake_platform: FakePlatform) -> Iterator[Mem0PlatformBackend]:
        yield Mem0PlatformBackend(api_key=uuid.uuid4().hex, url=fake_platform.url, threshold=0.0, scope="session")


def test_faults_end_with_every_turn_stored_once_in_order_and_one_commit_each(fake_platform: FakePlatform) -> None:
    faults = FaultInjector(rng=random.Random(11))
    faults.add("status", status=503, times=3, retry_after=0)
    faults.add("status", status=503, every=5)
    faults.add("timeout", every=7)
    faults.add("reset", phase="read", every=4)  # the service did the work, the answer was lost
    key = uuid.uuid4().hex
    backend = make(fake_platform, key, FaultTransport(httpx.HTTPTransport(), faults))
    retry = memcore.RetryPolicy(initial=0.001, max_delay=0.01, deadline=20)
    with memcore.Memory(backends=[backend], plugins=[], journal=False, retry=retry) as memory:
        sessions = {sid: memory.lifecycle(sid) for sid in ("a", "b/c")}
        for i in range(8):
            for sid, lc in sessions.items():
                lc.sync_turn(f"I said {sid}{i}", f"ok {sid}{i}")
        for lc in sessions.values():
            lc.end()
        report = memory.flush(timeout=60)
        assert report.failed == 0 and report.committed == 2 and report.retried, report
        faults.clear()
        for sid in sessions:
            stored = [m.content for m in backend.memcore_history(memcore.Session(id=sid))]
            assert stored == [t for i in range(8) for t in (f"I said {sid}{i}", f"ok {sid}{i}")]
    facts = [r["memory"] for r in fake_platform.projects[key].values() if r["metadata"].get("memcore_kind") == "memory"]
    assert sorted(facts) == sorted(f"{FACT_PREFIX}I said {sid}{i}" for sid in ("a", "b/c") for i in range(8))
    assert all(faults.faulted[kind] for kind in ("status", "timeout", "reset")), faults.faulted


def test_commit_extracts_a_fact_that_recall_finds(fake_platform: FakePlatform) -> None:
    backend = make(fake_platform, uuid.uuid4().hex)
    with memcore.Memory(backends=[backend], plugins=[], journal=False) as memory:
        lc = memory.lifecycle("trip/2026 ✈", user_id="alice")
        lc.sync_turn("I keep my climbing shoes in the blue locker", "Noted.")
        lc.end()
        report = memory.flush(timeout=30)
        assert report.committed == 1 and report.failed == 0, report
        found = memory.recall("climbing shoes", limit=5, timeout=10, user_id="alice")
    facts = [r for r in found if r.metadata.get("origin") == "memory"]
    assert [r.text for r in facts] == [FACT_PREFIX + "I keep my climbing shoes in the blue locker"], found
    assert facts[0].session_id == "trip/2026 ✈"

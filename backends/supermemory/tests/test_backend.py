"""memcore-supermemory beyond the shared suite: what a commit sends and what Supermemory learns from it, commits under
faults (the suite's fault tests run with ``commit="none"``), rewind of a committed session, namespaces, errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import memcore
import pytest
from memcore.http import FaultInjector, FaultTransport, HTTPStatusError
from support.fake_supermemory import FakeSupermemory

from memcore_supermemory import SupermemoryBackend, namespace_for


@pytest.fixture
def memory_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    monkeypatch.setenv("MEMCORE_HOME", str(tmp_path / "home"))
    made: list[memcore.Memory] = []

    def make(backend: SupermemoryBackend) -> memcore.Memory:
        quick = memcore.RetryPolicy(initial=0.01, max_delay=0.05, deadline=20.0)
        made.append(memcore.Memory(backends=[backend], journal=False, retry=quick))
        return made[-1]

    yield make
    for memory in made:
        memory.close(timeout=10)


def _docs(fake: FakeSupermemory, ns: str) -> list[dict[str, Any]]:
    with fake.lock:
        return sorted((fake.namespaces.get(ns) or {}).get("documents", {}).values(), key=lambda d: d["seq"])


def test_commit_sends_the_transcript_once_and_supermemory_learns_from_it(
    fake_supermemory: FakeSupermemory, namespace: str, memory_of: Any
) -> None:
    memory = memory_of(SupermemoryBackend(url=fake_supermemory.url, namespace=namespace))
    lc = memory.lifecycle("s1", user_id="alice")
    lc.sync_turn("I keep bees on the roof", "Noted: bees on the roof.")
    lc.sync_turn("The hives are blue", "Blue hives, got it.")
    lc.end()
    lc.end()  # nothing new: no second commit
    assert memory.flush(timeout=10).failed == 0
    ns = namespace_for(namespace, "alice")
    docs = _docs(fake_supermemory, ns)
    assert [d["metadata"]["memcore"] for d in docs] == ["turn", "turn", "session"]
    assert [d["taskType"] for d in docs] == ["superrag", "superrag", "memory"]
    assert docs[2]["content"] == (
        "user: I keep bees on the roof\n\nassistant: Noted: bees on the roof.\n\n"
        "user: The hives are blue\n\nassistant: Blue hives, got it."
    )
    fake_supermemory.settle()
    found = memory.recall("bees roof", user_id="alice", limit=5)
    origins = {r.metadata.get("origin") for r in found}
    assert origins == {"memory", "chunk"}, found
    assert "I keep bees on the roof" in {r.text for r in found}  # the memory learned from the commit
    assert all(r.session_id == "s1" for r in found)
    assert memory.recall("bees roof", limit=5) == []  # the default user's namespace holds nothing

    lc.sync_turn("A third hive arrives in May", "Three hives then.")
    lc.end()
    memory.flush(timeout=10)
    fake_supermemory.settle()
    with fake_supermemory.lock:
        learned = {m["memory"] for m in fake_supermemory.namespaces[ns]["memories"].values()}
    assert learned == {"I keep bees on the roof", "The hives are blue", "A third hive arrives in May"}


def test_commits_and_writes_under_faults_land_once(
    fake_supermemory: FakeSupermemory, namespace: str, memory_of: Any
) -> None:
    faults = FaultInjector()
    faults.add("status", status=503, every=3, retry_after=0)
    faults.add("reset", phase="read", every=4)  # the service did the work, the answer was lost
    faults.add("timeout", phase="read", every=7)
    transport = FaultTransport(httpx.HTTPTransport(), faults)
    backend = SupermemoryBackend(url=fake_supermemory.url, namespace=namespace, transport=transport, timeout=5)
    memory = memory_of(backend)
    lc = memory.lifecycle("s1")
    expected = []
    for i in range(12):
        lc.sync_turn(f"turn {i} question", f"turn {i} answer")
        expected += [f"turn {i} question", f"turn {i} answer"]
        if i % 4 == 3:
            lc.end()
    lc.remember("likes honey", kind="preference")
    report = memory.flush(timeout=30)
    assert report.failed == 0 and report.pending == 0, report
    assert faults.faulted["status"] and faults.faulted["reset"] and faults.faulted["timeout"], faults.faulted
    docs = _docs(fake_supermemory, namespace)
    kinds = [d["metadata"]["memcore"] for d in docs]
    assert kinds.count("turn") == 12 and kinds.count("note") == 1 and kinds.count("session") == 1
    session = next(d for d in docs if d["metadata"]["memcore"] == "session")
    assert re.findall(r"turn \d+ \w+", session["content"]) == expected
    faults.clear()
    history = backend.memcore_history(memcore.Session(id="s1"))
    assert [m.content for m in history] == expected


def test_rewind_deletes_the_turns_and_rewrites_the_committed_transcript(
    fake_supermemory: FakeSupermemory, namespace: str, memory_of: Any
) -> None:
    backend = SupermemoryBackend(url=fake_supermemory.url, namespace=namespace)
    memory = memory_of(backend)
    lc = memory.lifecycle("s1")
    for word in ("apples", "pears", "plums"):
        lc.sync_turn(f"I like {word}", "ok")
    lc.end()
    memory.flush(timeout=10)
    backend.memcore_rewind(memcore.Session(id="s1"), 2)
    docs = _docs(fake_supermemory, namespace)
    assert [d["metadata"]["memcore"] for d in docs] == ["turn", "session"]
    assert docs[1]["content"] == "user: I like apples\n\nassistant: ok"
    backend.memcore_rewind(memcore.Session(id="s1"), 5)
    assert _docs(fake_supermemory, namespace) == []  # nothing left: the transcript goes too


def test_namespaces_keep_users_apart_within_supermemorys_rules() -> None:
    ids = ["alice", "Alice", "a:b", "a_3ab", "a_b", "\uff41lice", "../x", "", "u" * 256, "u" * 255, "🧠"]
    names = [namespace_for("memcore", u) for u in ids]
    assert len(set(names)) == len(names) and namespace_for("memcore", None) == "memcore"
    assert all(re.fullmatch(r"[A-Za-z0-9_:-]{1,100}", n) for n in names), names
    assert namespace_for("memcore", "a:b") == "memcore:a_3ab" != namespace_for("memcore", "a_3ab")
    for bad in ("", "has:colon", "x" * 41, "sp ace"):
        with pytest.raises(ValueError):
            SupermemoryBackend(url="http://127.0.0.1:1", namespace=bad)
    with pytest.raises(ValueError):
        SupermemoryBackend(url="http://127.0.0.1:1", search_mode="documents")


def test_errors_say_what_supermemory_said_and_never_the_key(namespace: str) -> None:
    with FakeSupermemory(api_key="sm_right") as fake:
        wrong = SupermemoryBackend(url=fake.url, api_key="sm_wrong_secret", namespace=namespace)
        assert "sm_wrong_secret" not in repr(wrong) and "sm_wrong_secret" not in wrong.journal_key
        with pytest.raises(HTTPStatusError) as exc:
            wrong.memcore_write(memcore.Session(id="s"), [memcore.Message(role="user", content="x")], "k", 1)
        assert exc.value.status_code == 401 and "Invalid or missing API key" in str(exc.value)
        assert "sm_wrong_secret" not in str(exc.value)
        right = SupermemoryBackend(url=fake.url, api_key="sm_right", namespace=namespace)
        fake.throttle(1, retry_after=2)
        with pytest.raises(memcore.TransientError) as limited:
            right.memcore_recall("x", None, 5, None)
        assert limited.value.retry_after == 2
        with pytest.raises(HTTPStatusError) as bad:  # the fake's search takes at most 100 results
            right._call("POST", f"/ns/{namespace}/search", {"query": "x", "limit": 101})
        assert bad.value.status_code == 400 and "body.limit" in str(bad.value)
        right.memcore_close()
        wrong.memcore_close()

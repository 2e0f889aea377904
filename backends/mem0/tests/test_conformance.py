"""The shared conformance suite on the local mem0 backend (recall per user, and per session), and commit ->
extraction -> recall end to end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import memcore
import pytest
from memcore.testing import BackendSuite
from support.fake_openai import FACT_PREFIX, FakeOpenAI

from memcore_mem0 import Mem0Backend


class TestMem0(BackendSuite):
    # No http_backend: the suite's HTTP fault tests read what the service received off the wire, and here the wire
    # carries model requests (embeddings, extraction prompts that quote earlier turns), not the store's writes.
    # test_unit.py puts the same faults under the model client and checks the store.
    #
    # Recall searches the whole user (scope="user", the default): a later session recalls an earlier one.
    scoped_recall = False
    index_deadline = 10.0
    scope = "user"

    @pytest.fixture
    def backend(self, settings: dict[str, Any]) -> Iterator[Mem0Backend]:
        backend = Mem0Backend(**settings, scope=self.scope)
        yield backend
        backend.memcore_close()  # a test that used another instance leaves this one open (closing twice is fine)


class TestMem0SessionScope(TestMem0):
    # scope="session": recall in a session searches only that session's run (checked for leaks).
    scoped_recall = True
    scope = "session"


def test_commit_extracts_a_fact_that_recall_finds(settings: dict[str, Any], fake_openai: FakeOpenAI) -> None:
    """Turns -> commit (mem0's extraction over what is new) -> the extracted fact is recalled, through memcore."""
    backend = Mem0Backend(**settings)
    with memcore.Memory(backends=[backend], plugins=[], journal=False) as memory:
        lc = memory.lifecycle("trip/2026 ✈")
        lc.sync_turn("I keep my climbing shoes in the blue locker", "Noted.")
        before = fake_openai.calls["completions"]
        assert memory.flush(timeout=30).pending == 0
        assert fake_openai.calls["completions"] == before  # a write extracts nothing
        lc.end()
        report = memory.flush(timeout=30)
        assert report.committed == 1 and report.failed == 0, report
        assert fake_openai.calls["completions"] == before + 1
        found = memory.recall("where are the climbing shoes", limit=5, timeout=10)
    facts = [r for r in found if r.metadata.get("origin") == "memory"]
    assert [r.text for r in facts] == [FACT_PREFIX + "I keep my climbing shoes in the blue locker"], found
    assert facts[0].session_id == "trip/2026 ✈" and facts[0].source == "mem0"

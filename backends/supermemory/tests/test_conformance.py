"""The shared conformance suite against the fake Supermemory server (tests/support/fake_supermemory.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from memcore.testing import BackendSuite, closed_port
from support.fake_supermemory import FakeSupermemory

from memcore_supermemory import SupermemoryBackend


class TestSupermemory(BackendSuite):
    # A namespace spans sessions: recall in a session searches every document of the user's namespace
    # (scoped_recall=True filters the search to the session's documents; TestSupermemoryScoped checks that mode).
    scoped_recall = False
    # Chunk search returns the stored turn text itself.
    recall_is_verbatim = True
    # Documents are searchable once processed (the fake: 20 ms after they are added).
    index_deadline = 10.0
    scoped = False

    @pytest.fixture
    def backend(self, fake_supermemory: FakeSupermemory, namespace: str) -> Iterator[SupermemoryBackend]:
        yield SupermemoryBackend(url=fake_supermemory.url, namespace=namespace, scoped_recall=self.scoped)

    @pytest.fixture
    def http_backend(
        self, fake_supermemory: FakeSupermemory, namespace: str
    ) -> Callable[[httpx.BaseTransport], SupermemoryBackend]:
        # commit="none" here only: the suite's fault tests count every turn's words in the bodies the service
        # accepted, and a commit sends the session's transcript (what Supermemory learns from), so each turn would
        # be counted twice. test_backend.py puts the same faults under commits and checks the store instead.
        return lambda transport: SupermemoryBackend(
            url=fake_supermemory.url,
            namespace=namespace,
            scoped_recall=self.scoped,
            commit="none",
            transport=transport,
        )

    @pytest.fixture
    def down_backend(self, namespace: str) -> Iterator[SupermemoryBackend]:
        with closed_port() as port:  # the same backend, its server down: nothing listens there
            yield SupermemoryBackend(url=f"http://127.0.0.1:{port}", namespace=namespace, scoped_recall=self.scoped)


class TestSupermemoryScoped(TestSupermemory):
    scoped_recall = True
    scoped = True

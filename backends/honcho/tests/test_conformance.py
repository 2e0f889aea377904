"""The shared conformance suite against the fake Honcho server (tests/support/fake_honcho.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from memcore.testing import BackendSuite, closed_port
from support.fake_honcho import FakeHoncho

from memcore_honcho import HonchoBackend


class TestHoncho(BackendSuite):
    # A user's workspace spans sessions: recall in a session searches every session of the user's workspace
    # (scoped_recall=True filters the search to the session; TestHonchoScoped checks that mode).
    scoped_recall = False
    # Message search returns the stored messages themselves.
    recall_is_verbatim = True
    index_deadline = 10.0
    scoped = False

    @pytest.fixture
    def backend(self, fake_honcho: FakeHoncho, workspace: str) -> Iterator[HonchoBackend]:
        yield HonchoBackend(url=fake_honcho.url, workspace=workspace, scoped_recall=self.scoped)

    @pytest.fixture
    def http_backend(self, fake_honcho: FakeHoncho, workspace: str) -> Callable[[httpx.BaseTransport], HonchoBackend]:
        return lambda transport: HonchoBackend(
            url=fake_honcho.url, workspace=workspace, scoped_recall=self.scoped, transport=transport
        )

    @pytest.fixture
    def down_backend(self, workspace: str) -> Iterator[HonchoBackend]:
        with closed_port() as port:  # the same backend, its server down: nothing listens there
            yield HonchoBackend(url=f"http://127.0.0.1:{port}", workspace=workspace, scoped_recall=self.scoped)


class TestHonchoScoped(TestHoncho):
    scoped_recall = True
    scoped = True

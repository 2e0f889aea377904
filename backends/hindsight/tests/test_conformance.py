"""The shared conformance suite against a real Hindsight server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from memcore.testing import BackendSuite, closed_port
from support.stack import Stack

from memcore_hindsight import HindsightBackend


class TestHindsight(BackendSuite):
    # A user's bank spans sessions: recall in a session searches every session of the user (scoped_recall=True
    # narrows it to the session's tag; tests/test_server.py checks that mode).
    scoped_recall = False
    # Recall returns the facts Hindsight's LLM extracted (and observations consolidated from them), not the turns.
    recall_is_verbatim = False
    index_deadline = 30.0

    @pytest.fixture
    def backend(self, hindsight: Stack, bank: str) -> Iterator[HindsightBackend]:
        yield HindsightBackend(url=hindsight.url, bank=bank)

    @pytest.fixture
    def http_backend(self, hindsight: Stack, bank: str) -> Callable[[httpx.BaseTransport], HindsightBackend]:
        return lambda transport: HindsightBackend(url=hindsight.url, bank=bank, transport=transport)

    @pytest.fixture
    def down_backend(self, bank: str) -> Iterator[HindsightBackend]:
        with closed_port() as port:  # the same backend, its server down: nothing listens there
            yield HindsightBackend(url=f"http://127.0.0.1:{port}", bank=bank)

"""A backend that is down never blocks hermes-agent's turn, and shutdown returns within its budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import memcore
import pytest
from agent.memory_manager import MemoryManager

from memcore_hermes import MemcoreMemoryProvider

SAFETY = 30.0  # a hung call is released by the test; this only keeps a broken test from hanging forever


class Hung:
    """Every call blocks until the test opens the gate."""

    name = "hung"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()

    def _hang(self) -> None:
        self.entered.set()
        self.gate.wait(SAFETY)

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Any) -> None:
        self._hang()

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self._hang()

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: memcore.Session | None, limit: int) -> list[memcore.Recollection]:
        self._hang()
        return []


class Refusing:
    """A service that answers 503 to everything: memcore retries on its own threads."""

    name = "refusing"

    def __init__(self) -> None:
        self.gate = threading.Event()  # unused; same shape as Hung
        self.entered = threading.Event()

    def _fail(self) -> None:
        self.entered.set()
        raise memcore.TransientError("503 service unavailable")

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Any) -> None:
        self._fail()

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self._fail()

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: memcore.Session | None, limit: int) -> list[memcore.Recollection]:
        self._fail()
        return []


@pytest.fixture(params=[Hung, Refusing])
def down(request: pytest.FixtureRequest) -> Iterator[Any]:
    backend = request.param()
    yield backend
    backend.gate.set()


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def test_a_down_backend_never_blocks_the_turn_and_shutdown_keeps_its_budget(down: Any) -> None:
    budget = 0.5
    retry = memcore.RetryPolicy(initial=0.05, max_delay=0.2, deadline=SAFETY)
    memory = memcore.Memory(backends=[down], retry=retry)
    provider = MemcoreMemoryProvider(
        {"prefetch_timeout": 0.2, "recall_timeout": 0.2, "shutdown_timeout": budget}, memory=memory
    )
    mm = MemoryManager()
    mm.add_provider(provider)
    mm.initialize_all(session_id="s1", platform="cli", agent_context="primary")

    # A turn: prefetch (bounded by prefetch_timeout, far below MemoryManager's own 8 s cut-off), then sync.
    context, elapsed = timed(mm.prefetch_all, "hello")
    assert context == "" and elapsed < 2.0
    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    mm.sync_all("hello", "hi", session_id="s1", messages=messages)
    mm.queue_prefetch_all("hello", session_id="s1")
    # hermes' serialized worker is free again at once: the provider handed the write to memcore and returned.
    assert mm.flush_pending(timeout=2.0)
    assert down.entered.wait(SAFETY)

    # Boundaries return at once too.
    _, elapsed = timed(mm.on_session_switch, "s2", parent_session_id="s1", reset=False, reason="branch")
    assert elapsed < 0.5
    mm.sync_all("more", "text", session_id="s2")
    assert mm.flush_pending(timeout=2.0)
    _, elapsed = timed(mm.on_session_end, [])
    assert elapsed < 0.5
    answer, elapsed = timed(mm.handle_tool_call, "memcore_recall", {"query": "hello"})
    assert elapsed < provider._config["recall_timeout"] + 1.0 and '"count": 0' in answer

    _, elapsed = timed(mm.shutdown_all)
    assert elapsed < budget + 1.0
    report = provider.report
    assert report is not None and not report.ok
    assert report.pending > 0 and report.journaled == report.pending  # kept in the journal for the next start

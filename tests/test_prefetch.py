"""take_prefetch_result: a prefetch that says what it is (ready, pending, stale, none). Driven by gates and events:
nothing here sleeps, and the only waits are bounded by WAIT (reaching it fails the test)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from recording import WAIT, RecordingBackend

import memcore
from memcore import PrefetchResult, Recollection, Session


class EchoBackend(RecordingBackend):
    """Answers each recall with its own query, so a test sees which prefetch was handed out."""

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: Session | None, limit: int) -> Sequence[Recollection]:
        try:
            self._call("recall", session, query)
            return [Recollection(text=f"{query} @ {session.id if session else None}")]
        finally:
            self.recall_done.set()


@pytest.fixture
def echo() -> Iterator[EchoBackend]:
    backend = EchoBackend()
    yield backend
    for gate in backend.gates:
        gate.release()


def texts(result: PrefetchResult) -> list[str]:
    return [r.text for r in result.recollections]


def test_nothing_queued_is_none(memory: memcore.Memory) -> None:
    lc = memory.lifecycle("s1")
    assert lc.take_prefetch_result() == PrefetchResult(state="none")
    assert lc.take_prefetch_result(timeout=WAIT).state == "none"  # nothing to wait for: returns at once
    assert lc.take_prefetch() == []


def test_ready_is_handed_out_once(memory: memcore.Memory, backend: RecordingBackend) -> None:
    backend.recall_answer = [Recollection(text="espresso", score=1.0)]
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("coffee")
    got = lc.take_prefetch_result(timeout=WAIT)
    assert got.state == "ready" and texts(got) == ["espresso"]
    assert isinstance(got.recollections, tuple)
    assert lc.take_prefetch_result() == PrefetchResult(state="none")
    assert backend.calls("recall", "s1") == ["coffee"]


def test_ready_and_nothing_found_is_ready_and_empty_not_none(memory: memcore.Memory, backend: RecordingBackend) -> None:
    backend.recall_answer = []
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("coffee")
    assert lc.take_prefetch_result(timeout=WAIT) == PrefetchResult(state="ready", recollections=())
    assert lc.take_prefetch_result() == PrefetchResult(state="none")  # consumed: the search ran once
    assert backend.attempts("recall") == 1


def test_pending_is_not_consumed(memory: memcore.Memory, backend: RecordingBackend) -> None:
    backend.recall_answer = [Recollection(text="later")]
    gate = backend.hold("recall")
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("q", timeout=WAIT * 3)
    gate.wait_entered()
    assert lc.take_prefetch_result() == PrefetchResult(state="pending")
    assert lc.take_prefetch_result(timeout=0.01) == PrefetchResult(state="pending")  # waited, still held
    assert lc.take_prefetch() == []  # the list API: pending is empty too, and still not consumed
    gate.release()
    got = lc.take_prefetch_result(timeout=WAIT)
    assert got.state == "ready" and texts(got) == ["later"]
    assert backend.attempts("recall") == 1


def test_a_wait_ends_when_the_prefetch_finishes(memory: memcore.Memory, backend: RecordingBackend) -> None:
    backend.recall_answer = [Recollection(text="arrived")]
    gate = backend.hold("recall")
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("q", timeout=WAIT * 3)
    gate.wait_entered()
    box: list[PrefetchResult] = []
    taker = threading.Thread(target=lambda: box.append(lc.take_prefetch_result(timeout=WAIT * 2)))
    taker.start()
    gate.release()
    taker.join(WAIT)
    assert not taker.is_alive()
    assert box[0].state == "ready" and texts(box[0]) == ["arrived"]


@pytest.mark.parametrize("reason", ["new", "rewind"])
def test_a_finished_prefetch_before_a_switch_is_stale_once(
    memory: memcore.Memory, backend: RecordingBackend, reason: str
) -> None:
    backend.recall_answer = [Recollection(text="about s1 before the switch")]
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("q")
    assert backend.recall_done.wait(WAIT)
    lc.switch("s2" if reason == "new" else "s1", reason=reason)
    assert lc.take_prefetch_result(timeout=WAIT) == PrefetchResult(state="stale")
    assert lc.take_prefetch_result() == PrefetchResult(state="none")


def test_a_prefetch_in_flight_across_a_switch_is_stale_and_never_ready(
    memory: memcore.Memory, backend: RecordingBackend
) -> None:
    backend.recall_answer = [Recollection(text="about s1")]
    gate = backend.hold("recall")
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("q", timeout=WAIT * 3)
    gate.wait_entered()
    lc.switch("s2", reason="branch")
    gate.release()
    assert backend.recall_done.wait(WAIT)
    assert lc.take_prefetch_result(timeout=WAIT) == PrefetchResult(state="stale")
    assert lc.take_prefetch() == []


def test_a_switch_during_the_wait_gives_stale(memory: memcore.Memory, backend: RecordingBackend) -> None:
    backend.recall_answer = [Recollection(text="about s1")]
    gate = backend.hold("recall")
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("q", timeout=WAIT * 3)
    gate.wait_entered()
    box: list[PrefetchResult] = []
    taker = threading.Thread(target=lambda: box.append(lc.take_prefetch_result(timeout=WAIT * 2)))
    taker.start()
    lc.switch("s2", reason="new")  # before or while the taker waits: either way the old prefetch is not handed out
    gate.release()
    taker.join(WAIT)
    assert not taker.is_alive()
    assert box == [PrefetchResult(state="stale")]


def test_a_switch_with_nothing_queued_is_none_not_stale(memory: memcore.Memory) -> None:
    lc = memory.lifecycle("s1")
    lc.switch("s2", reason="new")
    assert lc.take_prefetch_result() == PrefetchResult(state="none")


def test_a_taken_prefetch_is_not_stale_after_a_switch(memory: memcore.Memory, backend: RecordingBackend) -> None:
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("q")
    assert lc.take_prefetch_result(timeout=WAIT).state == "ready"
    lc.switch("s2", reason="new")
    assert lc.take_prefetch_result() == PrefetchResult(state="none")


def test_a_prefetch_queued_after_the_switch_is_ready(make_memory: Any, echo: EchoBackend) -> None:
    lc = make_memory(echo).lifecycle("s1")
    lc.queue_prefetch("old")
    assert echo.recall_done.wait(WAIT)
    lc.switch("s2", reason="new")
    lc.queue_prefetch("fresh")  # replaces the stale report: what counts is the newest prefetch
    got = lc.take_prefetch_result(timeout=WAIT)
    assert got.state == "ready" and texts(got) == ["fresh @ s2"]


def test_a_newer_prefetch_replaces_one_not_taken(make_memory: Any, echo: EchoBackend) -> None:
    gate = echo.hold("recall", when=lambda query: query == "first")
    lc = make_memory(echo).lifecycle("s1")
    lc.queue_prefetch("first", timeout=WAIT * 3)
    gate.wait_entered()
    lc.queue_prefetch("second")
    got = lc.take_prefetch_result(timeout=WAIT)
    assert got.state == "ready" and texts(got) == ["second @ s1"]
    gate.release()
    assert lc.take_prefetch_result() == PrefetchResult(state="none")  # the first is never handed out


def test_ready_at_its_own_deadline_with_what_arrived(make_memory: Any) -> None:
    fast = RecordingBackend("fast", [Recollection(text="from fast")])
    slow = RecordingBackend("slow", [Recollection(text="from slow")])
    gate = slow.hold("recall")
    try:
        lc = make_memory(fast, slow).lifecycle("s1")
        lc.queue_prefetch("q", timeout=0.5)
        gate.wait_entered()
        assert fast.recall_done.wait(WAIT)
        got = lc.take_prefetch_result(timeout=WAIT)  # returns at the prefetch's own deadline: partial is final
        assert got.state == "ready" and texts(got) == ["from fast"]
    finally:
        gate.release()

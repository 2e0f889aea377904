"""A backend's ``max_concurrency`` (issue 16: a library that is not thread-safe, such as mem0 on local Qdrant): the
core never runs more than that many of its calls at once, across lane and recall workers, so the backend needs no
lock of its own."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from recording import WAIT

import memcore
from memcore import Message, Recollection, Session


class Counting:
    """Counts the calls inside it at once; the first write of session ``hold`` waits until ``release`` is set."""

    name = "counting"

    def __init__(self, max_concurrency: int | None, hold: str | None = None) -> None:
        self.max_concurrency = max_concurrency
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()
        self.recalled = threading.Event()
        self._lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.writes = 0
        self.both = threading.Barrier(2, timeout=WAIT)  # without a limit, two writes meet here

    def _enter(self) -> None:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)

    def _leave(self) -> None:
        with self._lock:
            self.inside -= 1

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        self._enter()
        try:
            if session.id == self.hold:
                self.entered.set()
                assert self.release.wait(WAIT)
            with self._lock:
                self.writes += 1
        finally:
            self._leave()

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: Session | None, limit: int) -> Sequence[Recollection]:
        self._enter()
        try:
            self.recalled.set()
            return [Recollection(text="found")]
        finally:
            self._leave()


def test_a_limit_of_one_holds_writes_and_recalls_back_while_a_call_runs(make_memory) -> None:
    backend = Counting(max_concurrency=1, hold="s0")
    memory = make_memory(backend, journal=False, workers=4, recall_workers=2)
    memory.lifecycle("s0").sync_turn("held", "a")
    assert backend.entered.wait(WAIT)
    for k in range(1, 20):  # other sessions' lanes: without the limit, free workers would run them now
        memory.lifecycle(f"s{k}").sync_turn(f"turn {k}", "a")
    found = memory.recall("anything", timeout=0.2)  # the recall waits for the held write: it runs out of time
    assert found == [] and not backend.recalled.is_set()
    assert backend.writes == 0 and backend.inside == 1
    backend.release.set()
    report = memory.flush(timeout=WAIT)
    assert report.delivered == 20 and report.pending == 0
    assert backend.recalled.wait(WAIT)  # the recall that ran out of time still ran, after the write
    assert [r.text for r in memory.recall("anything", timeout=WAIT)] == ["found"]
    assert backend.most == 1


def test_without_a_limit_calls_run_side_by_side(make_memory) -> None:
    """The check above can fail: without ``max_concurrency`` two sessions' writes are inside the backend at once."""

    class Meeting(Counting):
        @memcore.hookimpl
        def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
            self._enter()
            try:
                self.both.wait()  # two writes at once, or a BrokenBarrierError after WAIT
            finally:
                self._leave()

    backend = Meeting(max_concurrency=None)
    memory = make_memory(backend, journal=False, workers=4)
    memory.lifecycle("a").sync_turn("one", "x")
    memory.lifecycle("b").sync_turn("two", "x")
    report = memory.flush(timeout=WAIT)
    assert report.delivered == 2 and report.failed == 0
    assert backend.most == 2


@pytest.mark.parametrize("value", [0, -1, 1.5, "1", True])
def test_a_bad_max_concurrency_is_refused(value: object) -> None:
    backend = Counting(max_concurrency=None)
    backend.max_concurrency = value  # type: ignore[assignment]
    with pytest.raises(memcore.PluginError, match="max_concurrency must be a positive integer or None"):
        memcore.Memory(backends=[backend], plugins=[], journal=False, strict=True)

"""Searches per turn, counted where they reach the backend, through hermes-agent's own MemoryManager.

A turn's recall is the prefetch queued after the previous turn (hermes' ``queue_prefetch_all``), handed out whatever it
found, nothing included; a live search only when no prefetch was queued for the current session. Turn k's searches
are the ones that reach the backend between the end of turn k-1's ``prefetch`` and the end of turn k's: the prefetch
queued after turn k-1, plus any live search turn k made.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import memcore
import pytest
from test_conversation import FLUSH, Agent

from memcore_hermes import MemcoreMemoryProvider

SAFETY = 30.0  # a held recall is released by the test; this only keeps a broken test from hanging


class Counting:
    """Counts every recall call that reaches it; finds something or nothing; can hold recalls until released."""

    name = "counting"

    def __init__(self, finds: bool) -> None:
        self.finds = finds
        self.recalls: list[tuple[str, str | None]] = []
        self.hold = threading.Event()  # while set, recalls wait for ``release``
        self.release = threading.Event()
        self.held = threading.Event()  # a recall is waiting at the hold
        self._lock = threading.Lock()

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Any) -> None:
        pass

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: memcore.Session | None, limit: int) -> list[memcore.Recollection]:
        with self._lock:
            self.recalls.append((query, session.id if session else None))
        if self.hold.is_set():
            self.held.set()
            self.release.wait(SAFETY)
        return [memcore.Recollection(text=f"found for {query}")] if self.finds else []


class Counted:
    """The provider, the backend and hermes' driver, with the backend's recall count taken as each prefetch returns."""

    def __init__(self, finds: bool, **config: Any) -> None:
        self.backend = Counting(finds)
        self.provider = MemcoreMemoryProvider(
            {"prefetch_timeout": 5.0, **config}, memory=memcore.Memory(backends=[self.backend])
        )
        self.marks: list[int] = []
        original = self.provider.prefetch

        @functools.wraps(original)
        def prefetch(query: str, *, session_id: str = "") -> str:
            try:
                return original(query, session_id=session_id)
            finally:
                self.marks.append(len(self.backend.recalls))

        self.provider.prefetch = prefetch  # type: ignore[method-assign]
        self.agent = Agent(self.provider, "s1")

    def per_turn(self) -> list[int]:
        return [b - a for a, b in zip([0, *self.marks[:-1]], self.marks, strict=True)]


@pytest.mark.parametrize("finds", [False, True], ids=["finds-nothing", "finds-something"])
def test_one_search_per_turn(finds: bool) -> None:
    run = Counted(finds)
    turns = 12
    contexts = []
    for n in range(turns):
        contexts.append(run.agent.turn(f"question {n}", f"answer {n}"))
        run.agent.settle()  # the user reads the answer: hermes' worker has queued the next turn's prefetch
    run.agent.exit()
    assert run.per_turn() == [1] * turns
    # The first turn searched live; every later one got the prefetch queued after the turn before it.
    assert run.backend.recalls[:turns] == [("question 0", "s1")] + [(f"question {n}", "s1") for n in range(turns - 1)]
    # At most one more: the prefetch queued after the last turn, which no turn took.
    assert len(run.backend.recalls) <= turns + 1
    if finds:
        assert all(f"found for question {n - 1}" in contexts[n] for n in range(1, turns))
    else:
        assert contexts == [""] * turns


def test_one_search_per_turn_while_hermes_worker_is_behind() -> None:
    """hermes runs queue_prefetch on its worker; when it lags, a turn finds no prefetch and searches live. The prefetch
    queued for the turn before it, arriving later, is then skipped: the next turn gets the later turn's."""
    run = Counted(False)
    run.agent.turn("one", "1")
    run.agent.settle()
    gate = threading.Event()
    run.agent.mm._submit_background(lambda: gate.wait(FLUSH))  # hold hermes' worker
    run.agent.turn("two", "2")  # takes the prefetch of "one"; its own queue_prefetch waits on the worker
    run.agent.turn("three", "3")  # no prefetch queued yet: one live search
    gate.set()
    run.agent.settle()  # the worker catches up: "two"'s prefetch is skipped, "three"'s is started
    run.agent.turn("four", "4")
    run.agent.settle()
    run.agent.exit()
    assert run.per_turn() == [1, 1, 1, 1]
    assert [q for q, _ in run.backend.recalls[:4]] == ["one", "one", "three", "three"]


def test_a_prefetch_still_running_at_the_budget_is_the_turns_one_search() -> None:
    run = Counted(True, prefetch_timeout=0.3)
    run.agent.turn("one", "1")
    run.backend.hold.set()  # the prefetch of "one" hangs at the backend
    run.agent.settle()
    assert run.backend.held.wait(SAFETY)
    context = run.agent.turn("two", "2")  # waits its 0.3 s budget, injects nothing, asks no second search
    run.backend.hold.clear()
    run.backend.release.set()
    run.agent.settle()
    run.agent.turn("three", "3")
    run.agent.settle()
    run.agent.exit()
    assert context == ""
    assert run.per_turn() == [1, 1, 1]


@pytest.mark.parametrize("command", ["new", "branch", "undo"])
def test_a_switch_costs_only_the_prefetch_it_made_stale(command: str) -> None:
    """A prefetch queued before a switch is never handed out after it (memcore's G6), so the first turn after the
    switch searches live: that turn reaches the backend twice, every other turn once."""
    run = Counted(False)
    for n in range(3):
        run.agent.turn(f"before {n}", "ok")
        run.agent.settle()
    if command == "new":
        run.agent.new("s2")
    elif command == "branch":
        run.agent.branch("s2")
    else:
        run.agent.undo()
    run.agent.settle()
    for n in range(3):
        run.agent.turn(f"after {n}", "ok")
        run.agent.settle()
    run.agent.exit()
    assert run.per_turn() == [1, 1, 1, 2, 1, 1]
    stale, live = run.backend.recalls[3:5]
    assert stale == ("before 2", "s1") and live[0] == "after 0"

"""Commit policies for sessions that never end (issue 14, item 3): ``commit_after_turns`` and ``commit_after_idle``.
The idle commit reads a controllable clock; no thread per session."""

from __future__ import annotations

import threading

import pytest
from recording import WAIT
from test_reliability import drain, eventually


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def test_without_a_policy_a_session_is_committed_only_at_its_boundaries(make_memory, backend):
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    for n in range(50):
        lc.sync_turn(f"u{n}", "a")
    drain(memory)
    assert backend.commits("s1") == 0


def test_commit_after_turns_commits_every_n_writes(make_memory, backend):
    memory = make_memory(backend, commit_after_turns=3)
    lc = memory.lifecycle("s1")
    for n in range(7):
        lc.sync_turn(f"u{n}", "a")
    drain(memory)
    assert backend.commits("s1") == 2  # after the 3rd and the 6th
    order = [(h, p[0].content if h == "write" else None) for h, sid, p in backend.log if h in ("write", "commit")]
    assert [h for h, _ in order] == ["write"] * 3 + ["commit"] + ["write"] * 3 + ["commit", "write"]
    lc.end()  # the 7th is committed at the boundary, once
    drain(memory)
    assert backend.commits("s1") == 3 and backend.violations == []


def test_commit_after_turns_counts_from_the_last_commit_asked_for(make_memory, backend):
    memory = make_memory(backend, commit_after_turns=3)
    lc = memory.lifecycle("s1")
    lc.sync_turn("u0", "a")
    lc.sync_turn("u1", "a")
    lc.end()  # a boundary commit: the count starts again
    lc.sync_turn("u2", "a")
    lc.sync_turn("u3", "a")
    drain(memory)
    assert backend.commits("s1") == 1


def test_commit_after_idle_commits_a_session_that_has_had_no_write_for_that_long(make_memory, backend):
    clock = Clock()
    memory = make_memory(backend, commit_after_idle=60.0, clock=clock)
    quiet, busy = memory.lifecycle("quiet"), memory.lifecycle("busy")
    quiet.sync_turn("q", "a")
    busy.sync_turn("b0", "a")
    drain(memory)
    clock.advance(30)
    busy.sync_turn("b1", "a")  # busy keeps writing: its idle time starts again
    clock.advance(31)  # quiet: 61 s without a write; busy: 31 s
    memory._scheduler.wake()
    eventually(lambda: backend.commits("quiet") == 1)
    drain(memory)
    assert backend.commits("busy") == 0
    clock.advance(30)  # busy: 61 s
    memory._scheduler.wake()
    eventually(lambda: backend.commits("busy") == 1)
    drain(memory)
    clock.advance(600)  # nothing new written: no second commit of either
    memory._scheduler.wake()
    drain(memory)
    assert backend.commits("quiet") == 1 and backend.commits("busy") == 1


def test_the_idle_commit_uses_no_thread_per_session(make_memory, backend):
    clock = Clock()
    memory = make_memory(backend, commit_after_idle=5.0, clock=clock, stall_after=None)
    before = threading.active_count()
    for n in range(200):
        memory.lifecycle(f"s{n}").sync_turn("u", "a")
    drain(memory)
    assert threading.active_count() == before
    clock.advance(6)
    memory._scheduler.wake()
    eventually(lambda: backend.commits() == 200, timeout=WAIT)
    assert threading.active_count() == before


@pytest.mark.parametrize(
    "kwargs",
    [{"commit_after_turns": 0}, {"commit_after_turns": 1.5}, {"commit_after_idle": 0}, {"commit_after_idle": "1"}],
)
def test_bad_policies_are_refused(make_memory, backend, kwargs):
    with pytest.raises(ValueError):
        make_memory(backend, **kwargs)

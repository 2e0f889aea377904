"""Gauges of what a Memory holds right now, through ``memcore_otel.observe`` and the SDK's in-memory reader."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import memcore
from memcore import Message, Session

import memcore_otel


class Held:
    """Writes wait until ``release`` is set; ``entered`` says the first one arrived."""

    name = "held"

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        self.entered.set()
        assert self.release.wait(10)

    @memcore.hookimpl
    def memcore_commit(self, session: Session) -> None:
        pass


def values(otel, name: str) -> dict[tuple[str, str], float]:
    return {(a["memcore.memory"], a["memcore.backend"]): p.value for a, p in otel.points(name)}


def test_observe_reports_pending_in_flight_owed_and_accepted(otel, make_memory):
    backend = Held()
    memory = make_memory(backend, plugins=[], journal=False, workers=1)
    memcore_otel.observe(memory, name="agent", meter_provider=otel.meter_provider)
    for k in range(3):
        memory.lifecycle(f"s{k}").sync_turn(f"turn {k}", "ok")
    assert backend.entered.wait(10)
    assert values(otel, "memcore.pending") == {("agent", "held"): 3}
    assert values(otel, "memcore.in_flight") == {("agent", "held"): 1}
    assert values(otel, "memcore.stalled") == {("agent", "held"): 0}
    assert values(otel, "memcore.spilled") == {("agent", "held"): 0}
    assert values(otel, "memcore.owing_commit") == {("agent", "held"): 3}
    assert values(otel, "memcore.journaled") == {("agent", "held"): 0}  # journal=False
    assert values(otel, "memcore.accepted") == {("agent", "held"): 3}
    (age,) = values(otel, "memcore.pending.oldest_age").values()
    assert age >= 0
    backend.release.set()
    assert memory.flush(timeout=10).pending == 0
    assert values(otel, "memcore.pending") == {("agent", "held"): 0}
    assert values(otel, "memcore.pending.oldest_age") == {}  # nothing pending: no point
    memory.close(timeout=10)
    assert values(otel, "memcore.pending") == {}  # a closed Memory is no longer reported


def test_two_memories_are_reported_apart(otel, make_memory, tmp_path):
    a = make_memory(memcore.SQLiteBackend(path=tmp_path / "a.sqlite3"), plugins=[], journal=False)
    b = make_memory(memcore.SQLiteBackend(path=tmp_path / "b.sqlite3"), plugins=[], journal=False)
    memcore_otel.observe(a, name="a", meter_provider=otel.meter_provider)
    memcore_otel.observe(b, name="b", meter_provider=otel.meter_provider)
    a.lifecycle("x").sync_turn("one", "ok")
    a.lifecycle("x").end()
    assert a.flush(timeout=10).ok
    assert values(otel, "memcore.accepted") == {("a", "sqlite"): 2, ("b", "sqlite"): 0}

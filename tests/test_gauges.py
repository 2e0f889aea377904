"""``Memory.gauges()``: each backend's work right now, cheaply, for a metrics reader (issue 20)."""

from __future__ import annotations

from recording import WAIT, RecordingBackend

import memcore


class Clock:
    """The monotonic clock the gauges read, moved by hand (the Ops' accept times come from it too)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_gauges_count_what_is_pending_in_flight_and_owed(make_memory, monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(memcore._scheduler.time, "monotonic", clock)
    monkeypatch.setattr(memcore._lanes.time, "monotonic", clock)
    backend = RecordingBackend()
    gate = backend.hold("write", "a")
    memory = make_memory(backend, journal=False, workers=2)
    assert memory.gauges() == {"rec": memcore.Gauge()}
    memory.lifecycle("a").sync_turn("one", "x")  # accepted at 1000.0, held in flight
    gate.wait_entered()
    clock.now = 1_002.5
    memory.lifecycle("a").sync_turn("two", "x")  # queued behind it
    clock.now = 1_004.0
    g = memory.gauges()["rec"]
    assert (g.accepted, g.pending, g.spilled, g.in_flight, g.stalled, g.journaled) == (2, 2, 0, 1, 0, 0)
    assert g.owing_commit == 1 and g.oldest_pending_s == 4.0
    gate.release()
    assert memory.flush(timeout=WAIT).pending == 0
    g = memory.gauges()["rec"]
    assert (g.accepted, g.pending, g.in_flight, g.owing_commit, g.oldest_pending_s) == (2, 0, 0, 1, None)
    memory.lifecycle("a").end()
    assert memory.flush(timeout=WAIT).committed == 1
    g = memory.gauges()["rec"]
    assert (g.accepted, g.pending, g.owing_commit) == (3, 0, 0)


def test_gauges_count_spilled_operations(make_memory, tmp_path) -> None:
    backend = RecordingBackend()
    gate = backend.hold("write")
    memory = make_memory(backend, journal=tmp_path / "journal.sqlite3", max_pending=4, workers=1)
    for k in range(10):
        memory.lifecycle("s").sync_turn(f"t{k}", "x")
    gate.wait_entered()
    g = memory.gauges()["rec"]
    assert g.accepted == 10 and g.pending + g.spilled == 10 and g.spilled >= 6 and g.in_flight == 1
    assert g.journaled == 10
    gate.release()
    assert memory.flush(timeout=WAIT).pending == 0
    g = memory.gauges()["rec"]
    assert (g.pending, g.spilled, g.in_flight, g.journaled) == (0, 0, 0, 0)

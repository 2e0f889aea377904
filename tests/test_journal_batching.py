"""The journal's acknowledgements and commit debts wait for company (``ACK_BATCH`` of them, ``ACK_DELAY`` seconds,
the next insert, or close) rather than costing a transaction each; what waits is never lost: close writes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from recording import RecordingBackend
from test_reliability import drain, eventually

import memcore
from memcore import _journal


def rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM ops").fetchone()[0])
    finally:
        db.close()


def delivered_after_durable(make_memory, turns: int) -> tuple[RecordingBackend, memcore.Memory]:
    """``turns`` turns in sessions s0, s1... on disk before they are delivered, so that their acknowledgements have
    rows to delete."""
    backend = RecordingBackend()
    gate = backend.hold("write")
    memory = make_memory(backend)
    for k in range(turns):
        memory.lifecycle(f"s{k}").sync_turn("u", "a")
    assert memory._scheduler._journal.wait_durable(10.0)
    gate.release()
    drain(memory)
    return backend, memory


def test_acknowledgements_wait_for_company_and_close_writes_them(make_memory, memcore_home, monkeypatch):
    monkeypatch.setattr(_journal, "ACK_DELAY", 3600.0)
    monkeypatch.setattr(_journal, "ACK_BATCH", 10_000)
    journal = memcore_home / "journal.sqlite3"
    backend, memory = delivered_after_durable(make_memory, 3)
    assert [backend.texts(f"s{k}") for k in range(3)] == [["u", "a"]] * 3
    assert rows(journal) == 3  # delivered; their deletes wait (a crash now replays them, with their keys)
    memory.close(timeout=10.0)
    assert rows(journal) == 0


def test_a_full_batch_of_acknowledgements_is_written_at_once(make_memory, memcore_home, monkeypatch):
    monkeypatch.setattr(_journal, "ACK_DELAY", 3600.0)
    monkeypatch.setattr(_journal, "ACK_BATCH", 4)
    delivered_after_durable(make_memory, 4)
    eventually(lambda: rows(memcore_home / "journal.sqlite3") == 0)


@pytest.mark.parametrize("delay", [0.0, 0.005])
def test_acknowledgements_are_written_within_the_delay_without_more_work(make_memory, memcore_home, monkeypatch, delay):
    monkeypatch.setattr(_journal, "ACK_DELAY", delay)
    backend = RecordingBackend()
    gate = backend.hold("write")
    memory = make_memory(backend)
    memory.lifecycle("s").sync_turn("u", "a")
    assert memory._scheduler._journal.wait_durable(10.0)
    assert rows(memcore_home / "journal.sqlite3") == 1
    gate.release()
    drain(memory)
    eventually(lambda: rows(memcore_home / "journal.sqlite3") == 0)

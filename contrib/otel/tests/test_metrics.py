"""Metrics: operations by outcome (from memcore's events), commit and recall latencies by backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

import memcore
from memcore import Message, Session, SQLiteBackend


class Archive(SQLiteBackend):
    """A second embedded store under another name."""

    name = "archive"


def test_commit_and_recall_latency_by_backend(otel, make_memory, tmp_path):
    memory = make_memory(
        SQLiteBackend(path=tmp_path / "main.sqlite3"),
        Archive(path=tmp_path / "archive.sqlite3"),
        plugins=[otel.observer()],
    )
    lc = memory.lifecycle("s1")
    lc.sync_turn("espresso at seven", "noted")
    lc.end()
    assert memory.flush(timeout=10).ok
    assert lc.recall("espresso", timeout=5)
    lc.sync_turn("tea at five", "noted")
    memory.close(timeout=10)

    commits = {a["memcore.backend"]: p for a, p in otel.points("memcore.commit.duration")}
    assert set(commits) == {"sqlite", "archive"}
    assert all(p.count == 2 and p.sum > 0 for p in commits.values())  # end() and close()
    recalls = {a["memcore.backend"]: p for a, p in otel.points("memcore.recall.duration")}
    assert set(recalls) == {"sqlite", "archive"} and all(p.count == 1 for p in recalls.values())
    for attributes, point in otel.points("memcore.commit.duration"):
        assert attributes["memcore.outcome"] == "committed"
        assert list(point.explicit_bounds)[:3] == [0.0005, 0.001, 0.0025]  # seconds, not the SDK's ms defaults

    counts = otel.counts()
    for backend in ("sqlite", "archive"):
        assert counts[(backend, "write", "delivered")] == 2
        assert counts[(backend, "commit", "committed")] == 2


class Hung(SQLiteBackend):
    """Writes wait until released."""

    def __init__(self, path: Path) -> None:
        super().__init__(path=path)
        self.release = threading.Event()

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message], key: str, attempt: int) -> None:
        self.release.wait(10)
        super().memcore_write(session=session, messages=messages, key=key, attempt=attempt)


def test_dropped_at_close_without_a_journal(otel, make_memory, tmp_path):
    backend = Hung(tmp_path / "s.sqlite3")
    memory = make_memory(backend, plugins=[otel.observer()], journal=False)
    lc = memory.lifecycle("s1")
    for n in range(3):
        lc.sync_turn(f"t{n}", "a")
    report = memory.close(timeout=0.2)
    backend.release.set()
    assert report.pending >= 2
    counts = otel.counts()
    assert counts[("sqlite", "write", "dropped")] >= 2


CHILD = """
import os, sys, time
import memcore
from memcore import SQLiteBackend

class Slow(SQLiteBackend):
    @memcore.hookimpl
    def memcore_write(self, session, messages, key, attempt):
        time.sleep(30)

memory = memcore.Memory(backends=[Slow(path=sys.argv[1])], plugins=[], durability="sync")
lc = memory.lifecycle("s1")
for n in range(3):
    lc.sync_turn(f"turn {n}", "a")
os._exit(0)  # dies with its writes in the journal
"""


def test_replayed_after_a_crash(otel, make_memory, tmp_path, memcore_home):
    store = tmp_path / "store.sqlite3"
    subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(store)], check=True, timeout=60)
    memory = make_memory(SQLiteBackend(path=store), plugins=[otel.observer()])
    report = memory.close(timeout=10)
    assert report.replayed == 3 and report.delivered == 3
    counts = otel.counts()
    assert counts[("sqlite", "write", "replayed")] == 3
    assert counts[("sqlite", "write", "delivered")] == 3
    assert counts[("sqlite", "commit", "committed")] == 1
    writes = otel.spans("write")
    assert len(writes) == 3 and all(s.attributes and s.attributes["memcore.attempt"] == 2 for s in writes)

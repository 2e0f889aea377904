"""Replay benchmark: a start that finds N leftover operations replays them in bounded memory, in order (issue 12,
item 5; G10 and G8's spill).

For each N (10,000 and 100,000; 2,000 and 20,000 with ``--quick``), with a fresh ``MEMCORE_HOME``:

1. a child process accepts N writes spread over 500 sessions (interleaved, as concurrent conversations write) and
   one commit per session, against a backend that is down, with ``max_pending=2,000``: most of the writes are
   spilled to the journal as they are accepted. Once the journal has them all on disk it says so and is SIGKILLed;
2. a second child process (so its peak RSS is its own) builds a Memory on that journal with a fast in-memory
   backend and the same ``max_pending``, and times construction (the claim: one renumbering update per dead owner) and
   ``flush()`` until every operation reached the backend. It samples the operations held in memory at every call,
   and reports its peak RSS (``ru_maxrss``) minus its RSS before the Memory was built, and checks that each session's
   writes arrived once, in the order they were accepted, and that each session was committed once, after them.
   Step 2 runs three times, each on a fresh copy of the journal step 1 left: the row is the median replay and the
   median RSS growth (every replay must be correct; the JSON's ``replay_totals`` and ``replay_rss_growths_mib`` keep
   all three). This shared machine's speed drifts by a third within minutes, and one replay alone measured that
   drift as much as the code.

Targets: 100,000 operations replayed within 5 s (full runs), never more than ``max_pending`` in memory, every session
in order and committed once, and bounded memory: the RSS growth of the 100,000 replay at most 1.5 times the
10,000 one's (information in a quick run).

Usage::

    python benchmarks/replay.py [--quick] [--json PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import BenchResults, Target, fmt, print_table, print_targets, progress_printer, write_json
from reliability import RECOVERY_BACKEND, DownBackend, journal_rows, session_name

import memcore

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "replay.json"
SESSIONS = 500
MAX_PENDING = 2_000
CHILD_TIMEOUT = 300.0
#: Targets.
REPLAY_100K_S = 5.0
#: Each sized row replays copies of one writer's journal this many times and reports the median (this machine's speed
#: drifts by a third within minutes; the JSON keeps every replay's time).
REPLAYS = 3
RSS_GROWTH_RATIO = 1.5


def writer(home: str, operations: int) -> int:
    """Child 1: accept ``operations`` writes and a commit per session against a down backend, wait until the journal
    holds them on disk, say so, and wait to be killed."""
    os.environ["MEMCORE_HOME"] = home
    backend = DownBackend()
    memory = memcore.Memory(
        backends=[backend],
        plugins=[],
        workers=4,
        retry=memcore.RetryPolicy(initial=30.0, max_delay=60.0, deadline=3600.0),
        max_pending=MAX_PENDING,
    )
    lcs = [memory.lifecycle(session_name(i)) for i in range(SESSIONS)]
    start = time.perf_counter()
    for n in range(operations):
        lcs[n % SESSIONS].sync_turn(f"{session_name(n % SESSIONS)} turn {n // SESSIONS}", "ok")
    for lc in lcs:
        lc.end()
    accepted = time.perf_counter() - start
    journal = memory._journal
    if journal is None or not journal.wait_durable(timeout=CHILD_TIMEOUT):
        print(json.dumps({"ready": False, "error": "the journal did not become durable"}), flush=True)
        return 1
    print(json.dumps({"ready": True, "accept_s": accepted}), flush=True)
    time.sleep(CHILD_TIMEOUT)  # killed long before this
    return 2


class Sampling:
    """A fast in-memory backend that keeps O(sessions) state, so the replayer's RSS is memcore's: per session the
    next turn it expects (a write out of order, twice or missing is counted) and the commits it saw, each with how
    many writes had arrived before it; and, at every write, how many operations its Memory holds in memory."""

    name = RECOVERY_BACKEND

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.next_turn: dict[str, int] = {}
        self.out_of_order = 0
        self.commits: dict[str, list[int]] = {}
        self.bad_payloads = 0
        self.memory: memcore.Memory | None = None
        self.most_in_memory = 0

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        head, _, number = messages[0].content.rpartition(" turn ")
        held = self.memory._scheduler._bound.total if self.memory is not None else 0
        with self._lock:
            self.most_in_memory = max(self.most_in_memory, held)
            if head != session.id or not number.isdigit():
                self.bad_payloads += 1
                return
            expected = self.next_turn.get(session.id, 0)
            if int(number) != expected:
                self.out_of_order += 1
            self.next_turn[session.id] = int(number) + 1

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        with self._lock:
            self.commits.setdefault(session.id, []).append(self.next_turn.get(session.id, 0))


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def replayer(home: str, operations: int, max_pending: int) -> int:
    """Child 2: replay what child 1 left, time it, check it, and print one JSON line."""
    os.environ["MEMCORE_HOME"] = home
    backend = Sampling()
    before = rss_kib()
    start = time.perf_counter()
    memory = memcore.Memory(backends=[backend], plugins=[], workers=4, max_pending=max_pending)
    backend.memory = memory
    built = time.perf_counter()
    report = memory.flush(timeout=CHILD_TIMEOUT)
    flushed = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    closed = memory.close(timeout=60.0)
    turns = operations // SESSIONS
    # every write in order, exactly once: no write out of sequence, and each session reached its last turn
    fine = backend.out_of_order == 0
    in_order = sum(fine and backend.next_turn.get(session_name(i)) == turns for i in range(SESSIONS))
    once = sum(backend.commits.get(session_name(i)) == [turns] for i in range(SESSIONS))
    line = {
        "construct_s": built - start,
        "flush_s": flushed - built,
        "replayed": report.replayed,
        "delivered": report.delivered,
        "committed": closed.committed,
        "failed": closed.failed,
        "timed_out": report.timed_out,
        "most_in_memory": backend.most_in_memory,
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "sessions_in_order": in_order,
        "sessions_committed_once": once,
        "bad_payloads": backend.bad_payloads,
    }
    print(json.dumps(line), flush=True)
    return 0


def child(mode: str, home: Path, operations: int, kill_when_ready: bool, max_pending: int = 0) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), f"--{mode}", str(home), str(operations)]
    if max_pending:
        cmd.append(str(max_pending))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(CHILD_TIMEOUT, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        watchdog.cancel()
    if kill_when_ready and proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    code = proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    try:
        info: dict[str, Any] = json.loads(line)
    except json.JSONDecodeError:
        raise RuntimeError(f"the {mode} child printed {line!r} (exit {code})") from None
    if kill_when_ready and not info.get("ready"):
        raise RuntimeError(f"the {mode} child failed (exit {code}): {info.get('error')}")
    return info


@dataclass
class ReplayRow:
    row: str
    operations: int
    journal_rows: int
    journal_mib: float
    writer_accept_seconds: float
    construct_seconds: float
    flush_seconds: float
    total_seconds: float
    ops_per_s: float
    replayed: int
    delivered: int
    committed: int
    failed: int
    most_in_memory: int
    max_pending: int
    rss_growth_mib: float
    rss_peak_mib: float
    sessions_in_order: int
    sessions_committed_once: int
    correct: bool
    replay_totals: list[float] = field(default_factory=list)  #: construct + flush of each replay (the row: the median)
    replay_rss_growths_mib: list[float] = field(default_factory=list)  #: each replay's (``rss_growth_mib``: the median)


def replay_correct(got: dict[str, Any], operations: int, max_pending: int) -> bool:
    """Whether one replay delivered every write once and in order, committed each session once after its writes, and
    never held more than ``max_pending`` in memory."""
    writes = operations - operations % SESSIONS
    return bool(
        got["replayed"] == writes + SESSIONS
        and got["delivered"] == writes
        and got["committed"] == SESSIONS
        and got["failed"] == 0
        and not got["timed_out"]
        and got["sessions_in_order"] == SESSIONS
        and got["sessions_committed_once"] == SESSIONS
        and got["bad_payloads"] == 0
        and 0 < got["most_in_memory"] <= max_pending
    )


def run(operations: int, max_pending: int = MAX_PENDING, replays: int = 1) -> ReplayRow:
    """One writer, then ``replays`` replays, each of a copy of the journal it left; the row is the median replay (by
    total time) with the median RSS growth, and ``replay_totals`` and ``replay_rss_growths_mib`` list them all."""
    with tempfile.TemporaryDirectory(prefix="memcore-replay-") as tmp:
        home = Path(tmp) / "writer"
        home.mkdir()
        wrote = child("writer", home, operations, kill_when_ready=True)
        path = home / "journal.sqlite3"
        rows = journal_rows(path)
        size = sum(p.stat().st_size for p in home.glob("journal.sqlite3*"))
        runs = []
        for n in range(replays):
            copy = Path(tmp) / f"replay-{n}"
            shutil.copytree(home, copy)
            runs.append(child("replayer", copy, operations, kill_when_ready=False, max_pending=max_pending))
            shutil.rmtree(copy)
    totals = [r["construct_s"] + r["flush_s"] for r in runs]
    growths = [(r["rss_peak_kib"] - r["rss_before_kib"]) / 1024 for r in runs]
    got = sorted(runs, key=lambda r: r["construct_s"] + r["flush_s"])[len(runs) // 2]
    total = got["construct_s"] + got["flush_s"]
    writes = operations - operations % SESSIONS
    return ReplayRow(
        row=f"{operations:,} leftover writes" + ("" if max_pending == MAX_PENDING else ", all in memory"),
        operations=writes + SESSIONS,
        journal_rows=rows,
        journal_mib=size / 2**20,
        writer_accept_seconds=wrote["accept_s"],
        construct_seconds=got["construct_s"],
        flush_seconds=got["flush_s"],
        total_seconds=total,
        ops_per_s=(writes + SESSIONS) / total if total > 0 else 0.0,
        replayed=got["replayed"],
        delivered=got["delivered"],
        committed=got["committed"],
        failed=got["failed"],
        most_in_memory=got["most_in_memory"],
        max_pending=max_pending,
        rss_growth_mib=statistics.median(growths),
        replay_rss_growths_mib=growths,
        rss_peak_mib=got["rss_peak_kib"] / 1024,
        sessions_in_order=got["sessions_in_order"],
        sessions_committed_once=got["sessions_committed_once"],
        correct=all(replay_correct(r, operations, max_pending) for r in runs),
        replay_totals=totals,
    )


@dataclass
class ReplayResults(BenchResults):
    benchmark: str = "replay"
    rows: list[ReplayRow] = field(default_factory=list)
    rss_growth_ratio: float = 0.0
    unbounded: ReplayRow | None = None  # the large replay again with max_pending above it: what the bound saves
    targets: list[Target] = field(default_factory=list)
    all_passed: bool = False


def collect_targets(res: ReplayResults) -> list[Target]:
    big = res.rows[-1]
    # correct: every session in order and committed once, never more than max_pending in memory
    targets = [Target(r.row, "correct", float(r.correct), "", ">=", 1.0, r.correct) for r in res.rows]
    if not res.quick:
        passed = big.total_seconds <= REPLAY_100K_S
        targets.append(Target(big.row, "total_seconds", big.total_seconds, "s", "<=", REPLAY_100K_S, passed))
        ratio = res.rss_growth_ratio
        growth = ratio <= RSS_GROWTH_RATIO
        targets.append(Target("RSS growth, large / small", "ratio", ratio, "x", "<=", RSS_GROWTH_RATIO, growth))
    return targets


def report_text(res: ReplayResults) -> None:
    print(f"replay of leftover operations: {SESSIONS} sessions, max_pending={MAX_PENDING:,}, 4 workers")
    print_table(
        [
            "row",
            "journal rows",
            "MiB",
            "construct s",
            "flush s",
            "total s",
            "replays s",
            "ops/s",
            "in memory",
            "RSS +MiB",
            "ok",
        ],
        [
            [
                r.row,
                f"{r.journal_rows:,}",
                fmt(r.journal_mib),
                fmt(r.construct_seconds, ".3f"),
                fmt(r.flush_seconds, ".2f"),
                fmt(r.total_seconds, ".2f"),
                " / ".join(f"{t:.2f}" for t in r.replay_totals),
                f"{r.ops_per_s:,.0f}",
                f"{r.most_in_memory:,}",
                fmt(r.rss_growth_mib),
                "yes" if r.correct else "NO",
            ]
            for r in [*res.rows, *([res.unbounded] if res.unbounded else [])]
        ],
    )
    print(f"RSS growth, large / small: {res.rss_growth_ratio:.2f}x")
    print_targets(res.targets)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 operations; targets are information")
    parser.add_argument("--json", type=Path, default=None, help=f"where the JSON goes (default {DEFAULT_JSON})")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target failed")
    parser.add_argument("--writer", nargs=2, metavar=("HOME", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--replayer", nargs=3, metavar=("HOME", "N", "MAX_PENDING"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.writer:
        return writer(args.writer[0], int(args.writer[1]))
    if args.replayer:
        return replayer(args.replayer[0], int(args.replayer[1]), int(args.replayer[2]))
    begin = time.perf_counter()
    progress = progress_printer(begin)
    sizes = (2_000, 20_000) if args.quick else (10_000, 100_000)
    res = ReplayResults(quick=args.quick, config={"sessions": SESSIONS, "max_pending": MAX_PENDING, "sizes": sizes})
    for n in sizes:
        progress(f"replay: a child accepts {n:,} writes and {SESSIONS} commits against a down backend, SIGKILL")
        res.rows.append(run(n, replays=REPLAYS))
        times = ", ".join(f"{t:.2f}" for t in res.rows[-1].replay_totals)
        progress(f"replay: {n:,} replayed {REPLAYS} times from copies of that journal: {times} s")
    progress(f"replay: {sizes[-1]:,} again, all in memory at once (max_pending={2 * sizes[-1]:,}), as information")
    res.unbounded = run(sizes[-1], max_pending=2 * sizes[-1])
    small, big = res.rows
    res.rss_growth_ratio = big.rss_growth_mib / small.rss_growth_mib if small.rss_growth_mib > 0 else 0.0
    res.targets = collect_targets(res)
    res.all_passed = all(t.passed for t in res.targets)
    res.total_seconds = time.perf_counter() - begin
    report_text(res)
    write_json(res, args.json or DEFAULT_JSON)
    return 1 if args.check and not res.all_passed else 0


if __name__ == "__main__":
    sys.exit(main())

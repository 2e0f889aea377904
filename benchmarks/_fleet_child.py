"""One process of ``fleet.py``'s throughput part: a Memory with its own workers, on a PostgreSQL journal that other
processes share or on its own SQLite journal file, driving its own sessions against a backend whose every write and
commit takes ``--latency`` seconds.

Protocol (stdin and stdout, one line each way): the process builds its Memory and its sessions, prints ``ready`` and
waits for a line ``go`` on stdin (``fleet.py`` sends it to every process at one moment). Then it accepts ``--turns``
turns of each session, interleaved, and a commit of each, flushes, and prints one line of JSON: its counts, the
``time.monotonic()`` at which it started and at which its flush was done (Linux's monotonic clock is one for every
process, so ``fleet.py`` compares them with its own), and what its backend's record says about order and
completeness (``problems``; empty when every turn was delivered once, in order, and each session committed once,
after its writes).

Run by ``fleet.py``; not on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import memcore


class Slow:
    """Every write and commit sleeps ``latency`` seconds (a stand-in for a service's latency), then records what
    arrived (benchmark instrumentation, not a backend's design)."""

    name = "slow"

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.log: list[tuple[str, str, tuple[str, ...]]] = []
        self.busy_s = 0.0
        self._lock = threading.Lock()

    def _call(self, kind: str, session: memcore.Session, contents: tuple[str, ...]) -> None:
        start = time.perf_counter()
        time.sleep(self.latency)
        spent = time.perf_counter() - start
        with self._lock:
            self.busy_s += spent
            self.log.append((kind, session.id, contents))

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        self._call("write", session, tuple(m.content for m in messages))

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self._call("commit", session, ())


@dataclass
class ChildResult:
    name: str
    started: float  # time.monotonic() when "go" arrived
    done: float  # time.monotonic() when the flush returned
    enqueue_s: float
    writes: int  # from the backend's record
    commits: int
    delivered: int  # from the flush's Report
    committed: int
    failed: int
    timed_out: bool
    mean_call_ms: float
    problems: list[str] = field(default_factory=list)


def texts(sid: str, turn: int) -> tuple[str, str]:
    return f"{sid} q{turn}", f"{sid} a{turn}"


def check_session(log: Sequence[tuple[str, str, tuple[str, ...]]], sid: str, turns: int) -> str | None:
    """None if session ``sid``'s turns all arrived once, in order, and one commit came after them; else what is
    wrong."""
    events = [(kind, contents) for kind, k, contents in log if k == sid]
    got = [x for kind, contents in events if kind == "write" for x in contents]
    if got != [x for n in range(turns) for x in texts(sid, n)]:
        return f"{sid}: {len(got)} messages, not in order or not once"
    kinds = [kind for kind, _ in events]
    if kinds.count("commit") != 1 or kinds[-1] != "commit":
        return f"{sid}: commits {kinds.count('commit')}, last {kinds[-1] if kinds else None}"
    return None


def make_journal(args: argparse.Namespace) -> Any:
    if args.journal == "sqlite":
        return Path(args.sqlite_path)
    from memcore_postgres import PostgresJournal

    return PostgresJournal(args.dsn, schema=args.schema)


def drive(memory: memcore.Memory, sids: Sequence[str], turns: int) -> None:
    """Accept ``turns`` turns of every session, interleaved (so every worker has work from the start), then a commit
    of each."""
    lifecycles = [memory.lifecycle(sid) for sid in sids]
    for n in range(turns):
        for sid, lc in zip(sids, lifecycles, strict=True):
            lc.sync_turn(*texts(sid, n))
    for lc in lifecycles:
        lc.end()


def run(args: argparse.Namespace) -> ChildResult:
    backend = Slow(args.latency)
    sids = [f"{args.name}-s{i}" for i in range(args.sessions)]
    memory = memcore.Memory(
        backends=[backend],
        journal=make_journal(args),
        workers=args.workers,
        stall_after=None,  # exactly `workers` lane threads: the limit is workers / latency
        max_pending=args.sessions * (args.turns + 1) + 1000,
    )
    try:
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("fleet child: no go")
        started = time.monotonic()
        drive(memory, sids, args.turns)
        enqueued = time.monotonic()
        report = memory.flush(timeout=args.turns * args.sessions * args.latency + 120)
        done = time.monotonic()
    finally:
        memory.close(timeout=60)
    calls = len(backend.log)
    problems = [p for sid in sids if (p := check_session(backend.log, sid, args.turns)) is not None]
    return ChildResult(
        name=args.name,
        started=started,
        done=done,
        enqueue_s=round(enqueued - started, 4),
        writes=sum(1 for kind, _, _ in backend.log if kind == "write"),
        commits=sum(1 for kind, _, _ in backend.log if kind == "commit"),
        delivered=report.delivered,
        committed=report.committed,
        failed=report.failed,
        timed_out=report.timed_out,
        mean_call_ms=round(backend.busy_s / calls * 1000, 3) if calls else 0.0,
        problems=problems,
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="one process of fleet.py's throughput part")
    parser.add_argument("--name", required=True)
    parser.add_argument("--journal", choices=("postgres", "sqlite"), required=True)
    parser.add_argument("--dsn", default="")
    parser.add_argument("--schema", default="memcore_journal")
    parser.add_argument("--sqlite-path", default="")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--turns", type=int, required=True)
    parser.add_argument("--latency", type=float, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    result = run(parse(argv))
    print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

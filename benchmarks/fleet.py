"""Fleet benchmark: memcore's journal in PostgreSQL (memcore-postgres' PostgresJournal) against the SQLite file (issue
18, item 6).

Starts a throwaway PostgreSQL server on a free loopback port (Debian's PostgreSQL, as ``tox -e postgres`` does; a
server that does not start fails the run), then, side by side in one run:

1. **Caller latency.** ``sync_turn`` with the SQLite journal and with the PostgreSQL journal, same fast in-memory
   backend, ``durability="group"``: p50, p99 and max per call, in alternating rounds. The group commit keeps the
   database off the caller's path, so the ratio should be about 1. Target: p50 ratio (Postgres / SQLite) <= 1.5.
2. **Throughput.** P = 1, 2 and 4 processes (benchmarks/_fleet_child.py, each its own MEMCORE_HOME), each a Memory
   with 4 workers and 8 sessions of its own, against a backend whose every write and commit takes 50 ms; on one
   PostgreSQL journal they all share, and (the reference) each on its own SQLite journal file. Started at one
   moment, timed from then to the last process's flush done. The limit is P x workers / 0.05 s operations per
   second (a worker finishes at most one 50 ms call at a time); reported: operations per second and their ratio to
   the limit; checked from each backend's own record: every turn once, in order, each session committed once after
   its writes. Target: ratio >= 0.8 for every P on the shared database.
3. **Takeover.** A child process accepts N operations (N turns over 100 sessions, a commit each) against a service
   that is down, waits until the database has them, and is SIGKILLed. A Memory already running in this process
   (lease 2 s) takes them over at its next renewal once the lease expired, and delivers them. Reported: seconds from
   the kill to the last delivery, and minus the lease (the takeover's own cost); checked: every turn once, in order,
   each session committed once after its writes. Target: 10,000 operations taken over and delivered within
   lease + 10 s.

A quick run (``--quick``: fewer calls, 19 turns per session instead of 149, 2,000 operations taken over) checks
correctness only; its timings are information, and its JSON never replaces results/fleet.json.

Usage::

    python benchmarks/fleet.py [--quick] [--json PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    BACKEND_LATENCY,
    BenchResults,
    Target,
    fmt,
    percentile,
    print_table,
    print_targets,
    progress_printer,
    write_json,
)
from _fleet_child import ChildResult

import memcore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "backends" / "postgres" / "tests"))
import pgserver  # noqa: E402  (the test suite's throwaway server)
from memcore_postgres import PostgresJournal  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "fleet.json"
CHILD_SCRIPT = Path(__file__).resolve().parent / "_fleet_child.py"
LEASE = 2.0
SESSIONS = 100
#: Throughput: processes sharing one database, each with this many workers and SESSIONS_PER_WORKER x as many sessions.
PROCESSES = (1, 2, 4)
WORKERS = 4
SESSIONS_PER_WORKER = 2
#: Targets.
LATENCY_RATIO = 1.5
TAKEOVER_SLACK_S = 10.0
THROUGHPUT_RATIO = 0.8


class Fast:
    """Returns at once; records arrivals per session (benchmark instrumentation, not a backend's design)."""

    name = "rec"

    def __init__(self) -> None:
        self.log: list[tuple[str, str, tuple[str, ...]]] = []

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        self.log.append(("write", session.id, tuple(m.content for m in messages)))

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self.log.append(("commit", session.id, ()))


@dataclass
class Latency:
    journal: str
    calls: int
    p50_us: float
    p99_us: float
    max_us: float


@dataclass
class Takeover:
    operations: int
    lease_s: float
    seconds_after_kill: float
    beyond_lease_s: float
    correct: bool
    detail: str


@dataclass
class Throughput:
    journal: str  # "postgres": one database all processes share; "sqlite": each process its own journal file
    processes: int
    workers: int  # per process
    sessions: int  # per process
    turns: int  # per session
    operations: int  # writes and commits the backends recorded, all processes
    wall_s: float  # from "go" to the last process's flush done
    slowest_child_s: float  # the longest of the processes' own go -> flush done
    enqueue_s: float  # the longest time a process took to accept its turns and commits
    ops_per_s: float
    limit_ops_per_s: float  # processes x workers / backend latency
    ratio: float
    mean_call_ms: float  # what the backend's 50 ms sleep actually took, mean over every call
    correct: bool
    detail: str


@dataclass
class FleetResults(BenchResults):
    benchmark: str = "fleet"
    latency: list[Latency] = field(default_factory=list)
    latency_ratio_p50: float = 0.0
    latency_ratio_p99: float = 0.0
    throughput: list[Throughput] = field(default_factory=list)
    takeover: list[Takeover] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


def latency(journal: Any, calls: int) -> list[int]:
    memory = memcore.Memory(backends=[Fast()], journal=journal)
    try:
        lc = memory.lifecycle("latency")
        samples = []
        for n in range(calls):
            t0 = time.perf_counter_ns()
            lc.sync_turn(f"question {n}", f"answer {n}")
            samples.append(time.perf_counter_ns() - t0)
        memory.flush(timeout=120)
        return samples
    finally:
        memory.close(timeout=120)


CHILD = """
import sys, time
import memcore
from memcore_postgres import PostgresJournal

class Down:
    name = "rec"
    @memcore.hookimpl
    def memcore_write(self, session, messages):
        raise memcore.TransientError("down")
    @memcore.hookimpl
    def memcore_commit(self, session):
        raise memcore.TransientError("down")

dsn, schema, lease, sessions, turns = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
memory = memcore.Memory(backends=[Down()], journal=PostgresJournal(dsn, schema=schema, lease=lease), stall_after=None,
                        max_pending=1_000_000)
for n in range(turns):
    for s in range(sessions):
        memory.lifecycle(f"s{s}").sync_turn(f"s{s} q{n}", f"s{s} a{n}")
for s in range(sessions):
    memory.lifecycle(f"s{s}").end()
assert memory._journal.wait_durable(timeout=120)
print("ready", flush=True)
time.sleep(600)
"""


def takeover(dsn: str, schema: str, operations: int, home: Path) -> Takeover:
    turns = max(1, operations // SESSIONS - 1)
    rec = Fast()
    b = memcore.Memory(backends=[rec], journal=PostgresJournal(dsn, schema=schema, lease=LEASE))
    env = {**os.environ, "MEMCORE_HOME": str(home)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), dsn, schema, str(LEASE), str(SESSIONS), str(turns)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the child did not get its operations to the database")
        child.send_signal(signal.SIGKILL)
        child.wait(60)
        killed = time.monotonic()
        want = SESSIONS * (turns + 1)
        deadline = killed + LEASE + 120
        while len(rec.log) < want and time.monotonic() < deadline:
            time.sleep(0.005)
        took = time.monotonic() - killed
        b.flush(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
        b.close(timeout=120)
    problems = []
    for s in range(SESSIONS):
        sid = f"s{s}"
        got = [x for kind, k, turn in rec.log if k == sid and kind == "write" for x in turn]
        if got != [x for n in range(turns) for x in (f"{sid} q{n}", f"{sid} a{n}")]:
            problems.append(f"{sid}: {len(got)} messages, not in order or not once")
        kinds = [kind for kind, k, _ in rec.log if k == sid]
        if kinds.count("commit") != 1 or kinds[-1] != "commit":
            problems.append(f"{sid}: commits {kinds.count('commit')}, last {kinds[-1] if kinds else None}")
    return Takeover(
        operations=SESSIONS * (turns + 1),
        lease_s=LEASE,
        seconds_after_kill=round(took, 3),
        beyond_lease_s=round(took - LEASE, 3),
        correct=not problems,
        detail="; ".join(problems[:3]) or "every turn once, in order; each session committed once, after its writes",
    )


def spawn_child(journal: str, name: str, turns: int, dsn: str, schema: str, home: Path) -> subprocess.Popen[str]:
    """One throughput process (benchmarks/_fleet_child.py), in its own MEMCORE_HOME; it prints ``ready`` when its
    Memory is up."""
    home.mkdir(parents=True)
    command = [sys.executable, str(CHILD_SCRIPT), "--name", name, "--journal", journal, "--workers", str(WORKERS)]
    command += ["--sessions", str(WORKERS * SESSIONS_PER_WORKER), "--turns", str(turns)]
    command += ["--latency", str(BACKEND_LATENCY)]
    if journal == "postgres":
        command += ["--dsn", dsn, "--schema", schema]
    else:
        command += ["--sqlite-path", str(home / "journal.sqlite3")]
    env = {**os.environ, "MEMCORE_HOME": str(home)}
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)


def read_line(child: subprocess.Popen[str], before: str) -> str:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"a throughput process exited ({child.wait(60)}) before it {before}")
    return line


def start_together(children: Sequence[subprocess.Popen[str]]) -> float:
    """Wait until every process is ready, then tell them all to go; the ``time.monotonic()`` just before."""
    for child in children:
        if read_line(child, "was ready").strip() != "ready":
            raise RuntimeError("a throughput process said something other than ready")
    started = time.monotonic()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    return started


def child_problems(r: ChildResult, sessions: int, turns: int) -> list[str]:
    """What is wrong with one process's counts (its backend's record and its flush's Report), and its own checks of
    order."""
    want = {"writes": sessions * turns, "commits": sessions, "delivered": sessions * turns, "committed": sessions}
    got = {"writes": r.writes, "commits": r.commits, "delivered": r.delivered, "committed": r.committed}
    wrong = [f"{r.name}: {k} {got[k]}, not {v}" for k, v in want.items() if got[k] != v]
    if r.failed or r.timed_out:
        wrong.append(f"{r.name}: failed {r.failed}, flush timed out {r.timed_out}")
    return wrong + r.problems


def summarize(journal: str, turns: int, started: float, results: Sequence[ChildResult]) -> Throughput:
    sessions = WORKERS * SESSIONS_PER_WORKER
    operations = sum(r.writes + r.commits for r in results)
    wall = max(r.done for r in results) - started
    limit = len(results) * WORKERS / BACKEND_LATENCY
    problems = [p for r in results for p in child_problems(r, sessions, turns)]
    mean_call = sum(r.mean_call_ms * (r.writes + r.commits) for r in results) / max(1, operations)
    return Throughput(
        journal=journal,
        processes=len(results),
        workers=WORKERS,
        sessions=sessions,
        turns=turns,
        operations=operations,
        wall_s=round(wall, 3),
        slowest_child_s=round(max(r.done - r.started for r in results), 3),
        enqueue_s=max(r.enqueue_s for r in results),
        ops_per_s=round(operations / wall, 1),
        limit_ops_per_s=limit,
        ratio=round(operations / wall / limit, 3),
        mean_call_ms=round(mean_call, 3),
        correct=not problems,
        detail="; ".join(problems[:3]) or "every turn once, in order; each session committed once, after its writes",
    )


def throughput(journal: str, processes: int, turns: int, dsn: str, work: Path) -> Throughput:
    """``processes`` processes, started at one moment, each with WORKERS workers driving its own sessions against the
    50 ms backend; on one shared PostgreSQL journal (its own schema per run) or each on its own SQLite file."""
    tag = f"{journal}_{processes}"
    children = [
        spawn_child(journal, f"p{i}", turns, dsn, f"tput_{processes}", work / f"tput-{tag}-p{i}")
        for i in range(processes)
    ]
    try:
        started = start_together(children)
        results = [ChildResult(**json.loads(read_line(child, "reported"))) for child in children]
        for child in children:
            child.wait(120)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(60)
    return summarize(journal, turns, started, results)


def measure_latency(dsn: str, work: Path, calls: int, rounds: int, progress: Any) -> list[Latency]:
    """``sync_turn``'s caller latency on the SQLite journal and on the PostgreSQL one, in alternating rounds."""
    samples: dict[str, list[int]] = {"sqlite": [], "postgres": []}
    for r in range(rounds):
        for kind in ("sqlite", "postgres") if r % 2 == 0 else ("postgres", "sqlite"):
            progress(f"latency round {r + 1}/{rounds}: {kind}")
            journal: Any = (
                work / f"journal-{r}.sqlite3" if kind == "sqlite" else PostgresJournal(dsn, schema=f"lat_{r}")
            )
            samples[kind] += latency(journal, calls)
    rows = []
    for kind, values in samples.items():
        values.sort()
        rows.append(
            Latency(
                journal=kind,
                calls=len(values),
                p50_us=round(percentile(values, 50), 2),
                p99_us=round(percentile(values, 99), 2),
                max_us=round(values[-1] / 1000, 2),
            )
        )
    return rows


def run(quick: bool, progress: Any) -> FleetResults:
    res = FleetResults(quick=quick)
    calls, rounds = (2_000, 2) if quick else (10_000, 4)
    sizes = [2_000] if quick else [2_000, 10_000]
    turns = 19 if quick else 149
    res.config = {
        "calls": calls,
        "rounds": rounds,
        "takeover_ops": sizes,
        "lease_s": LEASE,
        "sessions": SESSIONS,
        "throughput_processes": list(PROCESSES),
        "throughput_workers": WORKERS,
        "throughput_sessions_per_process": WORKERS * SESSIONS_PER_WORKER,
        "throughput_turns": turns,
        "backend_latency_s": BACKEND_LATENCY,
    }
    progress("starting a PostgreSQL server on loopback")
    server = pgserver.start()
    try:
        dsn = server.dsn(pgserver.create_database(server))
        with tempfile.TemporaryDirectory(prefix="memcore-fleet-") as tmp:
            work = Path(tmp)
            res.latency = measure_latency(dsn, work, calls, rounds, progress)
            sq, pg = res.latency
            res.latency_ratio_p50 = round(pg.p50_us / sq.p50_us, 3)
            res.latency_ratio_p99 = round(pg.p99_us / sq.p99_us, 3)
            for n, processes in enumerate(PROCESSES):
                for kind in ("sqlite", "postgres") if n % 2 == 0 else ("postgres", "sqlite"):
                    progress(f"throughput: {processes} process(es), {kind} journal")
                    res.throughput.append(throughput(kind, processes, turns, dsn, work))
            for n, size in enumerate(sizes):
                progress(f"takeover of {size:,} operations")
                home = work / f"host-{n}"
                home.mkdir()
                res.takeover.append(takeover(dsn, f"takeover_{n}", size, home))
    finally:
        server.remove()
    # A quick run checks correctness; its timings are information (a loaded machine is not a measurement).
    res.targets = [
        Target(f"throughput {t.journal} P={t.processes}", "correct", float(t.correct), "", ">=", 1.0, t.correct)
        for t in res.throughput
    ]
    res.targets += [
        Target(f"takeover {t.operations:,}", "correct", float(t.correct), "", ">=", 1.0, t.correct)
        for t in res.takeover
    ]
    if quick:
        return res
    res.targets += [
        Target(
            f"throughput postgres P={t.processes}",
            "ops/s / limit",
            t.ratio,
            "",
            ">=",
            THROUGHPUT_RATIO,
            t.ratio >= THROUGHPUT_RATIO,
        )
        for t in res.throughput
        if t.journal == "postgres"
    ]
    res.targets.append(
        Target(
            "sync_turn p50, postgres / sqlite",
            "ratio",
            res.latency_ratio_p50,
            "x",
            "<=",
            LATENCY_RATIO,
            res.latency_ratio_p50 <= LATENCY_RATIO,
        )
    )
    for t in res.takeover:
        limit = t.lease_s + TAKEOVER_SLACK_S
        res.targets.append(
            Target(
                f"takeover {t.operations:,}",
                "seconds_after_kill",
                t.seconds_after_kill,
                "s",
                "<=",
                limit,
                t.seconds_after_kill <= limit,
            )
        )
    return res


def report(res: FleetResults) -> None:
    print(f"fleet ({'quick' if res.quick else 'full'}): {res.machine}")
    print("caller latency of sync_turn (durability=group, fast backend)")
    print_table(
        ["journal", "calls", "p50 us", "p99 us", "max us"],
        [
            [x.journal, str(x.calls), fmt(x.p50_us, ".2f"), fmt(x.p99_us, ".2f"), fmt(x.max_us, ".0f")]
            for x in res.latency
        ],
    )
    print(f"ratio postgres / sqlite: p50 {res.latency_ratio_p50:.2f}x, p99 {res.latency_ratio_p99:.2f}x")
    report_throughput(res.throughput)
    print("takeover of a SIGKILLed host's operations by a running one")
    print_table(
        ["operations", "lease s", "kill -> delivered s", "beyond the lease s", "correct"],
        [
            [
                f"{t.operations:,}",
                fmt(t.lease_s),
                fmt(t.seconds_after_kill, ".2f"),
                fmt(t.beyond_lease_s, ".2f"),
                t.detail,
            ]
            for t in res.takeover
        ],
    )
    print_targets(res.targets)


def report_throughput(rows: Sequence[Throughput]) -> None:
    if not rows:
        return
    first = rows[0]
    print(
        f"throughput: P processes x {first.workers} workers, {first.sessions} sessions x {first.turns} turns and a "
        f"commit each per process, {BACKEND_LATENCY * 1000:.0f} ms backend (limit = P x {first.workers} / "
        f"{BACKEND_LATENCY:g} s)"
    )
    ordered = sorted(rows, key=lambda t: (t.processes, t.journal))
    print_table(
        ["journal", "P", "operations", "wall s", "ops/s", "limit/s", "ratio", "mean call ms", "correct"],
        [
            [
                t.journal,
                str(t.processes),
                f"{t.operations:,}",
                fmt(t.wall_s, ".2f"),
                fmt(t.ops_per_s),
                fmt(t.limit_ops_per_s, ".0f"),
                fmt(t.ratio, ".3f"),
                fmt(t.mean_call_ms, ".2f"),
                "yes" if t.correct else t.detail,
            ]
            for t in ordered
        ],
    )
    by_key = {(t.journal, t.processes): t.ratio for t in rows}
    shared = [
        f"P={p}: {by_key[('postgres', p)] / by_key[('sqlite', p)]:.3f}x"
        for p in sorted({t.processes for t in rows})
        if ("postgres", p) in by_key and by_key.get(("sqlite", p))
    ]
    print(f"ratio postgres / sqlite (what the shared database costs): {', '.join(shared)}")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer calls and turns, a 2,000-operation takeover; figures are information",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where the JSON goes (default {DEFAULT_JSON})")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target failed")
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    try:
        res = run(args.quick, progress_printer(begin))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    res.total_seconds = round(time.perf_counter() - begin, 1)
    report(res)
    write_json(res, args.json)
    return 1 if args.check and not all(t.passed for t in res.targets) else 0


if __name__ == "__main__":
    sys.exit(main())

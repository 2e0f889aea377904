"""Reliability benchmark: what the journal costs the agent's thread and the lane workers, and how fast a crashed
process's journaled work is recovered (G5, G8, G9, G10).

Four phases, each run with a fresh ``MEMCORE_HOME`` (a temporary directory) so that no journal is shared between them:

1. caller-side latency of ``sync_turn`` against the 50 ms :class:`SlowBackend`, journal off, journal on
   (``durability="group"``, the default) and, as information, ``durability="sync"``;
2. throughput of the lane workers against the 50 ms backend, journal off and on, as a fraction of ``W / 0.050 s``;
   then, as information, the journal's CPU cost against a backend that returns at once (nothing to hide it behind);
3. recovery: a child process accepts 10,000 writes (plus one commit per session) against a backend that is down,
   waits until they are on disk and is killed with SIGKILL; this process then times ``Memory(...)`` (claim and
   replay) and ``flush()`` until everything reached a fast in-memory backend, and checks order and single commits;
4. the loss window: a child process writes turns at a steady pace from several threads (a CPU hog process beside it)
   against a backend that never answers, so every accepted turn must be in the journal, and is killed with SIGKILL at
   a random moment; the turns it had accepted and the journal does not hold were lost, and the window of that run is
   the time from the oldest of them to the kill. Repeated with ``durability="group"`` and ``"sync"`` (which must lose
   none); then, as a bound from above, every turn's time from acceptance to its batch's COMMIT under the same load.

Usage::

    python benchmarks/reliability.py [--quick] [--json PATH] [--check]

See ``benchmarks/README.md`` for what every row means.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import mmap
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from _common import (
    BACKEND_LATENCY,
    CLOSE_TIMEOUT,
    BenchResults,
    PhaseClose,
    SlowBackend,
    Target,
    close_phase,
    gc_counts,
    gc_state,
    percentile,
    print_table,
    print_targets,
    progress_printer,
    timer_overhead_ns,
    verdict,
    write_json,
)

import memcore
from memcore import _journal_admin

#: Where the JSON goes unless ``--json`` says otherwise.
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "reliability.json"
USER_TEXT = "user text"
ASSISTANT_TEXT = "assistant text"
JOURNAL_FILE = "journal.sqlite3"
#: The recovery phase's backend name: the journal files operations under it, so the writer and the recoverer share it.
RECOVERY_BACKEND = "recovery"
#: How many of the slowest latency samples the JSON keeps (with the gc time they include).
SLOWEST_KEPT = 5
#: How long the recovery phase waits for the child to report its writes durable before giving up.
CHILD_TIMEOUT = 120.0

# Targets.
JOURNAL_SYNC_TURN_P50_US = 50.0
THROUGHPUT_RATIO = 0.9
#: Not a target (none was set): the expectation the recovery row is compared with, as information.
RECOVERY_EXPECTED_S = 10.0
#: The loss window with durability="group": the p99 over the SIGKILL runs (information in a quick run: a few runs).
LOSS_WINDOW_P99_MS = 5.0
#: The loss-window phase's child holds every write pending: nothing may spill or be refused.
LOSS_MAX_PENDING = 1_000_000
#: A batch write (BEGIN ... COMMIT) slower than this is counted in the durable-latency row (WAL checkpoints, mostly).
SLOW_WRITE_MS = 2.0


# -- backends for the recovery phase -------------------------------------------------------------------------------


class DownBackend:
    """A backend whose service is down: every write and commit raises :class:`memcore.TransientError`."""

    name = RECOVERY_BACKEND

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts = 0

    def _fail(self) -> None:
        with self._lock:
            self.attempts += 1
        raise memcore.TransientError("service unavailable (benchmark)")

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        self._fail()

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self._fail()


class RecordingBackend:
    """A fast in-memory backend: hooks return at once and record what arrived, per session, in arrival order.

    ``writes[sid]`` lists the turn numbers written (parsed from the user message ``"<sid> turn <n>"``);
    ``commits[sid]`` lists, for each commit, how many writes of that session had arrived when it ran."""

    name = RECOVERY_BACKEND

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.writes: dict[str, list[int]] = {}
        self.commits: dict[str, list[int]] = {}
        self.bad_payloads = 0

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        head, _, number = messages[0].content.rpartition(" turn ")
        with self._lock:
            if head != session.id or not number.isdigit():
                self.bad_payloads += 1
                return
            self.writes.setdefault(session.id, []).append(int(number))

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        with self._lock:
            self.commits.setdefault(session.id, []).append(len(self.writes.get(session.id, ())))


class HoldBackend:
    """A backend that never answers (the loss-window phase): ``memcore_write`` waits on ``gate``, which the child
    that is killed never sets. Nothing is acknowledged, so no row leaves the journal: every accepted write that is
    not in it after the kill was lost."""

    name = "hold"

    def __init__(self) -> None:
        self.gate = threading.Event()

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        self.gate.wait()


# -- results -------------------------------------------------------------------------------------------------------


@dataclass
class SlowCall:
    index: int  # position in the measured loop
    us: float
    gc_us: float  # time of gc pauses (in any thread: they hold the GIL) that overlap this call


@dataclass
class LatencyRow:
    row: str
    journal: bool
    durability: str | None
    workers: int
    lifecycles: int
    warmup: int
    samples: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    ops_expected: int  # writes the loops should have queued (warm-up included)
    ops_accepted: int  # delivered + committed + failed + pending, right after the loop
    durable_after_s: float | None  # journal on: how long wait_durable() took right after the loop
    gc_collections: list[int]  # per generation, during the measured loop
    samples_over_1ms: int
    gc_longest_pause_ms: float  # the longest gc pause during the measured loop, in any thread
    slowest: list[SlowCall]  # the slowest calls, with the gc time in the caller's thread they include
    p50_vs_off: float | None = None  # this row's figure / the journal-off row's
    p99_vs_off: float | None = None
    max_vs_off: float | None = None
    target: str = "info"
    passed: bool | None = None  # None for information rows
    close: PhaseClose | None = None


@dataclass
class ThroughputRow:
    row: str
    journal: bool
    workers: int
    sessions: int
    writes: int
    backend_calls: dict[str, int]
    wall_seconds: float
    enqueue_seconds: float
    drained: bool
    delivered: int
    limit_ops_per_s: float
    calls_per_s: float
    ratio: float  # backend calls per second / limit
    ideal_seconds: float  # backend calls x measured mean call time / W
    mean_backend_call_ms: float | None
    all_writes_arrived: bool
    ratio_vs_off: float | None = None  # this row's ratio / the journal-off row's, same W
    target: str = "info"
    passed: bool | None = None
    close: PhaseClose | None = None


@dataclass
class FastRow:
    """Information: the journal's CPU cost when the backend returns at once (nothing hides it behind backend time)."""

    row: str
    journal: bool
    workers: int
    sessions: int
    writes: int
    accept_seconds: float  # the sync_turn loop
    total_seconds: float  # ... until flush() reported everything delivered
    writes_per_s: float  # writes / total
    p50_us: float  # sync_turn, while the workers deliver
    p99_us: float
    max_us: float
    in_order: bool  # every session's writes arrived once, in call order
    total_vs_off: float | None = None  # this row's total_seconds / the journal-off row's
    close: PhaseClose | None = None


@dataclass
class RecoveryResult:
    row: str
    crashed: bool  # True: replayed after process A was killed; False: the live baseline (no crash, no replay)
    sessions: int
    turns_per_session: int
    operations: int  # writes + one commit per session
    workers: int
    child_pid: int | None  # process A
    child_accept_seconds: float | None  # A's time to accept every operation (caller side)
    child_durable_seconds: float | None  # ... and then until wait_durable() returned (the loss window of that burst)
    child_backend_attempts: int | None  # failed attempts the down backend saw before the kill
    child_exit: int | None  # A's return code (-9: killed by SIGKILL)
    journal_rows_before: int  # rows on disk when this process started its Memory
    construct_seconds: float  # Memory(...): open, integrity check, claim, decode, queue the replay
    accept_seconds: float  # live baseline: the sync_turn and end calls (0 when recovering)
    flush_seconds: float  # memory.flush() until every operation was delivered or committed
    total_seconds: float  # construct + accept + flush
    ops_per_s: float
    replayed: int
    delivered: int
    committed: int
    failed: int
    pending_after_flush: int
    flush_timed_out: bool
    sessions_in_order: int  # sessions whose writes arrived exactly as 0..turns-1, each once
    sessions_committed_once: int  # sessions with exactly one commit, run after all their writes
    bad_payloads: int
    journal_rows_after_close: int
    correct: bool
    close: PhaseClose | None = None


@dataclass
class LossRun:
    """One SIGKILL of the loss-window phase's child."""

    run: int
    child_pid: int
    child_exit: int  # -9: killed by SIGKILL
    killed_after_ready_ms: float  # the random moment, after the child said its writers were running
    accepted: int  # turns whose sync_turn had returned (and been recorded) before the kill
    lost: int  # ... of which the journal does not hold
    window_ms: float  # the kill minus the acceptance of the oldest lost turn (0 if none was lost)
    holes: int  # lost turns followed by a kept turn of the same thread (group commit must never do that)
    unrecorded: int  # turns in the journal whose call had not returned, or not been recorded, at the kill
    saturated: bool  # a thread used up its record slots before the kill (the run is not valid)


@dataclass
class LossRow:
    row: str
    durability: str
    threads: int
    interval_ms: float  # each thread's pace: one turn per interval
    cpu_hogs: int  # busy-looping processes beside the child
    runs: int
    accepted_per_s: float  # the pace reached, over every run (accepted / time from the writers' start to the kill)
    accepted: int
    lost: int
    runs_losing: int
    holes: int
    window_p50_ms: float
    window_p90_ms: float
    window_p99_ms: float  # nearest rank: with fewer than 100 runs, the max
    window_max_ms: float
    window_mean_ms: float
    runs_detail: list[LossRun]
    load_average: tuple[float, float]  # the machine's 1-minute load average before and after these runs
    target: str = "info"
    passed: bool | None = None


@dataclass
class DurableLatency:
    """Information: every turn's time from its acceptance (``sync_turn`` returned) to the end of the COMMIT of the
    batch that holds it, under the loss-window phase's load, in children that run to the end (not killed). A SIGKILL
    at any moment loses at most the turns accepted during the last such latency, so it bounds the window from above."""

    row: str
    runs: int
    seconds_per_run: float
    turns: int
    batches: int
    rows_per_batch: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    write_p50_ms: float  # one batch: BEGIN ... COMMIT (journal._write), auto-checkpoints included
    write_p99_ms: float
    write_max_ms: float
    slow_writes: int  # writes over SLOW_WRITE_MS
    slow_writes_ms: float  # their total time
    slow_writes_share: float  # ... as a fraction of the measured time
    gc_longest_ms: float  # the longest gc pause in the child (holds the GIL: the writer waits)
    gc_pauses_over_2ms: int
    wal_bytes: int  # the -wal file's size at the end of the (last) run


@dataclass
class Results(BenchResults):
    benchmark: str = "reliability"
    timer_overhead_ns: int = 0
    latency: list[LatencyRow] = field(default_factory=list)
    throughput: list[ThroughputRow] = field(default_factory=list)
    fast: list[FastRow] = field(default_factory=list)
    recovery: list[RecoveryResult] = field(default_factory=list)
    recovery_median_seconds: float | None = None  # of the crashed runs
    recovery_median_ops_per_s: float | None = None
    recovery_within_expected: bool | None = None  # median <= RECOVERY_EXPECTED_S (information, not a target)
    loss: list[LossRow] = field(default_factory=list)
    durable_latency: list[DurableLatency] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    all_passed: bool = False


# -- helpers -------------------------------------------------------------------------------------------------------


@contextmanager
def fresh_home(tag: str) -> Iterator[Path]:
    """A fresh ``MEMCORE_HOME`` for one phase (set in ``os.environ`` for the phase, removed afterwards)."""
    before = os.environ.get("MEMCORE_HOME")
    home = Path(tempfile.mkdtemp(prefix=f"memcore-bench-{tag}-"))
    os.environ["MEMCORE_HOME"] = str(home)
    try:
        yield home
    finally:
        if before is None:
            os.environ.pop("MEMCORE_HOME", None)
        else:
            os.environ["MEMCORE_HOME"] = before
        shutil.rmtree(home, ignore_errors=True)


def slow_memory(
    backend: SlowBackend, *, workers: int, journal: bool, durability: str, max_pending: int
) -> memcore.Memory:
    return memcore.Memory(
        backends=[backend],
        plugins=[],
        workers=workers,
        recall_workers=2,
        journal=journal,
        durability=durability,
        max_pending=max_pending,
    )


def journal_rows(path: Path) -> int:
    """Operations the journal at ``path`` holds (any status), read-only; 0 if there is no journal file."""
    if not path.exists():
        return 0
    return sum(group.operations for group in _journal_admin.pending(path))


def wait_durable(memory: memcore.Memory) -> float | None:
    """Seconds until everything the journal buffered so far is on disk; None without a journal."""
    journal = memory._journal
    if journal is None:
        return None
    start = time.perf_counter()
    journal.wait_durable(timeout=CLOSE_TIMEOUT)
    return time.perf_counter() - start


def ratio(value: float, base: float) -> float | None:
    return value / base if base > 0 and not math.isnan(base) else None


class GcPauses:
    """Records every gc pause (start, end in ``perf_counter_ns``, thread id, generation) while installed."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, int, int, int]] = []
        self._started: dict[int, int] = {}

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter_ns()
        tid = threading.get_ident()
        if phase == "start":
            self._started[tid] = now
        elif tid in self._started:
            self.pauses.append((self._started.pop(tid), now, tid, info["generation"]))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def longest_ms(self) -> float:
        return max(((end - start) / 1e6 for start, end, _, _ in self.pauses), default=0.0)

    def overlap_ns(self, start: int, end: int) -> int:
        """Nanoseconds of gc pauses inside ``[start, end]``, in any thread (a collection holds the GIL throughout, so
        it stalls every thread)."""
        return sum(max(0, min(end, p_end) - max(start, p_start)) for p_start, p_end, _, _ in self.pauses)


# -- phase 1: caller-side latency ----------------------------------------------------------------------------------


def loop_sync_turn(memory: memcore.Memory, n: int, lifecycles: int, tag: str) -> tuple[list[int], list[int]]:
    """Time ``sync_turn`` on ``lifecycles`` lifecycles in turn, back to back. Returns durations and start times."""
    lcs = [memory.lifecycle(f"{tag}-{i}") for i in range(lifecycles)]
    samples = [0] * n
    starts = [0] * n
    pc = time.perf_counter_ns
    for i in range(n):
        lc = lcs[i % lifecycles]
        t0 = pc()
        lc.sync_turn(USER_TEXT, ASSISTANT_TEXT)
        t1 = pc()
        samples[i] = t1 - t0
        starts[i] = t0
    return samples, starts


def run_latency(
    row: str, *, journal: bool, durability: str, samples: int, warmup: int, lifecycles: int, workers: int
) -> LatencyRow:
    with fresh_home("latency"):
        backend = SlowBackend()
        memory = slow_memory(
            backend, workers=workers, journal=journal, durability=durability, max_pending=2 * (samples + warmup) + 1000
        )
        try:
            with gc_state(True):
                loop_sync_turn(memory, warmup, lifecycles, "warm")
                before = gc_counts()
                with GcPauses() as pauses:
                    raw, starts = loop_sync_turn(memory, samples, lifecycles, "run")
                after = gc_counts()
            report = memory.flush(timeout=0)
            durable = wait_durable(memory)
        finally:
            closed = close_phase(memory, backend)
    ordered = sorted(raw)
    slowest = sorted(range(len(raw)), key=raw.__getitem__, reverse=True)[:SLOWEST_KEPT]
    return LatencyRow(
        row=row,
        journal=journal,
        durability=durability if journal else None,
        workers=workers,
        lifecycles=lifecycles,
        warmup=warmup,
        samples=samples,
        p50_us=percentile(ordered, 50),
        p90_us=percentile(ordered, 90),
        p99_us=percentile(ordered, 99),
        p999_us=percentile(ordered, 99.9),
        max_us=ordered[-1] / 1000.0,
        mean_us=sum(ordered) / len(ordered) / 1000.0,
        ops_expected=warmup + samples,
        ops_accepted=report.delivered + report.committed + report.failed + report.pending,
        durable_after_s=durable,
        gc_collections=[a - b for a, b in zip(after, before, strict=True)],
        samples_over_1ms=sum(1 for v in raw if v > 1_000_000),
        gc_longest_pause_ms=pauses.longest_ms(),
        slowest=[
            SlowCall(index=i, us=raw[i] / 1000.0, gc_us=pauses.overlap_ns(starts[i], starts[i] + raw[i]) / 1000.0)
            for i in slowest
        ],
        close=closed,
    )


# -- phase 2: throughput -------------------------------------------------------------------------------------------


def run_throughput(*, workers: int, journal: bool, seconds: float, sessions_per_worker: int) -> ThroughputRow:
    limit = workers / BACKEND_LATENCY
    sessions = sessions_per_worker * workers
    per_session = max(1, math.ceil(seconds * limit / sessions))
    writes = sessions * per_session
    with fresh_home("throughput"):
        backend = SlowBackend()
        memory = slow_memory(
            backend, workers=workers, journal=journal, durability="group", max_pending=writes * 2 + 1000
        )
        try:
            lcs = [memory.lifecycle(f"tput-{workers}-{i}") for i in range(sessions)]
            gc.collect()
            start = time.perf_counter()
            for _ in range(per_session):  # interleaved, so every lane is ready from the start
                for lc in lcs:
                    lc.sync_turn(USER_TEXT, ASSISTANT_TEXT)
            enqueued = time.perf_counter()
            report = memory.flush(timeout=3 * seconds + 60)
            wall = time.perf_counter() - start
            calls = backend.snapshot()
            mean_call = backend.mean_call_seconds()
        finally:
            closed = close_phase(memory, backend)
    backend_calls = calls["write"] + calls["open_session"] + calls["commit"]
    calls_per_s = backend_calls / wall
    return ThroughputRow(
        row=f"W={workers} journal {'on' if journal else 'off'}",
        journal=journal,
        workers=workers,
        sessions=sessions,
        writes=writes,
        backend_calls=calls,
        wall_seconds=wall,
        enqueue_seconds=enqueued - start,
        drained=not report.timed_out,
        delivered=report.delivered,
        limit_ops_per_s=limit,
        calls_per_s=calls_per_s,
        ratio=calls_per_s / limit,
        ideal_seconds=backend_calls * (mean_call or BACKEND_LATENCY) / workers,
        mean_backend_call_ms=None if mean_call is None else mean_call * 1000.0,
        all_writes_arrived=calls["write"] == writes and report.delivered == writes and not report.timed_out,
        close=closed,
    )


def run_fast(*, workers: int, journal: bool, sessions: int, turns: int) -> FastRow:
    with fresh_home("fast"):
        backend = RecordingBackend()
        memory = memcore.Memory(
            backends=[backend], plugins=[], workers=workers, journal=journal, max_pending=2 * sessions * turns + 1000
        )
        try:
            lcs = [memory.lifecycle(session_name(i)) for i in range(sessions)]
            texts = [[f"{session_name(i)} turn {t}" for i in range(sessions)] for t in range(turns)]
            samples = [0] * (sessions * turns)
            pc = time.perf_counter_ns
            gc.collect()
            start = time.perf_counter()
            k = 0
            for t in range(turns):
                row = texts[t]
                for i, lc in enumerate(lcs):
                    t0 = pc()
                    lc.sync_turn(row[i], ASSISTANT_TEXT)
                    t1 = pc()
                    samples[k] = t1 - t0
                    k += 1
            accepted = time.perf_counter()
            report = memory.flush(timeout=120.0)
            flushed = time.perf_counter()
        finally:
            closed = close_phase(memory, None)
    ordered = sorted(samples)
    writes = sessions * turns
    in_order, _ = check_delivery(backend, sessions, turns)
    return FastRow(
        row=f"W={workers} journal {'on' if journal else 'off'}",
        journal=journal,
        workers=workers,
        sessions=sessions,
        writes=writes,
        accept_seconds=accepted - start,
        total_seconds=flushed - start,
        writes_per_s=writes / (flushed - start),
        p50_us=percentile(ordered, 50),
        p99_us=percentile(ordered, 99),
        max_us=ordered[-1] / 1000.0,
        in_order=in_order == sessions and report.delivered == writes and not report.timed_out,
        close=closed,
    )


# -- phase 3: recovery ---------------------------------------------------------------------------------------------


def session_name(i: int) -> str:
    return f"rec-{i:04d}"


def child_writer(home: str, sessions: int, turns: int) -> int:
    """Process A: accept every write and one commit per session against a backend that is down, wait until the
    journal has them on disk, say so on stdout, and wait to be killed."""
    os.environ["MEMCORE_HOME"] = home
    backend = DownBackend()
    memory = memcore.Memory(
        backends=[backend],
        plugins=[],
        workers=4,
        # Long backoff and deadline: the operations stay pending (never failed for good) until the kill.
        retry=memcore.RetryPolicy(initial=5.0, max_delay=30.0, deadline=3600.0),
        max_pending=2 * sessions * (turns + 1) + 1000,
    )
    lcs = [memory.lifecycle(session_name(i)) for i in range(sessions)]
    start = time.perf_counter()
    for t in range(turns):  # interleaved across sessions, as concurrent conversations would write
        for i, lc in enumerate(lcs):
            lc.sync_turn(f"{session_name(i)} turn {t}", f"answer {t}")
    for lc in lcs:
        lc.end()
    accepted = time.perf_counter()
    journal = memory._journal
    if journal is None or not journal.wait_durable(timeout=CHILD_TIMEOUT):
        print(json.dumps({"ready": False, "error": "the journal did not become durable"}), flush=True)
        return 1
    durable = time.perf_counter()
    line = {
        "ready": True,
        "pid": os.getpid(),
        "accept_s": accepted - start,
        "durable_s": durable - accepted,
        "attempts": backend.attempts,
    }
    print(json.dumps(line), flush=True)
    time.sleep(CHILD_TIMEOUT)  # killed long before this
    return 2


def run_child(home: Path, sessions: int, turns: int) -> tuple[dict[str, Any], int]:
    """Start process A, wait for its "durable" line, SIGKILL it and reap it (a zombie's pid still looks alive)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-writer", str(home), str(sessions), str(turns)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(CHILD_TIMEOUT, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        watchdog.cancel()
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    code = proc.wait()
    proc.stdout.close()
    try:
        info: dict[str, Any] = json.loads(line)
    except json.JSONDecodeError:
        info = {"ready": False, "error": f"unexpected output {line!r}"}
    if not info.get("ready"):
        raise RuntimeError(f"the writer process failed (exit {code}): {info.get('error')}")
    return info, code


def check_delivery(backend: RecordingBackend, sessions: int, turns: int) -> tuple[int, int]:
    """Sessions whose writes all arrived once in call order, and sessions committed once after all their writes."""
    expected = list(range(turns))
    in_order = sum(1 for i in range(sessions) if backend.writes.get(session_name(i)) == expected)
    once = sum(1 for i in range(sessions) if backend.commits.get(session_name(i)) == [turns])
    return in_order, once


def recovery_result(
    row: str,
    *,
    sessions: int,
    turns: int,
    workers: int,
    backend: RecordingBackend,
    report: memcore.Report,
    times: tuple[float, float, float],
    rows_before: int,
    rows_after: int,
    closed: PhaseClose,
    child: dict[str, Any] | None = None,
    child_exit: int | None = None,
) -> RecoveryResult:
    operations = sessions * (turns + 1)
    construct, accept, flush = times
    total = construct + accept + flush
    crashed = child is not None
    in_order, once = check_delivery(backend, sessions, turns)
    correct = (
        in_order == sessions
        and once == sessions
        and backend.bad_payloads == 0
        and len(backend.writes) == sessions
        and len(backend.commits) == sessions
        and report.replayed == (operations if crashed else 0)
        and report.delivered == sessions * turns
        and report.committed == sessions
        and report.failed == 0
        and report.pending == 0
        and not report.timed_out
        and rows_after == 0
    )
    return RecoveryResult(
        row=row,
        crashed=crashed,
        sessions=sessions,
        turns_per_session=turns,
        operations=operations,
        workers=workers,
        child_pid=None if child is None else int(child["pid"]),
        child_accept_seconds=None if child is None else float(child["accept_s"]),
        child_durable_seconds=None if child is None else float(child["durable_s"]),
        child_backend_attempts=None if child is None else int(child["attempts"]),
        child_exit=child_exit,
        journal_rows_before=rows_before,
        construct_seconds=construct,
        accept_seconds=accept,
        flush_seconds=flush,
        total_seconds=total,
        ops_per_s=operations / total if total > 0 else math.nan,
        replayed=report.replayed,
        delivered=report.delivered,
        committed=report.committed,
        failed=report.failed,
        pending_after_flush=report.pending,
        flush_timed_out=report.timed_out,
        sessions_in_order=in_order,
        sessions_committed_once=once,
        bad_payloads=backend.bad_payloads,
        journal_rows_after_close=rows_after,
        correct=correct,
        close=closed,
    )


def run_recovery(row: str, *, sessions: int, turns: int, workers: int) -> RecoveryResult:
    """Process A accepts the operations against a down backend and is killed; this process recovers them."""
    operations = sessions * (turns + 1)
    with fresh_home("recovery") as home:
        child, code = run_child(home, sessions, turns)
        path = home / JOURNAL_FILE
        rows_before = journal_rows(path)
        backend = RecordingBackend()
        gc.collect()
        start = time.perf_counter()
        memory = memcore.Memory(backends=[backend], plugins=[], workers=workers, max_pending=2 * operations + 1000)
        built = time.perf_counter()
        try:
            report = memory.flush(timeout=120.0)
            flushed = time.perf_counter()
        finally:
            closed = close_phase(memory, None)
        rows_after = journal_rows(path)
    return recovery_result(
        row,
        sessions=sessions,
        turns=turns,
        workers=workers,
        backend=backend,
        report=report,
        times=(built - start, 0.0, flushed - built),
        rows_before=rows_before,
        rows_after=rows_after,
        closed=closed,
        child=child,
        child_exit=code,
    )


def run_live_baseline(*, sessions: int, turns: int, workers: int) -> RecoveryResult:
    """The same operations accepted and delivered in one process with the journal on, with no crash: what recovery
    is compared with."""
    operations = sessions * (turns + 1)
    with fresh_home("live") as home:
        backend = RecordingBackend()
        gc.collect()
        start = time.perf_counter()
        memory = memcore.Memory(backends=[backend], plugins=[], workers=workers, max_pending=2 * operations + 1000)
        built = time.perf_counter()
        try:
            lcs = [memory.lifecycle(session_name(i)) for i in range(sessions)]
            for t in range(turns):
                for i, lc in enumerate(lcs):
                    lc.sync_turn(f"{session_name(i)} turn {t}", f"answer {t}")
            for lc in lcs:
                lc.end()
            accepted = time.perf_counter()
            report = memory.flush(timeout=120.0)
            flushed = time.perf_counter()
        finally:
            closed = close_phase(memory, None)
        rows_after = journal_rows(home / JOURNAL_FILE)
    return recovery_result(
        "live, no crash (baseline)",
        sessions=sessions,
        turns=turns,
        workers=workers,
        backend=backend,
        report=report,
        times=(built - start, accepted - built, flushed - accepted),
        rows_before=0,
        rows_after=rows_after,
        closed=closed,
    )


# -- phase 4: the loss window --------------------------------------------------------------------------------------


class Slots(Protocol):
    """Where the loss-window child records acceptances: an ``array("q")``, or a ``memoryview`` of a shared file."""

    def __getitem__(self, index: int, /) -> int: ...
    def __setitem__(self, index: int, value: int, /) -> None: ...


def loss_session(k: int) -> str:
    return f"loss-{k}"


def paced_writer(
    memory: memcore.Memory,
    k: int,
    spec: dict[str, Any],
    record: Slots,
    start: threading.Barrier,
    stop: threading.Event,
) -> None:
    """Thread ``k`` of the loss-window child: one turn to its own session every ``interval`` seconds, each recorded
    (``record[k * slots + i]``: ``time.monotonic_ns()`` once ``sync_turn`` returned) before the next. A thread that
    falls behind starts its next turn at once and does not catch up (an agent does not send missed turns in a burst)."""
    threads, interval, slots = int(spec["threads"]), float(spec["interval"]), int(spec["slots"])
    lc = memory.lifecycle(loss_session(k))
    sid = loss_session(k)
    base = k * slots
    mono_ns = time.monotonic_ns
    mono = time.monotonic
    start.wait()
    due = mono() + k * interval / threads  # the threads' turns are spread over the interval
    for i in range(slots):
        if stop.is_set():
            return
        lc.sync_turn(f"{sid} turn {i}", "answer")
        record[base + i] = mono_ns()
        due += interval
        delay = due - mono()
        if delay > 0:
            time.sleep(delay)
        else:
            due = mono()


def child_loss(spec: dict[str, Any]) -> int:
    """The loss-window child. ``spec["mode"]``: ``"kill"``, write until killed (records in a shared file, which the
    page cache keeps when the process dies; the journal is not touched in any way); ``"latency"``, write for
    ``spec["seconds"]`` with the journal's batch writes timed, then print their figures as one JSON line."""
    threads, slots, kill = int(spec["threads"]), int(spec["slots"]), spec["mode"] == "kill"
    size = threads * slots
    record: Slots
    if kill:
        with open(spec["record"], "w+b") as f:
            f.truncate(size * 8)
            shared = mmap.mmap(f.fileno(), size * 8)
        record = memoryview(shared).cast("q")
    else:
        record = array("q", bytes(size * 8))
    backend = HoldBackend()
    memory = memcore.Memory(
        backends=[backend],
        plugins=[],
        workers=2,
        stall_after=None,  # the held calls start no stand-ins
        journal=spec["journal"],
        durability=spec["durability"],
        max_pending=LOSS_MAX_PENDING,
    )
    journal = memory._journal
    assert journal is not None
    batches: list[tuple[int, int, list[Any]]] = []  # (start, end of the COMMIT, rows) of every batch written
    if not kill:
        write = journal._write

        def timed_write(*args: Any, **kwargs: Any) -> None:
            began = time.monotonic_ns()
            write(*args, **kwargs)
            batches.append((began, time.monotonic_ns(), args[0]))

        setattr(journal, "_write", timed_write)  # noqa: B010 (mypy refuses an assignment to a method)
    start = threading.Barrier(threads + 1)
    stop = threading.Event()
    writers = [
        threading.Thread(
            target=paced_writer, args=(memory, k, spec, record, start, stop), name=f"loss-writer-{k}", daemon=True
        )
        for k in range(threads)
    ]
    for t in writers:
        t.start()
    with GcPauses() as pauses:
        start.wait()
        began = time.monotonic_ns()
        if kill:
            time.sleep(float(spec["warmup"]))
            print(json.dumps({"ready": True, "pid": os.getpid(), "began_ns": began}), flush=True)
            time.sleep(CHILD_TIMEOUT)  # killed long before this
            return 2
        time.sleep(float(spec["seconds"]))
        stop.set()
        for t in writers:
            t.join()
        ended = time.monotonic_ns()
        durable = journal.wait_durable(timeout=CLOSE_TIMEOUT)
    # Each turn is inserted once, in call order within its session: the n-th row of session k is its turn n.
    seen = [0] * threads
    done = array("q", bytes(size * 8))
    for _, end, rows in batches:
        for row in rows:
            k = int(row[3].rpartition("-")[2])
            done[k * slots + seen[k]] = end
            seen[k] += 1
    latencies = []
    for k in range(threads):
        for i in range(slots):
            accepted = record[k * slots + i]
            if not accepted:
                break
            latencies.append(max(0, done[k * slots + i] - accepted) if done[k * slots + i] else -1)
    wal = Path(f"{spec['journal']}-wal")
    out = {
        "durable": durable,
        "seconds": (ended - began) / 1e9,
        "latencies_ns": latencies,
        "writes_ns": [end - begin for begin, end, _ in batches],
        "rows": sum(len(rows) for _, _, rows in batches),
        "gc_ms": [(end - begin) / 1e6 for begin, end, _, _ in pauses.pauses],
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
    }
    print(json.dumps(out), flush=True)
    backend.gate.set()
    memory.close(timeout=CLOSE_TIMEOUT)
    return 0


def start_loss_child(spec: dict[str, Any]) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-loss", json.dumps(spec)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def journal_turns(path: Path, threads: int) -> list[set[int]]:
    """The turns each writer thread of the loss-window child has in the journal at ``path`` (read-only)."""
    kept: list[set[int]] = [set() for _ in range(threads)]
    db = _journal_admin.connect_readonly(path)
    try:
        for sid, payload in db.execute("SELECT session_id, payload FROM ops WHERE kind = 'write'"):
            head, _, number = json.loads(payload)[0]["content"].rpartition(" turn ")
            if head != sid or not sid.startswith("loss-"):
                raise RuntimeError(f"unexpected row in the loss-window journal: {sid!r} {payload!r}")
            kept[int(sid.rpartition("-")[2])].add(int(number))
    finally:
        db.close()
    return kept


def run_loss_kill(run: int, spec: dict[str, Any], delay: float) -> tuple[LossRun, float]:
    """One run: start the child, wait until its writers run, wait ``delay``, SIGKILL it, reap it, compare what it
    recorded as accepted with what the journal holds. Also returns the seconds from the writers' start to the kill."""
    proc = start_loss_child(spec)
    watchdog = threading.Timer(CHILD_TIMEOUT, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        watchdog.cancel()
        info: dict[str, Any] = json.loads(line) if line.strip() else {}
        if not info.get("ready"):
            raise RuntimeError(f"the loss-window child did not start: {line!r}")
        time.sleep(delay)
        killed = time.monotonic_ns()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()  # reaped before the journal is read
        if proc.stdout is not None:
            proc.stdout.close()
    threads, slots = int(spec["threads"]), int(spec["slots"])
    recorded = array("q")
    recorded.frombytes(Path(spec["record"]).read_bytes())
    kept = journal_turns(Path(spec["journal"]), threads)
    lost_at: list[int] = []
    accepted = holes = unrecorded = 0
    saturated = False
    for k in range(threads):
        times = recorded[k * slots : (k + 1) * slots]
        n = next((i for i, t in enumerate(times) if not t), slots)
        saturated |= n == slots
        accepted += n
        lost = [i for i in range(n) if i not in kept[k]]
        lost_at.extend(times[i] for i in lost)
        newest_kept = max(kept[k], default=-1)
        holes += sum(1 for i in lost if i < newest_kept)
        unrecorded += sum(1 for i in kept[k] if i >= n)
    window = max(0, killed - min(lost_at)) if lost_at else 0
    result = LossRun(
        run=run,
        child_pid=proc.pid,
        child_exit=code,
        killed_after_ready_ms=delay * 1000.0,
        accepted=accepted,
        lost=len(lost_at),
        window_ms=window / 1e6,
        holes=holes,
        unrecorded=unrecorded,
        saturated=saturated,
    )
    return result, (killed - int(info["began_ns"])) / 1e9


def loss_spec(config: dict[str, Any], home: Path, durability: str, mode: str) -> dict[str, Any]:
    seconds = config["loss_warmup_s"] + config["loss_spread_s"] if mode == "kill" else config["loss_latency_s"]
    return {
        "mode": mode,
        "durability": durability,
        "journal": str(home / JOURNAL_FILE),
        "record": str(home / "accepted.bin"),
        "threads": config["loss_threads"],
        "interval": config["loss_interval_s"],
        # Room for every turn the threads could write before the kill, and more (a full thread: the run is invalid).
        "slots": math.ceil((seconds + 5.0) / config["loss_interval_s"]),
        "warmup": config["loss_warmup_s"],
        "seconds": config["loss_latency_s"],
    }


@contextmanager
def cpu_hogs(n: int) -> Iterator[None]:
    """``n`` processes that spin on a CPU while the loss-window phase runs (killed and reaped afterwards)."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def run_loss(config: dict[str, Any], durability: str, runs: int, rng: random.Random) -> LossRow:
    details: list[LossRun] = []
    seconds = 0.0
    load_before = os.getloadavg()[0]
    for n in range(runs):
        with fresh_home("loss") as home:
            spec = loss_spec(config, home, durability, "kill")
            run, ran = run_loss_kill(n + 1, spec, rng.uniform(0.0, config["loss_spread_s"]))
        if run.saturated:
            raise RuntimeError(f"loss-window run {n + 1}: a writer thread ran out of record slots before the kill")
        details.append(run)
        seconds += ran
    windows = sorted(int(r.window_ms * 1e6) for r in details)
    accepted = sum(r.accepted for r in details)
    return LossRow(
        row=f'durability="{durability}"',
        durability=durability,
        threads=config["loss_threads"],
        interval_ms=config["loss_interval_s"] * 1000.0,
        cpu_hogs=config["loss_hogs"],
        runs=runs,
        accepted_per_s=accepted / seconds if seconds > 0 else math.nan,
        accepted=accepted,
        lost=sum(r.lost for r in details),
        runs_losing=sum(1 for r in details if r.lost),
        holes=sum(r.holes for r in details),
        window_p50_ms=percentile(windows, 50) / 1000.0,
        window_p90_ms=percentile(windows, 90) / 1000.0,
        window_p99_ms=percentile(windows, 99) / 1000.0,
        window_max_ms=windows[-1] / 1e6,
        window_mean_ms=sum(windows) / len(windows) / 1e6,
        runs_detail=details,
        load_average=(load_before, os.getloadavg()[0]),
    )


def run_durable_latency(config: dict[str, Any]) -> DurableLatency:
    latencies: list[int] = []
    writes: list[int] = []
    gc_ms: list[float] = []
    rows = 0
    seconds = 0.0
    wal_bytes = 0
    runs = config["loss_latency_runs"]
    for _ in range(runs):
        with fresh_home("loss-latency") as home:
            proc = start_loss_child(loss_spec(config, home, "group", "latency"))
            try:
                out, _ = proc.communicate(timeout=CHILD_TIMEOUT)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if not data["durable"] or -1 in data["latencies_ns"]:
            raise RuntimeError("the durable-latency child did not get every turn on disk")
        latencies += data["latencies_ns"]
        writes += data["writes_ns"]
        gc_ms += data["gc_ms"]
        rows += data["rows"]
        seconds += data["seconds"]
        wal_bytes = data["wal_bytes"]
    latencies.sort()
    writes.sort()
    slow = [w for w in writes if w > SLOW_WRITE_MS * 1e6]
    return DurableLatency(
        row='durability="group", append to COMMIT',
        runs=runs,
        seconds_per_run=seconds / runs,
        turns=len(latencies),
        batches=len(writes),
        rows_per_batch=rows / len(writes) if writes else math.nan,
        p50_ms=percentile(latencies, 50) / 1000.0,
        p90_ms=percentile(latencies, 90) / 1000.0,
        p99_ms=percentile(latencies, 99) / 1000.0,
        p999_ms=percentile(latencies, 99.9) / 1000.0,
        max_ms=latencies[-1] / 1e6,
        write_p50_ms=percentile(writes, 50) / 1000.0,
        write_p99_ms=percentile(writes, 99) / 1000.0,
        write_max_ms=writes[-1] / 1e6 if writes else math.nan,
        slow_writes=len(slow),
        slow_writes_ms=sum(slow) / 1e6,
        slow_writes_share=sum(slow) / 1e9 / seconds if seconds > 0 else math.nan,
        gc_longest_ms=max(gc_ms, default=0.0),
        gc_pauses_over_2ms=sum(1 for g in gc_ms if g > 2.0),
        wal_bytes=wal_bytes,
    )


# -- output --------------------------------------------------------------------------------------------------------


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def report_text(res: Results) -> None:
    m = res.machine
    print(
        f"memcore reliability benchmark{' (--quick)' if res.quick else ''}: python {m['python_version']}, "
        f"{m['cpu_count']} cpus, {m['platform']}; backend hooks take {BACKEND_LATENCY * 1000:g} ms; "
        f"timer floor {res.timer_overhead_ns} ns\n"
    )
    if res.latency:
        first = res.latency[0]
        print(
            f"1. sync_turn caller latency (us), journal off vs on, Memory(workers={first.workers}), "
            f"{first.lifecycles} lifecycles in turn, gc on"
        )
        print_table(
            [
                "row",
                "samples",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "p50 vs off",
                "p99 vs off",
                "max vs off",
                "queued ok",
                "durable after",
                "target",
                "result",
            ],
            [
                [
                    r.row,
                    str(r.samples),
                    f"{r.p50_us:.2f}",
                    f"{r.p90_us:.2f}",
                    f"{r.p99_us:.2f}",
                    f"{r.p999_us:.2f}",
                    f"{r.max_us:.1f}",
                    fmt_ratio(r.p50_vs_off),
                    fmt_ratio(r.p99_vs_off),
                    fmt_ratio(r.max_vs_off),
                    "yes" if r.ops_accepted == r.ops_expected else f"{r.ops_accepted}/{r.ops_expected}",
                    "-" if r.durable_after_s is None else f"{r.durable_after_s * 1000:.1f} ms",
                    r.target,
                    verdict(r.passed),
                ]
                for r in res.latency
            ],
        )
        print("   calls over 1 ms, longest gc pause (any thread), slowest calls in ms (of which gc):")
        for lr in res.latency:
            slow = ", ".join(f"{c.us / 1000:.2f} ({c.gc_us / 1000:.1f})" for c in lr.slowest[:3])
            print(
                f"   {lr.row}: {lr.samples_over_1ms} over 1 ms; longest gc {lr.gc_longest_pause_ms:.1f} ms; "
                f"slowest {slow}"
            )
        print()
    if res.throughput:
        print("2. throughput against the 50 ms backend, journal off vs on (limit = W / 0.050 s)")
        print_table(
            [
                "row",
                "sessions",
                "writes",
                "calls",
                "wall s",
                "ideal s",
                "calls/s",
                "limit/s",
                "ratio",
                "on vs off",
                "all arrived",
                "target",
                "result",
            ],
            [
                [
                    r.row,
                    str(r.sessions),
                    str(r.writes),
                    str(sum(r.backend_calls.values())),
                    f"{r.wall_seconds:.2f}",
                    f"{r.ideal_seconds:.2f}",
                    f"{r.calls_per_s:.1f}",
                    f"{r.limit_ops_per_s:.0f}",
                    f"{r.ratio:.3f}",
                    "-" if r.ratio_vs_off is None else f"{r.ratio_vs_off:.3f}",
                    "yes" if r.all_writes_arrived else "NO",
                    r.target,
                    verdict(r.passed),
                ]
                for r in res.throughput
            ],
        )
        means = [
            f"{r.row}: {r.mean_backend_call_ms:.2f} ms" for r in res.throughput if r.mean_backend_call_ms is not None
        ]
        print("   measured mean backend call: " + ", ".join(means) + "\n")
    if res.fast:
        head_fast = res.fast[0]
        print(
            f"2b. information: the journal's CPU cost with a backend that returns at once ({head_fast.sessions} "
            f"sessions x {head_fast.writes // head_fast.sessions} turns, interleaved; sync_turn latency in us)"
        )
        print_table(
            [
                "row",
                "writes",
                "accept s",
                "total s",
                "writes/s",
                "total vs off",
                "p50 us",
                "p99 us",
                "max us",
                "in order",
            ],
            [
                [
                    r.row,
                    str(r.writes),
                    f"{r.accept_seconds:.3f}",
                    f"{r.total_seconds:.3f}",
                    f"{r.writes_per_s:.0f}",
                    fmt_ratio(r.total_vs_off),
                    f"{r.p50_us:.2f}",
                    f"{r.p99_us:.2f}",
                    f"{r.max_us:.1f}",
                    "yes" if r.in_order else "NO",
                ]
                for r in res.fast
            ],
        )
    if res.recovery:
        head = res.recovery[0]
        print(
            f"3. recovery of {head.operations} journaled operations ({head.sessions} sessions x "
            f"{head.turns_per_session} turns + 1 commit each) after SIGKILL, into a fast in-memory backend"
        )
        for r in res.recovery:
            if r.crashed and r.child_durable_seconds is not None:
                print(
                    f"   {r.row}: process A (pid {r.child_pid}) accepted them in {r.child_accept_seconds:.3f} s, "
                    f"on disk {r.child_durable_seconds * 1000:.1f} ms later, {r.child_backend_attempts} failed "
                    f"attempts on the down backend; exit {r.child_exit}; {r.journal_rows_before} rows in the journal"
                )
        print()
        print_table(
            [
                "row",
                "workers",
                "ops",
                "Memory() s",
                "accept s",
                "flush s",
                "total s",
                "ops/s",
                "replayed",
                "delivered",
                "committed",
                "in order",
                "commit once",
                "rows left",
                "close ms",
                "result",
            ],
            [
                [
                    r.row,
                    str(r.workers),
                    str(r.operations),
                    f"{r.construct_seconds:.3f}",
                    f"{r.accept_seconds:.3f}" if not r.crashed else "-",
                    f"{r.flush_seconds:.3f}",
                    f"{r.total_seconds:.3f}",
                    f"{r.ops_per_s:.0f}",
                    str(r.replayed),
                    str(r.delivered),
                    str(r.committed),
                    f"{r.sessions_in_order}/{r.sessions}",
                    f"{r.sessions_committed_once}/{r.sessions}",
                    str(r.journal_rows_after_close),
                    "-" if r.close is None else f"{r.close.seconds * 1000:.1f}",
                    "correct" if r.correct else "WRONG",
                ]
                for r in res.recovery
            ],
        )
        if res.recovery_median_seconds is not None and res.recovery_median_ops_per_s is not None:
            print(
                f"   recovery (median of the SIGKILL runs): {res.recovery_median_seconds:.3f} s, "
                f"{res.recovery_median_ops_per_s:.0f} ops/s; expected well under {RECOVERY_EXPECTED_S:g} s "
                f"(no target): {'info: ok' if res.recovery_within_expected else 'info: over'}\n"
            )
    if res.loss:
        report_loss(res)
    print_targets(res.targets)
    passed = sum(1 for t in res.targets if t.passed)
    print(f"{passed}/{len(res.targets)} targets passed; total {res.total_seconds:.1f} s")


def report_loss(res: Results) -> None:
    head = res.loss[0]
    print(
        f"4. the loss window: SIGKILL at a random moment while {head.threads} threads each write 1 turn every "
        f"{head.interval_ms:g} ms (a thread that falls behind does not catch up) beside {head.cpu_hogs} busy CPU "
        "process(es), against a backend that never answers; lost = accepted (sync_turn returned) and not in the "
        "journal; window = the kill - the oldest lost acceptance (ms)"
    )
    print_table(
        [
            "row",
            "runs",
            "turns/s",
            "accepted",
            "lost",
            "runs losing",
            "holes",
            "p50",
            "p90",
            "p99",
            "max",
            "mean",
            "target",
            "result",
        ],
        [
            [
                r.row,
                str(r.runs),
                f"{r.accepted_per_s:.0f}",
                str(r.accepted),
                str(r.lost),
                str(r.runs_losing),
                str(r.holes),
                f"{r.window_p50_ms:.3f}",
                f"{r.window_p90_ms:.3f}",
                f"{r.window_p99_ms:.3f}",
                f"{r.window_max_ms:.3f}",
                f"{r.window_mean_ms:.3f}",
                r.target,
                verdict(r.passed),
            ]
            for r in res.loss
        ],
    )
    loads = ", ".join(f"{r.row} {r.load_average[0]:.2f} -> {r.load_average[1]:.2f}" for r in res.loss)
    print(f"   the machine's 1-minute load average (the hog and the child count in it): {loads}")
    few = [r.row for r in res.loss if r.runs < 100]
    if few:
        print(f"   with fewer than 100 runs the p99 is the max ({', '.join(few)})")
    if res.quick:
        print(f"   quick run: the window p99 is information (a few runs), not the {LOSS_WINDOW_P99_MS:g} ms target")
    for d in res.durable_latency:
        print(
            f"\n4b. information: every turn from acceptance to the end of its batch's COMMIT, same load, "
            f"{d.runs} run(s) of {d.seconds_per_run:.1f} s, not killed (a bound on the window from above; ms)"
        )
        print_table(
            ["row", "turns", "batches", "rows/batch", "p50", "p90", "p99", "p99.9", "max"],
            [
                [
                    d.row,
                    str(d.turns),
                    str(d.batches),
                    f"{d.rows_per_batch:.2f}",
                    f"{d.p50_ms:.3f}",
                    f"{d.p90_ms:.3f}",
                    f"{d.p99_ms:.3f}",
                    f"{d.p999_ms:.3f}",
                    f"{d.max_ms:.3f}",
                ]
                for d in [d]
            ],
        )
        print(
            f"   one batch (BEGIN ... COMMIT, WAL auto-checkpoints included): p50 {d.write_p50_ms:.3f} ms, p99 "
            f"{d.write_p99_ms:.3f} ms, max {d.write_max_ms:.1f} ms; {d.slow_writes} over {SLOW_WRITE_MS:g} ms, "
            f"{d.slow_writes_ms:.0f} ms in all ({d.slow_writes_share * 100:.1f} % of the time); longest gc pause "
            f"{d.gc_longest_ms:.1f} ms ({d.gc_pauses_over_2ms} over 2 ms); -wal file {d.wal_bytes / 1e6:.1f} MB\n"
        )


def compare(res: Results) -> None:
    """Fill in the on-vs-off ratios and the verdicts of the rows that carry a target."""
    off = next((r for r in res.latency if not r.journal), None)
    for r in res.latency:
        if off is not None and r is not off:
            r.p50_vs_off = ratio(r.p50_us, off.p50_us)
            r.p99_vs_off = ratio(r.p99_us, off.p99_us)
            r.max_vs_off = ratio(r.max_us, off.max_us)
        if r.journal and r.durability == "group":
            r.target = f"p50 <= {JOURNAL_SYNC_TURN_P50_US:g} us"
            r.passed = r.p50_us <= JOURNAL_SYNC_TURN_P50_US and r.ops_accepted == r.ops_expected
    for fr in res.fast:
        base_fast = next((o for o in res.fast if o.workers == fr.workers and not o.journal), None)
        if fr.journal and base_fast is not None:
            fr.total_vs_off = ratio(fr.total_seconds, base_fast.total_seconds)
    for tp in res.throughput:
        base = next((o for o in res.throughput if o.workers == tp.workers and not o.journal), None)
        if tp.journal:
            tp.ratio_vs_off = None if base is None else ratio(tp.ratio, base.ratio)
            tp.target = f">= {THROUGHPUT_RATIO}"
            tp.passed = tp.ratio >= THROUGHPUT_RATIO and tp.all_writes_arrived
    for lr in res.loss:
        if lr.durability == "sync":
            lr.target = "loses none"
            lr.passed = lr.lost == 0 and lr.holes == 0
        elif not res.quick:
            lr.target = f"p99 <= {LOSS_WINDOW_P99_MS:g} ms"
            lr.passed = lr.window_p99_ms <= LOSS_WINDOW_P99_MS and lr.holes == 0


def collect_targets(res: Results) -> list[Target]:
    out: list[Target] = []
    for r in res.latency:
        if r.passed is not None:
            out.append(Target(f"sync_turn {r.row}", "p50_us", r.p50_us, "us", "<=", JOURNAL_SYNC_TURN_P50_US, r.passed))
    for tp in res.throughput:
        if tp.passed is not None:
            out.append(Target(f"throughput {tp.row}", "ratio", tp.ratio, "x limit", ">=", THROUGHPUT_RATIO, tp.passed))
    for rec in res.recovery:
        wrong = (rec.sessions - rec.sessions_in_order) + (rec.sessions - rec.sessions_committed_once)
        wrong += rec.journal_rows_after_close + rec.bad_payloads
        if not rec.correct:
            wrong = max(wrong, 1)  # a count that did not add up (replayed, delivered, committed, failed, pending)
        out.append(Target(f"recovery {rec.row}", "violations", wrong, "", "<=", 0, rec.correct))
    for lr in res.loss:
        label = f"loss window {lr.row}"
        if lr.durability == "sync":
            out.append(Target(label, "lost", lr.lost, "turns", "<=", 0, lr.lost == 0))
        elif lr.passed is not None:
            out.append(
                Target(
                    label,
                    "p99_ms",
                    lr.window_p99_ms,
                    "ms",
                    "<=",
                    LOSS_WINDOW_P99_MS,
                    lr.window_p99_ms <= LOSS_WINDOW_P99_MS,
                )
            )
        out.append(Target(f"{label}, newest lost only", "holes", lr.holes, "", "<=", 0, lr.holes == 0))
    return out


# -- main ----------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples and shorter throughput runs (~20 s)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write the JSON (default {DEFAULT_JSON})"
    )
    parser.add_argument("--workers", type=int, default=8, help="lane workers for the latency phase")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target failed")
    # Process A of the recovery phase (internal): HOME SESSIONS TURNS.
    parser.add_argument("--child-writer", nargs=3, metavar=("HOME", "SESSIONS", "TURNS"), help=argparse.SUPPRESS)
    # The loss-window phase's child (internal): its spec as JSON.
    parser.add_argument("--child-loss", metavar="SPEC", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_writer:
        home, sessions, turns = args.child_writer
        return child_writer(home, int(sessions), int(turns))
    if args.child_loss:
        return child_loss(json.loads(args.child_loss))
    quick: bool = args.quick
    workers: int = args.workers
    config: dict[str, Any] = {
        "backend_latency_s": BACKEND_LATENCY,
        "workers": workers,
        "latency_samples": 5_000 if quick else 20_000,
        "latency_warmup": 1_000 if quick else 2_000,
        "sync_samples": 200 if quick else 500,
        "sync_warmup": 20 if quick else 50,
        "latency_lifecycles": 100,
        "throughput_workers": [8, 1],
        "throughput_seconds": 2.0 if quick else 6.0,
        "throughput_sessions_per_worker": 8,
        "fast_workers": 4,
        "fast_sessions": 100,
        "fast_turns": 100 if quick else 200,
        "recovery_sessions": 100,
        "recovery_turns": 100,
        "recovery_workers": 4,
        "recovery_runs": 1 if quick else 3,
        "loss_threads": 4,
        "loss_interval_s": 0.001,
        "loss_hogs": 1,
        "loss_warmup_s": 0.1,
        "loss_spread_s": 0.4,
        "loss_runs_group": 6 if quick else 100,
        "loss_runs_sync": 3 if quick else 20,
        "loss_latency_runs": 1 if quick else 3,
        "loss_latency_s": 1.5 if quick else 3.0,
        "loss_seed": 12,
    }
    res = Results(
        quick=quick,
        config=config,
        timer_overhead_ns=timer_overhead_ns(),
    )
    begin = time.perf_counter()

    progress = progress_printer(begin)

    variants = (
        ("journal off", False, "group", "latency_samples", "latency_warmup"),
        ("journal on, group", True, "group", "latency_samples", "latency_warmup"),
        ("journal on, sync", True, "sync", "sync_samples", "sync_warmup"),
    )
    for row, journal, durability, samples_key, warmup_key in variants:
        progress(f"latency: sync_turn, {row}")
        res.latency.append(
            run_latency(
                row,
                journal=journal,
                durability=durability,
                samples=config[samples_key],
                warmup=config[warmup_key],
                lifecycles=config["latency_lifecycles"],
                workers=workers,
            )
        )
    for w in config["throughput_workers"]:
        for journal in (False, True):
            progress(f"throughput: W={w}, journal {'on' if journal else 'off'}")
            res.throughput.append(
                run_throughput(
                    workers=w,
                    journal=journal,
                    seconds=config["throughput_seconds"],
                    sessions_per_worker=config["throughput_sessions_per_worker"],
                )
            )
    for journal in (False, True):
        progress(
            f"journal cost, backend returning at once: W={config['fast_workers']}, journal {'on' if journal else 'off'}"
        )
        res.fast.append(
            run_fast(
                workers=config["fast_workers"],
                journal=journal,
                sessions=config["fast_sessions"],
                turns=config["fast_turns"],
            )
        )
    rec_args = {
        "sessions": config["recovery_sessions"],
        "turns": config["recovery_turns"],
        "workers": config["recovery_workers"],
    }
    for n in range(config["recovery_runs"]):
        progress(f"recovery: run {n + 1}, {rec_args['sessions']} sessions x {rec_args['turns']} turns, SIGKILL")
        res.recovery.append(run_recovery(f"SIGKILL run {n + 1}", **rec_args))
    progress("recovery: live baseline")
    res.recovery.append(run_live_baseline(**rec_args))
    crashed = sorted(r.total_seconds for r in res.recovery if r.crashed)
    if crashed:
        res.recovery_median_seconds = statistics.median(crashed)
        res.recovery_median_ops_per_s = statistics.median(r.ops_per_s for r in res.recovery if r.crashed)
        res.recovery_within_expected = res.recovery_median_seconds <= RECOVERY_EXPECTED_S
    rng = random.Random(config["loss_seed"])
    load = (
        f"{config['loss_threads']} threads x 1 turn / {config['loss_interval_s'] * 1000:g} ms, "
        f"{config['loss_hogs']} CPU hog(s)"
    )
    with cpu_hogs(config["loss_hogs"]):
        for durability, key in (("group", "loss_runs_group"), ("sync", "loss_runs_sync")):
            progress(f"loss window: {config[key]} SIGKILL runs, durability={durability}, {load}")
            res.loss.append(run_loss(config, durability, config[key], rng))
        progress(f"loss window: append to COMMIT, {config['loss_latency_runs']} x {config['loss_latency_s']:g} s")
        res.durable_latency.append(run_durable_latency(config))
    res.total_seconds = time.perf_counter() - begin
    compare(res)
    res.targets = collect_targets(res)
    res.all_passed = all(t.passed for t in res.targets)

    report_text(res)
    write_json(res, args.json)
    return 1 if args.check and not res.all_passed else 0


if __name__ == "__main__":
    sys.exit(main())

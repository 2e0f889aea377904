"""Lifecycle benchmark: what the agent's thread pays, how many threads memcore uses, how close the lanes get to the
backend's limit, and what 10,000 live sessions cost.

Runs against :class:`SlowBackend`, an in-benchmark backend whose hooks each take 50 ms (a wait on a
:class:`threading.Event`, so teardown cuts every sleep short). Four phases, each on its own
``memcore.Memory(backends=[SlowBackend()], workers=W, plugins=[])``, closed at the end of the phase:

1. caller-side latency of ``sync_turn``, ``switch`` and ``end`` (G5), gc on (targets) and gc off (information);
2. threads with 1,000 sessions x 10 turns pending (G8);
3. throughput of the lane workers against the 50 ms backend, as a fraction of the limit ``W / 0.050 s``;
4. scale: 10,000 live lifecycles on one Memory, each written, delivered and committed, then kept: memory per idle
   session (tracemalloc, and RSS as information), ``sync_turn`` latency over them, threads. It runs in a child
   process (``--scale-child``), so its RSS baseline and heap are a fresh interpreter's.

Usage::

    python benchmarks/lifecycle.py [--quick] [--tiny] [--json PATH] [--check]

A quick run writes its JSON to ``benchmarks/results/quick/`` unless ``--json`` names another file, and never to the
tracked ``benchmarks/results/lifecycle.json`` (``_common.json_path``).

See ``benchmarks/README.md`` for what every row means.
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    BACKEND_LATENCY,
    CLOSE_TIMEOUT,
    BenchResults,
    PhaseClose,
    SlowBackend,
    Target,
    close_phase,
    fmt,
    gc_counts,
    gc_state,
    json_path,
    percentile,
    print_table,
    print_targets,
    progress_printer,
    timer_overhead_ns,
    verdict,
    write_json,
)

import memcore

#: Where a full run's JSON goes unless ``--json`` says otherwise (a quick run's: ``results/quick/lifecycle.json``).
DEFAULT_JSON = json_path("lifecycle", None, quick=False)
USER_TEXT = "user text"
ASSISTANT_TEXT = "assistant text"
ROTATING_REASONS = ("new", "branch", "resume", "compress")
#: Sleep before each timed call in the paced latency rows (seconds).
PACED_GAP = 0.001

# Targets.
SYNC_TURN_P50_US = 5.0
SWITCH_P99_US = 50.0
END_P99_US = 50.0
#: Threads beyond the pool (lane + recall workers): the main thread, the journal writer and its checkpointer.
THREADS_OVER_POOL = 3
THROUGHPUT_RATIO = 0.95
#: Scale phase: memory per idle session (bytes, tracemalloc) and ``sync_turn`` latency with every session live.
SCALE_BYTES_PER_SESSION = 2048.0
SCALE_SYNC_TURN_P50_US = SYNC_TURN_P50_US
SCALE_SYNC_TURN_P99_US = 50.0
#: In a quick run these figures are information, not targets: a p99 of a few thousand samples on a busy 2-core CI
#: runner mostly measures the neighbours (quick switch p99 was 50.6 to 56 us in CI against 13 us in a full run).
QUICK_INFO_FIGURES = frozenset({"p99_us"})
#: Frames kept per allocation when the scale phase traces memory (enough to reach memcore's frame from attrs' and
#: threading's).
TRACE_FRAMES = 12
#: Sites listed in the scale phase's "held by" table.
HELD_BY_TOP = 12


# -- results -------------------------------------------------------------------------------------------------------


@dataclass
class LatencyRow:
    row: str
    operation: str
    gc_enabled: bool
    gap_s: float  # sleep before each timed call (0: back to back)
    workers: int
    recall_workers: int
    lifecycles: int
    warmup: int
    samples: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    ops_expected: int  # writes + commits the loop should have queued (warm-up included)
    ops_accepted: int  # delivered + committed + failed + pending, right after the loop
    pending_after: int
    gc_collections: list[int]  # per generation, during the measured loop
    target: str
    within_target: bool  # whether the figure meets the target, information rows included
    passed: bool | None  # None for information rows (gc off, paced)
    close: PhaseClose | None = None


@dataclass
class ThreadsResult:
    workers: int
    recall_workers: int
    pool_size: int
    sessions: int
    turns_per_session: int
    prefetches: int
    baseline_threads: int
    active_threads: int  # the most seen while the work was pending
    memcore_threads: int
    other_threads: int
    thread_names: list[str]
    pending_when_counted: int
    enqueue_seconds: float
    limit: int
    passed: bool
    close: PhaseClose | None = None


@dataclass
class ThroughputRow:
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
    ratio: float  # backend calls per second / limit: how busy the workers kept the backend
    writes_per_s: float
    writes_ratio: float  # writes only / limit (each session's open_session is a 50 ms call too)
    ideal_seconds: float  # backend calls x measured mean call time / W
    mean_backend_call_ms: float | None
    all_writes_arrived: bool
    passed: bool
    close: PhaseClose | None = None


@dataclass
class HeldBy:
    """Memory the scale phase's sessions hold, by the line that allocated it (tracemalloc)."""

    site: str  # file:line of the innermost memcore frame (else the benchmark's, else the innermost frame)
    code: str  # that line
    bytes_per_session: float
    blocks_per_session: float


@dataclass
class ScaleResult:
    sessions: int
    workers: int
    recall_workers: int
    pool_size: int
    warmup_sessions: int
    setup_seconds: float  # writing, delivering and committing the sessions (backend hooks cut short)
    setup_delivered: int
    setup_committed: int
    setup_pending: int  # still pending after the setup (should be 0: every session is idle)
    journal_caught_up: bool  # Journal.wait_durable returned within DURABLE_WAIT after the setup
    # memory per idle session
    memory_method: str
    traced_bytes: int  # tracemalloc: what the sessions left allocated (after - before, gc collected)
    traced_blocks: int
    bytes_per_session: float  # the target figure
    rss_method: str
    rss_bytes: int | None  # RSS after - before, in the untraced Memory (information)
    rss_bytes_per_session: float | None
    held_by: list[HeldBy]
    objects_per_session: dict[str, float]  # gc-tracked objects that appeared, by type, per session
    memory_limit: float
    memory_passed: bool
    # sync_turn with every session live
    samples: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    gc_collections: list[int]
    ops_expected: int
    ops_accepted: int
    p50_passed: bool
    p99_within: bool
    p99_passed: bool | None  # None in a quick run: the p99 is information there
    # threads
    baseline_threads: int
    active_threads: int
    memcore_threads: int
    thread_names: list[str]
    threads_limit: int
    threads_passed: bool
    close: PhaseClose | None = None
    traced_close: PhaseClose | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScaleResult:
        data = dict(data)
        data["held_by"] = [HeldBy(**h) for h in data["held_by"]]
        for key in ("close", "traced_close"):
            if data.get(key) is not None:
                data[key] = PhaseClose(**data[key])
        return cls(**data)


@dataclass
class Results(BenchResults):
    benchmark: str = "lifecycle"
    timer_overhead_ns: int = 0
    latency: list[LatencyRow] = field(default_factory=list)
    threads: ThreadsResult | None = None
    throughput: list[ThroughputRow] = field(default_factory=list)
    scale: ScaleResult | None = None
    quick_info_only: list[str] = field(default_factory=list)  # figures that are information, not targets, here
    targets: list[Target] = field(default_factory=list)
    all_passed: bool = False


# -- helpers -------------------------------------------------------------------------------------------------------


@contextmanager
def slow_memory(workers: int, recall_workers: int, max_pending: int) -> Iterator[tuple[memcore.Memory, SlowBackend]]:
    """A Memory on a fresh SlowBackend. On the way out the backend's sleeps are cut short, then the Memory closed."""
    backend = SlowBackend()
    memory = memcore.Memory(
        backends=[backend], workers=workers, recall_workers=recall_workers, plugins=[], max_pending=max_pending
    )
    try:
        yield memory, backend
    finally:
        backend.stop.set()
        memory.close(timeout=CLOSE_TIMEOUT)


# -- phase 1: caller-side latency ----------------------------------------------------------------------------------

LatencyLoop = Callable[[memcore.Memory, int, int, str, float], tuple[list[int], int]]


def loop_sync_turn(memory: memcore.Memory, n: int, lifecycles: int, tag: str, gap: float) -> tuple[list[int], int]:
    """Time ``sync_turn`` on ``lifecycles`` lifecycles in turn, sleeping ``gap`` seconds before each call if ``gap``.
    Returns the samples and the number of operations queued."""
    lcs = [memory.lifecycle(f"{tag}-turn-{i}") for i in range(lifecycles)]
    samples = [0] * n
    pc = time.perf_counter_ns
    sleep = time.sleep
    for i in range(n):
        lc = lcs[i % lifecycles]
        if gap:
            sleep(gap)
        t0 = pc()
        lc.sync_turn(USER_TEXT, ASSISTANT_TEXT)
        t1 = pc()
        samples[i] = t1 - t0
    return samples, n


def loop_switch(memory: memcore.Memory, n: int, lifecycles: int, tag: str, gap: float) -> tuple[list[int], int]:
    """Time ``switch`` to a fresh id, reasons new/branch/resume/compress in turn, after an untimed ``sync_turn`` so
    that every switch really queues a commit of the session it leaves."""
    lcs = [memory.lifecycle(f"{tag}-switch-{i}-0") for i in range(lifecycles)]
    ids = [f"{tag}-switch-{i % lifecycles}-{i + 1}" for i in range(n)]
    samples = [0] * n
    pc = time.perf_counter_ns
    sleep = time.sleep
    reasons = ROTATING_REASONS
    for i in range(n):
        lc = lcs[i % lifecycles]
        lc.sync_turn(USER_TEXT, ASSISTANT_TEXT)
        new_id = ids[i]
        reason = reasons[i % 4]
        if gap:
            sleep(gap)
        t0 = pc()
        lc.switch(new_id, reason=reason)
        t1 = pc()
        samples[i] = t1 - t0
    return samples, 2 * n  # one write and one commit each


def loop_end(memory: memcore.Memory, n: int, lifecycles: int, tag: str, gap: float) -> tuple[list[int], int]:
    """Time ``end`` after an untimed ``sync_turn`` (so the session is dirty and a commit is really queued)."""
    lcs = [memory.lifecycle(f"{tag}-end-{i}") for i in range(lifecycles)]
    samples = [0] * n
    pc = time.perf_counter_ns
    sleep = time.sleep
    for i in range(n):
        lc = lcs[i % lifecycles]
        lc.sync_turn(USER_TEXT, ASSISTANT_TEXT)
        if gap:
            sleep(gap)
        t0 = pc()
        lc.end()
        t1 = pc()
        samples[i] = t1 - t0
    return samples, 2 * n


def loop_sync_turn_user(memory: memcore.Memory, n: int, lifecycles: int, tag: str, gap: float) -> tuple[list[int], int]:
    """``loop_sync_turn`` in conversations of named users (issue 13: the user must not cost the hot path)."""
    lcs = [memory.lifecycle(f"{tag}-turn-{i}", user_id=f"user-{i}") for i in range(lifecycles)]
    samples = [0] * n
    pc = time.perf_counter_ns
    sleep = time.sleep
    for i in range(n):
        lc = lcs[i % lifecycles]
        if gap:
            sleep(gap)
        t0 = pc()
        lc.sync_turn(USER_TEXT, ASSISTANT_TEXT)
        t1 = pc()
        samples[i] = t1 - t0
    return samples, n


LOOPS: dict[str, LatencyLoop] = {
    "sync_turn": loop_sync_turn,
    "sync_turn_user": loop_sync_turn_user,
    "switch": loop_switch,
    "end": loop_end,
}
LATENCY_TARGETS: dict[str, tuple[str, float]] = {
    "sync_turn": ("p50_us", SYNC_TURN_P50_US),
    "sync_turn_user": ("p50_us", SYNC_TURN_P50_US),
    "switch": ("p99_us", SWITCH_P99_US),
    "end": ("p99_us", END_P99_US),
}


def run_latency(
    operation: str,
    *,
    samples: int,
    warmup: int,
    lifecycles: int,
    workers: int,
    recall_workers: int,
    gc_on: bool,
    gap: float = 0.0,
    quick: bool = False,
) -> LatencyRow:
    """One latency row. Only the back-to-back, gc-on rows are held to the targets (in a quick run, not their p99:
    :data:`QUICK_INFO_FIGURES`); the others are information."""
    loop = LOOPS[operation]
    with slow_memory(workers, recall_workers, max_pending=10 * (samples + warmup) + 1000) as (memory, backend):
        with gc_state(gc_on):
            _, warm_ops = loop(memory, warmup, lifecycles, "warm", 0.0)
            before = gc_counts()
            raw, ops = loop(memory, samples, lifecycles, "run", gap)
            after = gc_counts()
        report = memory.flush(timeout=0)
        closed = close_phase(memory, backend)
    ordered = sorted(raw)
    paced = f", paced {gap * 1000:g} ms" if gap else ""
    row_name = f"{operation} ({'gc on' if gc_on else 'gc off'}{paced})"
    figure, limit = LATENCY_TARGETS[operation]
    gated = gc_on and not gap and not (quick and figure in QUICK_INFO_FIGURES)
    row = LatencyRow(
        row=row_name,
        operation=operation,
        gc_enabled=gc_on,
        gap_s=gap,
        workers=workers,
        recall_workers=recall_workers,
        lifecycles=lifecycles,
        warmup=warmup,
        samples=samples,
        p50_us=percentile(ordered, 50),
        p90_us=percentile(ordered, 90),
        p99_us=percentile(ordered, 99),
        p999_us=percentile(ordered, 99.9),
        max_us=ordered[-1] / 1000.0,
        mean_us=sum(ordered) / len(ordered) / 1000.0,
        ops_expected=warm_ops + ops,
        ops_accepted=report.delivered + report.committed + report.failed + report.pending,
        pending_after=report.pending,
        gc_collections=[a - b for a, b in zip(after, before, strict=True)],
        target=f"{figure.removesuffix('_us')} <= {limit:g} us",
        within_target=False,
        passed=None,
        close=closed,
    )
    row.within_target = getattr(row, figure) <= limit
    if gated:
        row.passed = row.within_target
    return row


# -- phase 2: threads ----------------------------------------------------------------------------------------------


def run_threads(*, sessions: int, turns: int, prefetches: int, workers: int, recall_workers: int) -> ThreadsResult:
    baseline = threading.active_count()
    pool = workers + recall_workers
    with slow_memory(workers, recall_workers, max_pending=sessions * turns * 2 + 1000) as (memory, backend):
        start = time.perf_counter()
        lcs = [memory.lifecycle(f"threads-{i}") for i in range(sessions)]
        for _ in range(turns):
            for lc in lcs:
                lc.sync_turn(USER_TEXT, ASSISTANT_TEXT)
        for lc in lcs[:prefetches]:
            lc.queue_prefetch("coffee?")
        enqueue_seconds = time.perf_counter() - start
        active = 0
        names: list[str] = []
        for _ in range(20):  # keep the most seen over ~0.5 s of backlog
            count = threading.active_count()
            if count >= active:
                active, names = count, sorted(t.name for t in threading.enumerate())
            time.sleep(0.025)
        pending = memory.flush(timeout=0).pending
        closed = close_phase(memory, backend)
    ours = sum(1 for n in names if n.startswith("memcore-"))
    return ThreadsResult(
        workers=workers,
        recall_workers=recall_workers,
        pool_size=pool,
        sessions=sessions,
        turns_per_session=turns,
        prefetches=prefetches,
        baseline_threads=baseline,
        active_threads=active,
        memcore_threads=ours,
        other_threads=active - ours,
        thread_names=names,
        pending_when_counted=pending,
        enqueue_seconds=enqueue_seconds,
        limit=pool + THREADS_OVER_POOL,
        passed=active <= pool + THREADS_OVER_POOL,
        close=closed,
    )


# -- phase 3: throughput -------------------------------------------------------------------------------------------


def run_throughput(*, workers: int, seconds: float, sessions_per_worker: int) -> ThroughputRow:
    limit = workers / BACKEND_LATENCY
    sessions = sessions_per_worker * workers
    per_session = max(1, math.ceil(seconds * limit / sessions))
    writes = sessions * per_session
    with slow_memory(workers, 2, max_pending=writes * 2 + 1000) as (memory, backend):
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
        closed = close_phase(memory, backend)
    backend_calls = calls["write"] + calls["open_session"] + calls["commit"]
    calls_per_s = backend_calls / wall
    ratio = calls_per_s / limit
    return ThroughputRow(
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
        ratio=ratio,
        writes_per_s=writes / wall,
        writes_ratio=writes / wall / limit,
        ideal_seconds=backend_calls * (mean_call or BACKEND_LATENCY) / workers,
        mean_backend_call_ms=None if mean_call is None else mean_call * 1000.0,
        all_writes_arrived=calls["write"] == writes and report.delivered == writes,
        passed=ratio >= THROUGHPUT_RATIO and calls["write"] == writes and not report.timed_out,
        close=closed,
    )


# -- phase 4: scale ------------------------------------------------------------------------------------------------

MEMCORE_DIR = str(Path(memcore.__file__).resolve().parent) + os.sep
THIS_FILE = str(Path(__file__).resolve())


def rss_bytes() -> int | None:
    """The resident set size of this process now (Linux ``/proc/self/statm``), or None where there is none."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


#: How long the scale phase waits for the journal writer to catch up after its setup (seconds).
DURABLE_WAIT = 1.0


def wait_durable(memory: memcore.Memory) -> bool:
    """Let the journal writer catch up (its buffers are part of what an idle session costs only while it is behind).
    Bounded: ``Journal.wait_durable`` never returns when the last operations were acknowledged before the writer took
    them (the ack drops the buffered insert, and nothing is left to write), which the instant setup backend does."""
    journal = getattr(memory, "_journal", None)
    if journal is None:
        return True
    return bool(journal.wait_durable(timeout=DURABLE_WAIT))


def populate(memory: memcore.Memory, lcs: list[memcore.SessionLifecycle | None], tag: str) -> bool:
    """Fill ``lcs`` (preallocated, so that its growth is not counted) with lifecycles, each written once, delivered,
    then committed: every session ends idle, its lifecycle kept alive. Returns whether the journal caught up."""
    for i in range(len(lcs)):
        lc = memory.lifecycle(f"{tag}-{i:06d}")
        lc.sync_turn(USER_TEXT, ASSISTANT_TEXT)
        lcs[i] = lc
    memory.flush(timeout=CLOSE_TIMEOUT)
    for kept in lcs:
        assert kept is not None
        kept.end()
    memory.flush(timeout=CLOSE_TIMEOUT)
    return wait_durable(memory)


def type_counts() -> Counter[str]:
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def site_of(traceback: tracemalloc.Traceback) -> tuple[str, str]:
    """The line an allocation is charged to: the innermost frame in memcore, else in this script, else the innermost."""
    frames = list(traceback)  # oldest first
    chosen = frames[-1]
    for frame in reversed(frames):
        if frame.filename.startswith(MEMCORE_DIR):
            chosen = frame
            break
    else:
        for frame in reversed(frames):
            if frame.filename == THIS_FILE:
                chosen = frame
                break
    name = chosen.filename
    if name.startswith(MEMCORE_DIR):
        label = "memcore/" + name[len(MEMCORE_DIR) :]
    elif name == THIS_FILE:
        label = "benchmarks/lifecycle.py"
    else:
        label = Path(name).name
    return f"{label}:{chosen.lineno}", linecache.getline(name, chosen.lineno).strip()


def held_by(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, sessions: int, top: int
) -> tuple[int, int, list[HeldBy]]:
    """Total bytes and blocks that appeared between the snapshots, and the ``top`` lines holding most of them."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, linecache.__file__)]
    diffs = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback")
    sites: dict[tuple[str, str], list[int]] = {}
    total = blocks = 0
    for d in diffs:
        total += d.size_diff
        blocks += d.count_diff
        slot = sites.setdefault(site_of(d.traceback), [0, 0])
        slot[0] += d.size_diff
        slot[1] += d.count_diff
    ranked = sorted(sites.items(), key=lambda kv: -kv[1][0])[:top]
    rows = [HeldBy(site, code, size / sessions, count / sessions) for (site, code), (size, count) in ranked]
    return total, blocks, rows


def run_scale(
    *, sessions: int, samples: int, warmup_sessions: int, workers: int, recall_workers: int, quick: bool
) -> ScaleResult:
    """Phase 4, in a child process. First an untraced Memory: RSS before and after ``sessions`` idle sessions, then
    ``sync_turn`` over all of them against the 50 ms backend, with the threads counted meanwhile. Then a second,
    traced Memory with the same sessions: what they hold, by the line that allocated it."""
    baseline_threads = threading.active_count()
    pool = workers + recall_workers
    max_pending = 4 * (sessions + warmup_sessions + samples) + 1000

    # Untraced: RSS, latency, threads.
    backend = SlowBackend()
    backend.stop.set()  # hooks return at once while the sessions are set up
    memory = memcore.Memory(
        backends=[backend], workers=workers, recall_workers=recall_workers, plugins=[], max_pending=max_pending
    )
    warm: list[memcore.SessionLifecycle | None] = [None] * warmup_sessions
    populate(memory, warm, "scale-warm")
    lcs: list[memcore.SessionLifecycle | None] = [None] * sessions
    gc.collect()
    rss_before = rss_bytes()
    start = time.perf_counter()
    durable = populate(memory, lcs, "scale")
    setup_seconds = time.perf_counter() - start
    gc.collect()
    rss_after = rss_bytes()
    setup = memory.flush(timeout=0)
    live = [lc for lc in lcs if lc is not None]
    backend.stop.clear()  # 50 ms again: the workers sleep in the backend as in phase 1
    warm_live = [lc for lc in warm if lc is not None]
    warm_calls = 10 * warmup_sessions
    for i in range(warm_calls):  # warm-up on the warm-up sessions, so the measured sessions all stay idle until timed
        warm_live[i % warmup_sessions].sync_turn(USER_TEXT, ASSISTANT_TEXT)
    raw = [0] * samples
    active, names = 0, [""]
    pc = time.perf_counter_ns
    with gc_state(True):
        before_gc = gc_counts()
        for i in range(samples):
            lc = live[i % sessions]
            t0 = pc()
            lc.sync_turn(USER_TEXT, ASSISTANT_TEXT)
            t1 = pc()
            raw[i] = t1 - t0
            if i % 1000 == 999:  # untimed
                count = threading.active_count()
                if count >= active:
                    active, names = count, sorted(t.name for t in threading.enumerate())
        after_gc = gc_counts()
    for _ in range(10):  # and while the backlog drains
        count = threading.active_count()
        if count >= active:
            active, names = count, sorted(t.name for t in threading.enumerate())
        time.sleep(0.025)
    report = memory.flush(timeout=0)
    closed = close_phase(memory, backend)
    del memory, backend, live, lcs, warm, warm_live

    # Traced: what the idle sessions hold.
    backend = SlowBackend()
    backend.stop.set()
    memory = memcore.Memory(
        backends=[backend], workers=workers, recall_workers=recall_workers, plugins=[], max_pending=max_pending
    )
    warm = [None] * warmup_sessions
    populate(memory, warm, "traced-warm")
    lcs = [None] * sessions
    gc.collect()
    types_before = type_counts()
    tracemalloc.start(TRACE_FRAMES)
    snap_before = tracemalloc.take_snapshot()
    populate(memory, lcs, "traced")
    gc.collect()
    snap_after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = type_counts() - types_before
    grown.subtract({"builtins.list": 1})  # type_counts' own list of objects
    traced_close = close_phase(memory, backend)
    traced, blocks, rows = held_by(snap_before, snap_after, sessions, HELD_BY_TOP)
    del snap_before, snap_after

    ordered = sorted(raw)
    per_session = traced / sessions
    p50, p99 = percentile(ordered, 50), percentile(ordered, 99)
    return ScaleResult(
        sessions=sessions,
        workers=workers,
        recall_workers=recall_workers,
        pool_size=pool,
        warmup_sessions=warmup_sessions,
        setup_seconds=setup_seconds,
        setup_delivered=setup.delivered,
        setup_committed=setup.committed,
        setup_pending=setup.pending,
        journal_caught_up=durable,
        memory_method="tracemalloc: bytes allocated by Python and still held after the sessions were set up, minus "
        "the baseline before them (gc collected both times); SQLite's own memory and thread stacks are not traced",
        traced_bytes=traced,
        traced_blocks=blocks,
        bytes_per_session=per_session,
        rss_method="RSS (/proc/self/statm) of an untraced Memory, after minus before the sessions: information "
        "(the allocator's free lists and SQLite's page cache move it)",
        rss_bytes=None if rss_before is None or rss_after is None else rss_after - rss_before,
        rss_bytes_per_session=None if rss_before is None or rss_after is None else (rss_after - rss_before) / sessions,
        held_by=rows,
        objects_per_session={k: v / sessions for k, v in grown.most_common(HELD_BY_TOP) if v > 0},
        memory_limit=SCALE_BYTES_PER_SESSION,
        memory_passed=per_session <= SCALE_BYTES_PER_SESSION,
        samples=samples,
        p50_us=p50,
        p90_us=percentile(ordered, 90),
        p99_us=p99,
        p999_us=percentile(ordered, 99.9),
        max_us=ordered[-1] / 1000.0,
        mean_us=sum(ordered) / len(ordered) / 1000.0,
        gc_collections=[a - b for a, b in zip(after_gc, before_gc, strict=True)],
        ops_expected=2 * (warmup_sessions + sessions) + warm_calls + samples,
        ops_accepted=report.delivered + report.committed + report.failed + report.pending,
        p50_passed=p50 <= SCALE_SYNC_TURN_P50_US,
        p99_within=p99 <= SCALE_SYNC_TURN_P99_US,
        p99_passed=None if quick else p99 <= SCALE_SYNC_TURN_P99_US,
        baseline_threads=baseline_threads,
        active_threads=active,
        memcore_threads=sum(1 for n in names if n.startswith("memcore-")),
        thread_names=names,
        threads_limit=pool + THREADS_OVER_POOL,
        threads_passed=active <= pool + THREADS_OVER_POOL,
        close=closed,
        traced_close=traced_close,
    )


SCALE_LINE = "scale-result: "


def run_scale_child(
    *, sessions: int, samples: int, warmup_sessions: int, workers: int, recall_workers: int, quick: bool
) -> ScaleResult:
    """Run phase 4 in a fresh interpreter (``--scale-child``) and read back its result."""
    cmd = [
        sys.executable,
        THIS_FILE,
        "--scale-child",
        "--scale-sessions",
        str(sessions),
        "--scale-samples",
        str(samples),
        "--scale-warmup",
        str(warmup_sessions),
        "--workers",
        str(workers),
        "--recall-workers",
        str(recall_workers),
        *(["--quick"] if quick else []),
    ]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(SCALE_LINE)]
    if not lines:
        raise RuntimeError(f"the scale child printed no result: {done.stdout!r}")
    return ScaleResult.from_dict(json.loads(lines[-1][len(SCALE_LINE) :]))


# -- output --------------------------------------------------------------------------------------------------------


def report_text(res: Results) -> None:
    m = res.machine
    print(
        f"memcore lifecycle benchmark{' (--quick)' if res.quick else ''}: python {m['python_version']}, "
        f"{m['cpu_count']} cpus, {m['platform']}; backend hooks take {BACKEND_LATENCY * 1000:g} ms; "
        f"timer floor {res.timer_overhead_ns} ns\n"
    )
    if res.latency:
        first = res.latency[0]
        print(
            f"1. caller-side latency (us), Memory(workers={first.workers}, recall_workers={first.recall_workers}), "
            f"{first.lifecycles} lifecycles in turn"
        )
        print_table(
            ["row", "samples", "p50", "p90", "p99", "p99.9", "max", "queued ok", "target", "result"],
            [
                [
                    r.row,
                    str(r.samples),
                    f"{r.p50_us:.2f}",
                    f"{r.p90_us:.2f}",
                    f"{r.p99_us:.2f}",
                    f"{r.p999_us:.2f}",
                    f"{r.max_us:.1f}",
                    "yes" if r.ops_accepted == r.ops_expected else f"{r.ops_accepted}/{r.ops_expected}",
                    r.target,
                    verdict(r.passed) if r.passed is not None else ("info: ok" if r.within_target else "info: over"),
                ]
                for r in res.latency
            ],
        )
    t = res.threads
    if t is not None:
        print(
            f"2. threads with {t.sessions} sessions x {t.turns_per_session} turns pending"
            f" (+ {t.prefetches} queued prefetches)"
        )
        print_table(
            ["row", "workers", "recall", "pool", "baseline", "active", "memcore", "pending", "target", "result"],
            [
                [
                    "threading.active_count()",
                    str(t.workers),
                    str(t.recall_workers),
                    str(t.pool_size),
                    str(t.baseline_threads),
                    str(t.active_threads),
                    str(t.memcore_threads),
                    str(t.pending_when_counted),
                    f"<= {t.limit}",
                    verdict(t.passed),
                ]
            ],
        )
        print("   threads: " + ", ".join(t.thread_names) + "\n")
    if res.throughput:
        print("3. throughput against the 50 ms backend (limit = W / 0.050 s)")
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
                "writes ratio",
                "all arrived",
                "target",
                "result",
            ],
            [
                [
                    f"W={r.workers}",
                    str(r.sessions),
                    str(r.writes),
                    str(r.backend_calls["write"] + r.backend_calls["open_session"] + r.backend_calls["commit"]),
                    f"{r.wall_seconds:.2f}",
                    f"{r.ideal_seconds:.2f}",
                    f"{r.calls_per_s:.1f}",
                    f"{r.limit_ops_per_s:.0f}",
                    f"{r.ratio:.3f}",
                    f"{r.writes_ratio:.3f}",
                    "yes" if r.all_writes_arrived else "NO",
                    f">= {THROUGHPUT_RATIO}",
                    verdict(r.passed),
                ]
                for r in res.throughput
            ],
        )
        means = [f"W={r.workers}: {r.mean_backend_call_ms:.2f} ms" for r in res.throughput if r.mean_backend_call_ms]
        print("   measured mean backend call: " + ", ".join(means) + "\n")
    sc = res.scale
    if sc is not None:
        report_scale(sc)
    if res.quick_info_only:
        print(
            "quick run: " + ", ".join(res.quick_info_only) + " are information only, not targets (a p99 of a few "
            "thousand samples on a busy 2-core runner measures its neighbours); the full run holds them to their "
            "targets\n"
        )
    print_targets(res.targets)
    passed = sum(1 for t in res.targets if t.passed)
    print(f"{passed}/{len(res.targets)} targets passed; total {res.total_seconds:.1f} s")


def report_scale(sc: ScaleResult) -> None:
    print(
        f"4. scale: {sc.sessions} live lifecycles on one Memory(workers={sc.workers}, "
        f"recall_workers={sc.recall_workers}), each written, delivered and committed (set up in "
        f"{sc.setup_seconds:.2f} s with the backend's sleeps cut short), in a child process"
    )
    p99_result = (
        verdict(sc.p99_passed) if sc.p99_passed is not None else ("info: ok" if sc.p99_within else "info: over")
    )
    rss = fmt(sc.rss_bytes_per_session, ".0f")
    print_table(
        ["row", "value", "target", "result"],
        [
            [
                "memory per idle session, tracemalloc (B)",
                f"{sc.bytes_per_session:.0f}",
                f"<= {sc.memory_limit:g}",
                verdict(sc.memory_passed),
            ],
            ["memory per idle session, RSS (B)", rss, "-", "info"],
            [
                f"sync_turn p50 (us), {sc.samples} samples over all",
                f"{sc.p50_us:.2f}",
                f"<= {SCALE_SYNC_TURN_P50_US:g}",
                verdict(sc.p50_passed),
            ],
            [
                f"sync_turn p99 (us), {sc.samples} samples over all",
                f"{sc.p99_us:.2f}",
                f"<= {SCALE_SYNC_TURN_P99_US:g}",
                p99_result,
            ],
            ["threading.active_count()", str(sc.active_threads), f"<= {sc.threads_limit}", verdict(sc.threads_passed)],
        ],
    )
    print(
        f"   sync_turn p90 {sc.p90_us:.2f}, p99.9 {sc.p999_us:.2f}, max {sc.max_us:.1f} us; queued ok: "
        f"{'yes' if sc.ops_accepted == sc.ops_expected else f'{sc.ops_accepted}/{sc.ops_expected}'}; "
        f"threads: pool {sc.pool_size}, memcore {sc.memcore_threads}, baseline {sc.baseline_threads}; "
        f"journal caught up after the setup: {'yes' if sc.journal_caught_up else f'no (waited {DURABLE_WAIT:g} s)'}"
    )
    print(f"   memory: {sc.memory_method}")
    print(f"   RSS: {sc.rss_method}")
    print(
        "   held by (tracemalloc, per session, by the innermost memcore line that allocated it; "
        f"{sc.traced_blocks / sc.sessions:.1f} blocks per session in all):"
    )
    print_table(
        ["site", "bytes", "blocks", "code"],
        [[h.site, f"{h.bytes_per_session:.1f}", f"{h.blocks_per_session:.2f}", h.code[:70]] for h in sc.held_by],
    )
    objects = ", ".join(f"{name} {n:.2f}" for name, n in sc.objects_per_session.items())
    print(f"   gc-tracked objects per session: {objects}\n")


def collect_targets(res: Results) -> list[Target]:
    out: list[Target] = []
    for r in res.latency:
        if r.passed is not None:
            figure, limit = LATENCY_TARGETS[r.operation]
            out.append(Target(r.row, figure, getattr(r, figure), "us", "<=", limit, r.passed))
    if res.threads is not None:
        t = res.threads
        out.append(Target("threads", "active_count", t.active_threads, "threads", "<=", t.limit, t.passed))
    for tp in res.throughput:
        out.append(
            Target(f"throughput W={tp.workers}", "ratio", tp.ratio, "x limit", ">=", THROUGHPUT_RATIO, tp.passed)
        )
    sc = res.scale
    if sc is not None:
        row = f"scale ({sc.sessions} sessions)"
        out.append(Target(row, "bytes_per_session", sc.bytes_per_session, "B", "<=", sc.memory_limit, sc.memory_passed))
        out.append(Target(row, "sync_turn p50_us", sc.p50_us, "us", "<=", SCALE_SYNC_TURN_P50_US, sc.p50_passed))
        if sc.p99_passed is not None:
            out.append(Target(row, "sync_turn p99_us", sc.p99_us, "us", "<=", SCALE_SYNC_TURN_P99_US, sc.p99_passed))
        out.append(Target(row, "active_count", sc.active_threads, "threads", "<=", sc.threads_limit, sc.threads_passed))
    return out


# -- main ----------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="fewer samples and shorter throughput runs (~15 s); p99s are information"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="the smallest run of every phase, for tests (implies --quick; its figures mean nothing)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help=f"where to write the JSON (default {DEFAULT_JSON}; a quick run: {json_path('lifecycle', None, quick=True)}"
        ", and never a tracked results file)",
    )
    parser.add_argument("--workers", type=int, default=8, help="lane workers for the latency, threads and scale phases")
    parser.add_argument(
        "--recall-workers", type=int, default=2, help="recall workers for the latency, threads and scale phases"
    )
    parser.add_argument("--scale-sessions", type=int, default=None, help="live sessions in the scale phase (10000)")
    parser.add_argument("--scale-samples", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scale-warmup", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scale-child", action="store_true", help=argparse.SUPPRESS)  # phase 4 in a fresh process
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target failed")
    args = parser.parse_args(argv)
    if args.tiny:
        args.quick = True
    return args


def make_config(args: argparse.Namespace) -> dict[str, Any]:
    quick: bool = args.quick
    tiny: bool = args.tiny
    config: dict[str, Any] = {
        "backend_latency_s": BACKEND_LATENCY,
        "workers": args.workers,
        "recall_workers": args.recall_workers,
        # Quick takes the full run's switch and end samples (they cost well under a second): its p99s are
        # information (QUICK_INFO_FIGURES), but compare with the full run's.
        "latency_samples": {"sync_turn": 5_000, "switch": 5_000, "end": 5_000}
        if quick
        else {"sync_turn": 20_000, "switch": 5_000, "end": 5_000},
        "latency_warmup": {"sync_turn": 1_000, "switch": 500, "end": 500}
        if quick
        else {"sync_turn": 2_000, "switch": 500, "end": 500},
        "paced_samples": {"sync_turn": 500, "switch": 500, "end": 500}
        if quick
        else {"sync_turn": 3_000, "switch": 2_000, "end": 2_000},
        "paced_gap_s": PACED_GAP,
        "latency_lifecycles": 100,
        "threads_sessions": 1_000,
        "threads_turns": 10,
        "threads_prefetches": 100,
        "throughput_workers": [8, 1] if quick else [8, 4, 1],
        "throughput_seconds": 2.0 if quick else 6.0,
        "throughput_sessions_per_worker": 8,
        "scale_sessions": 10_000,
        "scale_samples": 10_000 if quick else 20_000,
        "scale_warmup_sessions": 100,
    }
    if tiny:
        config.update(
            latency_samples={"sync_turn": 200, "switch": 200, "end": 200},
            latency_warmup={"sync_turn": 50, "switch": 50, "end": 50},
            paced_samples={"sync_turn": 20, "switch": 20, "end": 20},
            latency_lifecycles=20,
            threads_sessions=50,
            threads_turns=2,
            threads_prefetches=5,
            throughput_workers=[1],
            throughput_seconds=0.2,
            scale_sessions=200,
            scale_samples=400,
            scale_warmup_sessions=10,
        )
    for key, given in (
        ("scale_sessions", args.scale_sessions),
        ("scale_samples", args.scale_samples),
        ("scale_warmup_sessions", args.scale_warmup),
    ):
        if given is not None:
            config[key] = given
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The journal is on (the default), as users run it; keep it away from the user's own MEMCORE_HOME.
    home = tempfile.TemporaryDirectory(prefix="memcore-bench-")
    os.environ["MEMCORE_HOME"] = home.name
    quick: bool = args.quick
    workers: int = args.workers
    recall_workers: int = args.recall_workers
    config = make_config(args)
    if args.scale_child:
        scale = run_scale(
            sessions=config["scale_sessions"],
            samples=config["scale_samples"],
            warmup_sessions=config["scale_warmup_sessions"],
            workers=workers,
            recall_workers=recall_workers,
            quick=quick,
        )
        print(SCALE_LINE + json.dumps(asdict(scale)), flush=True)
        return 0
    res = Results(
        quick=quick,
        config=config,
        timer_overhead_ns=timer_overhead_ns(),
        quick_info_only=["switch p99", "end p99", "scale sync_turn p99"] if quick else [],
    )
    begin = time.perf_counter()

    progress = progress_printer(begin)

    # (gc on, gap, samples key): back to back with gc on is what the targets judge; gc off shows what gc costs;
    # paced (a sleep before each call, like an agent between turns, while the workers cycle) shows cold-cache cost.
    variants = ((True, 0.0, "latency_samples"), (False, 0.0, "latency_samples"), (True, PACED_GAP, "paced_samples"))
    for gc_on, gap, key in variants:
        operations = (
            ("sync_turn", "sync_turn_user", "switch", "end") if gc_on and not gap else ("sync_turn", "switch", "end")
        )
        for operation in operations:
            progress(f"latency: {operation}, gc {'on' if gc_on else 'off'}{', paced' if gap else ''}")
            counts = operation.removesuffix("_user")  # a named user's turns: as many samples as the default user's
            res.latency.append(
                run_latency(
                    operation,
                    samples=config[key][counts],
                    warmup=config["latency_warmup"][counts],
                    lifecycles=config["latency_lifecycles"],
                    workers=workers,
                    recall_workers=recall_workers,
                    gc_on=gc_on,
                    gap=gap,
                    quick=quick,
                )
            )
    progress("threads")
    res.threads = run_threads(
        sessions=config["threads_sessions"],
        turns=config["threads_turns"],
        prefetches=config["threads_prefetches"],
        workers=workers,
        recall_workers=recall_workers,
    )
    for w in config["throughput_workers"]:
        progress(f"throughput: W={w}")
        res.throughput.append(
            run_throughput(
                workers=w,
                seconds=config["throughput_seconds"],
                sessions_per_worker=config["throughput_sessions_per_worker"],
            )
        )
    progress(f"scale: {config['scale_sessions']} sessions, in a child process")
    res.scale = run_scale_child(
        sessions=config["scale_sessions"],
        samples=config["scale_samples"],
        warmup_sessions=config["scale_warmup_sessions"],
        workers=workers,
        recall_workers=recall_workers,
        quick=quick,
    )
    res.total_seconds = time.perf_counter() - begin
    res.targets = collect_targets(res)
    res.all_passed = all(t.passed for t in res.targets)

    report_text(res)
    write_json(res, json_path("lifecycle", args.json, quick=quick))
    return 1 if args.check and not res.all_passed else 0


if __name__ == "__main__":
    sys.exit(main())

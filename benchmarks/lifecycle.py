"""Lifecycle benchmark: what the agent's thread pays, how many threads memcore uses, how close the lanes get to the
backend's limit.

Runs against :class:`SlowBackend`, an in-benchmark backend whose hooks each take 50 ms (a wait on a
:class:`threading.Event`, so teardown cuts every sleep short). Three phases, each on its own
``memcore.Memory(backends=[SlowBackend()], workers=W, plugins=[])``, closed at the end of the phase:

1. caller-side latency of ``sync_turn``, ``switch`` and ``end`` (G5), gc on (targets) and gc off (information);
2. threads with 1,000 sessions x 10 turns pending (G8);
3. throughput of the lane workers against the 50 ms backend, as a fraction of the limit ``W / 0.050 s``.

Usage::

    python benchmarks/lifecycle.py [--quick] [--json PATH] [--check]

See ``benchmarks/README.md`` for what every row means.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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

#: Where the JSON goes unless ``--json`` says otherwise.
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "lifecycle.json"
USER_TEXT = "user text"
ASSISTANT_TEXT = "assistant text"
ROTATING_REASONS = ("new", "branch", "resume", "compress")
#: Sleep before each timed call in the paced latency rows (seconds).
PACED_GAP = 0.001

# Targets.
SYNC_TURN_P50_US = 10.0
SWITCH_P99_US = 50.0
END_P99_US = 50.0
THREADS_OVER_POOL = 2
THROUGHPUT_RATIO = 0.9


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
class Results(BenchResults):
    benchmark: str = "lifecycle"
    timer_overhead_ns: int = 0
    latency: list[LatencyRow] = field(default_factory=list)
    threads: ThreadsResult | None = None
    throughput: list[ThroughputRow] = field(default_factory=list)
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


LOOPS: dict[str, LatencyLoop] = {"sync_turn": loop_sync_turn, "switch": loop_switch, "end": loop_end}
LATENCY_TARGETS: dict[str, tuple[str, float]] = {
    "sync_turn": ("p50_us", SYNC_TURN_P50_US),
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
) -> LatencyRow:
    """One latency row. Only the back-to-back, gc-on rows are held to the targets; the others are information."""
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
    gated = gc_on and not gap
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
    print_targets(res.targets)
    passed = sum(1 for t in res.targets if t.passed)
    print(f"{passed}/{len(res.targets)} targets passed; total {res.total_seconds:.1f} s")


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
    return out


# -- main ----------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples and shorter throughput runs (~30 s)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write the JSON (default {DEFAULT_JSON})"
    )
    parser.add_argument("--workers", type=int, default=8, help="lane workers for the latency and threads phases")
    parser.add_argument(
        "--recall-workers", type=int, default=2, help="recall workers for the latency and threads phases"
    )
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target failed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The journal is on (the default), as users run it; keep it away from the user's own MEMCORE_HOME.
    home = tempfile.TemporaryDirectory(prefix="memcore-bench-")
    os.environ["MEMCORE_HOME"] = home.name
    quick: bool = args.quick
    workers: int = args.workers
    recall_workers: int = args.recall_workers
    config: dict[str, Any] = {
        "backend_latency_s": BACKEND_LATENCY,
        "workers": workers,
        "recall_workers": recall_workers,
        "latency_samples": {"sync_turn": 5_000, "switch": 1_500, "end": 1_500}
        if quick
        else {"sync_turn": 20_000, "switch": 5_000, "end": 5_000},
        "latency_warmup": {"sync_turn": 1_000, "switch": 300, "end": 300}
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
    }
    res = Results(
        quick=quick,
        config=config,
        timer_overhead_ns=timer_overhead_ns(),
    )
    begin = time.perf_counter()

    progress = progress_printer(begin)

    # (gc on, gap, samples key): back to back with gc on is what the targets judge; gc off shows what gc costs;
    # paced (a sleep before each call, like an agent between turns, while the workers cycle) shows cold-cache cost.
    variants = ((True, 0.0, "latency_samples"), (False, 0.0, "latency_samples"), (True, PACED_GAP, "paced_samples"))
    for gc_on, gap, key in variants:
        for operation in ("sync_turn", "switch", "end"):
            progress(f"latency: {operation}, gc {'on' if gc_on else 'off'}{', paced' if gap else ''}")
            res.latency.append(
                run_latency(
                    operation,
                    samples=config[key][operation],
                    warmup=config["latency_warmup"][operation],
                    lifecycles=config["latency_lifecycles"],
                    workers=workers,
                    recall_workers=recall_workers,
                    gc_on=gc_on,
                    gap=gap,
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
    res.total_seconds = time.perf_counter() - begin
    res.targets = collect_targets(res)
    res.all_passed = all(t.passed for t in res.targets)

    report_text(res)
    write_json(res, args.json)
    return 1 if args.check and not res.all_passed else 0


if __name__ == "__main__":
    sys.exit(main())

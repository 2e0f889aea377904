"""mem0 benchmark: memcore with the local mem0 backend (``backends/mem0``) against calling ``mem0.Memory.add``
directly in a loop, the same turns, on the same kind of store (local Qdrant under a fresh temporary directory each
phase) and the same deterministic OpenAI-compatible endpoint the backend's tests serve on loopback
(``backends/mem0/tests/support/fake_openai.py``: hashed bag-of-words embeddings, answered in well under a millisecond).

Phases, repeated ``rounds`` times (interleaved):

1. ``direct``: one ``mem0.Memory``, sequentially, ``add([user, assistant], user_id=..., run_id=..., infer=False)``
   per turn, the turns interleaved across the sessions;
2. ``memcore W=1`` and ``memcore W=4``: ``memcore.Memory(backends=[Mem0Backend(...)], workers=W, journal=False)``,
   one lifecycle per session, ``sync_turn`` interleaved across the sessions, timed from the first ``sync_turn`` until
   ``memory.flush()`` reports everything drained. Every session is read back (``memcore_history``) afterwards.

No commit (extraction) is timed: both sides only store turns. Usage::

    python benchmarks/mem0.py [--quick] [--json PATH] [--check]

Needs ``mem0ai`` and ``memcore-mem0`` installed in the interpreter (``.tox/mem0/bin/python``). See
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    BenchResults,
    Target,
    fmt,
    json_path,
    percentile,
    print_table,
    print_targets,
    progress_printer,
    timer_overhead_ns,
    write_json,
)

import memcore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This script is named mem0.py: with its directory on sys.path, ``import mem0`` would import it. Drop the directory
# (``_common`` is imported already) and put the backend's test support there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT / "backends" / "mem0" / "tests"))
os.environ.setdefault("MEM0_TELEMETRY", "False")

#: Budget for ``flush`` / ``close`` at the end of a memcore phase.
DRAIN_TIMEOUT = 300.0
#: Targets: memcore with one worker keeps at least this share of the direct loop's throughput.
W1_RATIO = 0.8


@dataclass
class PhaseRow:
    row: str
    round: int
    workers: int  # 0 for the direct loop
    sessions: int
    turns: int
    accept_seconds: float | None  # memcore: the sync_turn loop (the workers deliver meanwhile)
    wall_seconds: float
    turns_per_s: float
    ratio: float | None = None  # memcore turns/s / the same round's direct turns/s
    sync_turn_p50_us: float | None = None
    sync_turn_p99_us: float | None = None
    delivered: int | None = None
    failed: int | None = None
    stored_messages: int = 0  # read back after the phase
    all_turns_present: bool = False


@dataclass
class Summary:
    row: str
    workers: int
    runs: int
    median_turns_per_s: float
    median_ratio: float | None
    sync_turn_p50_us: float | None


@dataclass
class Results(BenchResults):
    benchmark: str = "mem0"
    timer_overhead_ns: int = 0
    phases: list[PhaseRow] = field(default_factory=list)
    summary: list[Summary] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    all_passed: bool = False


def workload(sessions: int, turns: int) -> list[tuple[str, str, str]]:
    """(session id, user text, assistant text), interleaved across the sessions."""
    return [
        (f"bench-{s}", f"turn {t} of session {s}: I note item {s}-{t}", f"noted {s}-{t}")
        for t in range(turns)
        for s in range(sessions)
    ]


def direct_phase(fake: Any, path: Path, turns: list[tuple[str, str, str]], round_: int) -> PhaseRow:
    mem0 = importlib.import_module("mem0")
    dims = importlib.import_module("support.fake_openai").DIM
    model = {"api_key": "bench", "openai_base_url": fake.url}
    config = {
        "vector_store": {
            "provider": "qdrant",
            "config": {"collection_name": "bench", "path": str(path / "qdrant"), "embedding_model_dims": dims},
        },
        "embedder": {"provider": "openai", "config": {**model, "model": "fake", "embedding_dims": dims}},
        "llm": {"provider": "openai", "config": {**model, "model": "fake"}},
        "history_db_path": str(path / "history.db"),
    }
    memory = mem0.Memory.from_config(config)
    start = time.perf_counter()
    for sid, user, assistant in turns:
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        memory.add(messages, user_id="bench", run_id=sid, infer=False)
    wall = time.perf_counter() - start
    stored = len(memory.get_all(filters={"user_id": "bench"}, top_k=1_000_000)["results"])
    memory.close()
    memory.vector_store.client.close()
    sessions = len({t[0] for t in turns})
    return PhaseRow(
        row="direct mem0.Memory.add",
        round=round_,
        workers=0,
        sessions=sessions,
        turns=len(turns),
        accept_seconds=None,
        wall_seconds=wall,
        turns_per_s=len(turns) / wall,
        stored_messages=stored,
        all_turns_present=stored == 2 * len(turns),
    )


def memcore_phase(fake: Any, path: Path, turns: list[tuple[str, str, str]], workers: int, round_: int) -> PhaseRow:
    backend_module = importlib.import_module("memcore_mem0")
    dims = importlib.import_module("support.fake_openai").DIM
    settings = {"path": path, "base_url": fake.url, "api_key": "bench", "embedding_dims": dims, "collection": "bench"}
    backend = backend_module.Mem0Backend(**settings, embedding_model="fake", llm_model="fake")
    memory = memcore.Memory(backends=[backend], workers=workers, plugins=[], journal=False)
    lifecycles = {sid: memory.lifecycle(sid) for sid in dict.fromkeys(t[0] for t in turns)}
    samples: list[int] = []
    pc = time.perf_counter_ns
    start = time.perf_counter()
    for sid, user, assistant in turns:
        t0 = pc()
        lifecycles[sid].sync_turn(user, assistant)
        samples.append(pc() - t0)
    accepted = time.perf_counter() - start
    report = memory.flush(timeout=DRAIN_TIMEOUT)
    wall = time.perf_counter() - start
    stored = sum(len(backend.memcore_history(memcore.Session(id=sid))) for sid in lifecycles)
    memory.close(timeout=DRAIN_TIMEOUT)
    samples.sort()
    return PhaseRow(
        row=f"memcore W={workers}",
        round=round_,
        workers=workers,
        sessions=len(lifecycles),
        turns=len(turns),
        accept_seconds=accepted,
        wall_seconds=wall,
        turns_per_s=len(turns) / wall,
        sync_turn_p50_us=percentile(samples, 50),
        sync_turn_p99_us=percentile(samples, 99),
        delivered=report.delivered,
        failed=report.failed,
        stored_messages=stored,
        all_turns_present=stored == 2 * len(turns) and not report.timed_out and report.failed == 0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer turns and one round")
    parser.add_argument("--json", type=Path, default=None, help="where the JSON goes (default: see README)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target failed")
    args = parser.parse_args()
    begin = time.perf_counter()
    progress = progress_printer(begin)
    sessions, per_session, rounds = (4, 10, 1) if args.quick else (8, 25, 3)
    turns = workload(sessions, per_session)
    results = Results(quick=args.quick, timer_overhead_ns=timer_overhead_ns())
    results.config = {"sessions": sessions, "turns_per_session": per_session, "rounds": rounds, "journal": False}
    fake_openai = importlib.import_module("support.fake_openai")
    scratch = Path(tempfile.mkdtemp(prefix="memcore-bench-mem0-"))
    try:
        with fake_openai.FakeOpenAI() as fake:
            for round_ in range(1, rounds + 1):
                progress(f"round {round_}/{rounds}: direct loop, {len(turns)} turns")
                direct = direct_phase(fake, scratch / f"direct-{round_}", turns, round_)
                results.phases.append(direct)
                for workers in (1, 4):
                    progress(f"round {round_}/{rounds}: memcore W={workers}")
                    row = memcore_phase(fake, scratch / f"memcore-{workers}-{round_}", turns, workers, round_)
                    row.ratio = row.turns_per_s / direct.turns_per_s
                    results.phases.append(row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for name, workers in (("direct mem0.Memory.add", 0), ("memcore W=1", 1), ("memcore W=4", 4)):
        rows = [p for p in results.phases if p.row == name]
        ratios = [p.ratio for p in rows if p.ratio is not None]
        p50s = [p.sync_turn_p50_us for p in rows if p.sync_turn_p50_us is not None]
        results.summary.append(
            Summary(
                row=name,
                workers=workers,
                runs=len(rows),
                median_turns_per_s=statistics.median(p.turns_per_s for p in rows),
                median_ratio=statistics.median(ratios) if ratios else None,
                sync_turn_p50_us=statistics.median(p50s) if p50s else None,
            )
        )
    w1 = next(s for s in results.summary if s.workers == 1)
    ratio = w1.median_ratio or 0.0
    results.targets = [
        Target("memcore W=1", "turns/s vs direct", ratio, "x", ">=", W1_RATIO, ratio >= W1_RATIO),
        Target(
            "every phase",
            "all turns stored",
            float(all(p.all_turns_present for p in results.phases)),
            "",
            ">=",
            1,
            all(p.all_turns_present for p in results.phases),
        ),
    ]
    results.all_passed = all(t.passed for t in results.targets)
    results.total_seconds = time.perf_counter() - begin
    print(f"mem0 local mode: {sessions} sessions x {per_session} turns, {rounds} round(s), fake model endpoint\n")
    print_table(
        ["row", "turns/s", "ratio", "sync_turn p50 us", "p99 us", "stored"],
        [
            [
                f"{p.row} (round {p.round})",
                fmt(p.turns_per_s),
                fmt(p.ratio, ".2f"),
                fmt(p.sync_turn_p50_us),
                fmt(p.sync_turn_p99_us),
                str(p.stored_messages),
            ]
            for p in results.phases
        ],
    )
    print_targets(results.targets)
    write_json(results, args.json if args.json is not None else json_path("mem0", None, quick=args.quick))
    return 1 if args.check and not results.all_passed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by the benchmark scripts: the 50 ms :class:`SlowBackend`, percentiles, machine info, timer floor,
gc control, table printing, progress lines, the head every script's results share, the target record every
script's JSON lists, and where a run's JSON goes (:func:`json_path`, :func:`write_json`: a quick run never overwrites
a tracked results file).

The scripts run as ``python benchmarks/<name>.py``, so this module is imported as ``_common`` (the script's directory
is on ``sys.path``).
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pluggy

import memcore

#: Every hook of :class:`SlowBackend` takes this long (seconds).
BACKEND_LATENCY = 0.050
#: Budget for ``Memory.close`` at the end of a phase (the stop Event is set first, so it needs far less).
CLOSE_TIMEOUT = 60.0
#: The tracked results of full runs: every file directly in this directory is committed.
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Where quick runs write their JSON by default (git-ignored).
QUICK_DIR = RESULTS_DIR / "quick"


class SlowBackend:
    """A backend whose every hook takes ``latency`` seconds, until ``stop`` is set (then hooks return at once).
    It keeps users apart (it stores nothing), so the benchmarks may name users.

    It counts its calls per hook and the time it actually spent in them, so the benchmark can check that every write
    arrived and tell the backend's own overshoot apart from memcore's overhead.
    """

    name = "slow"
    separates_users = True

    def __init__(self, latency: float = BACKEND_LATENCY) -> None:
        self.latency = latency
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {"open_session": 0, "write": 0, "commit": 0, "recall": 0}
        self.busy_seconds = 0.0  # time spent in calls that waited out their full latency
        self.full_calls = 0

    def _work(self, hook: str) -> None:
        start = time.perf_counter()
        cut_short = self.stop.wait(self.latency)
        spent = time.perf_counter() - start
        with self._lock:
            self.calls[hook] += 1
            if not cut_short:
                self.busy_seconds += spent
                self.full_calls += 1

    @memcore.hookimpl
    def memcore_open_session(self, session: memcore.Session) -> None:
        self._work("open_session")

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        self._work("write")

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        self._work("commit")

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: memcore.Session | None, limit: int) -> Sequence[memcore.Recollection]:
        self._work("recall")
        return []

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)

    def mean_call_seconds(self) -> float | None:
        with self._lock:
            return self.busy_seconds / self.full_calls if self.full_calls else None


@dataclass
class Target:
    row: str
    figure: str
    value: float
    unit: str
    op: str  # "<=" or ">="
    limit: float
    passed: bool


@dataclass
class PhaseClose:
    seconds: float
    delivered: int
    committed: int
    failed: int
    pending: int
    timed_out: bool


def close_phase(memory: memcore.Memory, backend: SlowBackend | None) -> PhaseClose:
    """Set the backend's stop Event, if there is one (so pending work drains at once), and close the Memory; record
    what close reported."""
    if backend is not None:
        backend.stop.set()
    start = time.perf_counter()
    report = memory.close(timeout=CLOSE_TIMEOUT)
    return PhaseClose(
        seconds=time.perf_counter() - start,
        delivered=report.delivered,
        committed=report.committed,
        failed=report.failed,
        pending=report.pending,
        timed_out=report.timed_out,
    )


def percentile(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of nanosecond samples, in microseconds."""
    if not sorted_ns:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1] / 1000.0


def machine_info() -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "switch_interval_s": sys.getswitchinterval(),
        "gc_threshold": list(gc.get_threshold()),
        "memcore_version": memcore.__version__,
        "pluggy_version": pluggy.__version__,
    }


def timer_overhead_ns(rounds: int = 20_000) -> int:
    """The smallest back-to-back ``perf_counter_ns`` difference: the floor every latency sample includes."""
    pc = time.perf_counter_ns
    best = 1 << 62
    for _ in range(rounds):
        t0 = pc()
        t1 = pc()
        best = min(best, t1 - t0)
    return best


def gc_counts() -> list[int]:
    return [int(s["collections"]) for s in gc.get_stats()]


@contextmanager
def gc_state(enabled: bool) -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    if enabled:
        gc.enable()
    else:
        gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def verdict(passed: bool | None) -> str:
    return "info" if passed is None else ("PASS" if passed else "FAIL")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    print()


def is_tracked_result(path: Path) -> bool:
    """Whether ``path`` is one of the tracked results files: a file directly in ``benchmarks/results/`` (where full
    runs write; files in ``results/quick/`` are not)."""
    return path.resolve().parent == RESULTS_DIR.resolve()


def json_path(name: str, requested: Path | None, *, quick: bool) -> Path:
    """Where the JSON of benchmark ``name`` goes. A full run: ``requested`` (``--json``), else the tracked
    ``benchmarks/results/<name>.json``. A quick run: ``requested`` unless it is a tracked results file; by default,
    and instead of a tracked file, ``benchmarks/results/quick/<its name>`` (git-ignored). A quick run never overwrites
    a tracked results file, even when ``--json`` names one."""
    if requested is None:
        return (QUICK_DIR if quick else RESULTS_DIR) / f"{name}.json"
    if quick and is_tracked_result(requested):
        return QUICK_DIR / requested.name
    return requested


def write_json(results: Any, path: Path) -> Path:
    """Write a benchmark's results dataclass to ``path`` as JSON and say where; returns the path written.

    If the results are a quick run's (``results.quick``) and ``path`` is a tracked results file, the JSON goes to
    ``benchmarks/results/quick/`` instead (:func:`json_path`), so that no script can overwrite a full run's figures
    with a quick run's, whatever its ``--json`` default."""
    quick = bool(getattr(results, "quick", False))
    chosen = json_path(path.stem, path, quick=quick)
    if chosen != path:
        print(f"a quick run never overwrites the tracked {path.name}: writing to {chosen} instead")
    chosen.parent.mkdir(parents=True, exist_ok=True)
    chosen.write_text(json.dumps(asdict(results), indent=2) + "\n", encoding="utf-8")
    print(f"JSON written to {chosen}")
    return chosen


def print_targets(targets: Sequence[Target]) -> None:
    """The ``targets`` table every script ends with."""
    print("targets")
    print_table(
        ["row", "figure", "value", "target", "result"],
        [
            [
                t.row,
                t.figure,
                f"{t.value:.3f}".rstrip("0").rstrip("."),
                f"{t.op} {t.limit:g} {t.unit}",
                verdict(t.passed),
            ]
            for t in targets
        ],
    )


@dataclass
class BenchResults:
    """The head of every script's results (each subclass sets ``benchmark`` and adds its own fields)."""

    benchmark: str = ""
    quick: bool = False
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    total_seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=machine_info)
    config: dict[str, Any] = field(default_factory=dict)


def progress_printer(begin: float) -> Callable[[str], None]:
    """A ``progress(msg)`` that prints ``msg`` to stderr with the seconds since ``begin`` (``time.perf_counter()``)."""

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - begin:6.1f} s] {msg}", file=sys.stderr, flush=True)

    return progress


def fmt(value: float | None, spec: str = ".1f") -> str:
    """``value`` formatted, or ``-`` for None and NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

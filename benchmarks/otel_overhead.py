# The lint environment may lack opentelemetry and memcore-otel (this benchmark's own requirements): then their names
# are Any here rather than errors (the ignores below); with them installed, everything is checked as usual.
# mypy: allow-subclassing-any
"""memcore-otel's overhead: ``sync_turn`` caller latency and delivery throughput, plugin off vs on, as ratios.

Three modes on the same backend, each on its own ``memcore.Memory`` (journal on, as users run it, under a temporary
``MEMCORE_HOME``):

- ``off``: ``plugins=[]``;
- ``api``: ``OtelObserver`` with OpenTelemetry's no-op providers, what an application pays that has memcore-otel
  installed and configures no SDK;
- ``sdk``: ``OtelObserver`` with the SDK: a ``TracerProvider`` with a ``BatchSpanProcessor`` (a queue large enough
  that no span is dropped) and a ``MeterProvider`` with a periodic reader, both exporting to exporters that count and
  discard, so the figure is the instrumentation's cost and not a collector's.

Two backends: ``instant`` (returns at once: memcore's own cost only, so the plugin's share is the largest it can be)
and ``sqlite`` (the embedded store). Per (backend, mode): ``sync_turn`` latency back to back (the workers deliver
meanwhile, so the plugin's work on them competes with the caller for the GIL) and paced (1 ms between turns, like
an agent), and throughput: turns accepted back to back and then flushed, per second, and the process's CPU time per
turn (all threads). The modes run interleaved, ``--repeats`` times; each figure is the median over the repeats, and
each ratio (``on / off``) the median of the repeats' own ratios.

Usage::

    python benchmarks/otel_overhead.py [--quick | --tiny] [--repeats N] [--json PATH]

Needs ``memcore-otel`` and ``opentelemetry-sdk`` (``tox -e otel`` has both). A quick run writes its JSON to
``benchmarks/results/quick/`` and never to the tracked ``benchmarks/results/otel_overhead.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import BenchResults, fmt, json_path, percentile, print_table, progress_printer, write_json
from memcore_otel import OtelObserver  # type: ignore[import-not-found, unused-ignore]
from opentelemetry.metrics import NoOpMeterProvider  # type: ignore[import-not-found, unused-ignore]
from opentelemetry.sdk.metrics import MeterProvider  # type: ignore[import-not-found, unused-ignore]
from opentelemetry.sdk.metrics.export import (  # type: ignore[import-not-found, unused-ignore]
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # type: ignore[import-not-found, unused-ignore]
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # type: ignore[import-not-found, unused-ignore]
from opentelemetry.trace import NoOpTracerProvider  # type: ignore[import-not-found, unused-ignore]

import memcore

DEFAULT_JSON = json_path("otel_overhead", None, quick=False)
MODES = ("off", "api", "sdk")
BACKENDS = ("instant", "sqlite")
LIFECYCLES = 100
PACED_GAP = 0.001
SIZES = {  # latency samples, paced samples, throughput turns, warm-up
    "full": (20_000, 2_000, 20_000, 1_000),
    "quick": (4_000, 500, 4_000, 300),
    "tiny": (300, 50, 300, 50),
}


class Instant:
    """A backend that stores nothing and returns at once (it keeps users apart: it keeps nothing)."""

    name = "instant"
    separates_users = True

    @memcore.hookimpl
    def memcore_open_session(self, session: memcore.Session) -> None:
        return None

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        return None

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        return None


class CountingSpans(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.spans += len(spans)
        return SpanExportResult.SUCCESS


class DiscardMetrics(MetricExporter):
    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


class Telemetry:
    """The observer of one mode, and how to shut it down (and count what it exported)."""

    def __init__(self, mode: str) -> None:
        self.exported = CountingSpans()
        self._tracer: TracerProvider | None = None
        self._meter: MeterProvider | None = None
        self.plugins: list[Any] = []
        if mode == "api":
            self.plugins = [OtelObserver(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())]
        elif mode == "sdk":
            self._tracer = TracerProvider()
            self._tracer.add_span_processor(BatchSpanProcessor(self.exported, max_queue_size=1_000_000))
            reader = PeriodicExportingMetricReader(DiscardMetrics(), export_interval_millis=1_000)
            self._meter = MeterProvider(metric_readers=[reader])
            self.plugins = [OtelObserver(tracer_provider=self._tracer, meter_provider=self._meter)]

    def shutdown(self) -> int:
        """Flush and stop; the spans exported."""
        if self._tracer is not None:
            self._tracer.shutdown()
        if self._meter is not None:
            self._meter.shutdown()
        return self.exported.spans


def make_backend(name: str, directory: Path) -> Any:
    if name == "instant":
        return Instant()
    return memcore.SQLiteBackend(path=directory / f"store-{time.perf_counter_ns()}.sqlite3")


@dataclass
class Run:
    backend: str
    mode: str
    repeat: int
    p50_us: float
    p99_us: float
    paced_p50_us: float
    paced_p99_us: float
    turns_per_s: float
    cpu_us_per_turn: float
    spans_exported: int
    calls: int  # backend calls made (each gets a span in the sdk mode)


@dataclass
class Row:
    backend: str
    mode: str
    p50_us: float
    p99_us: float
    paced_p50_us: float
    paced_p99_us: float
    turns_per_s: float
    cpu_us_per_turn: float
    # on / off, the median over the repeats of each repeat's own ratio (the modes of a repeat run back to back)
    p50_ratio: float
    p99_ratio: float
    paced_p50_ratio: float
    paced_p99_ratio: float
    throughput_ratio: float  # below 1: fewer turns a second
    cpu_ratio: float  # above 1: more CPU per turn


@dataclass
class Results(BenchResults):
    benchmark: str = "otel_overhead"
    runs: list[Run] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


def latency(memory: memcore.Memory, samples: int, warmup: int, gap: float) -> list[int]:
    lcs = [memory.lifecycle(f"lat-{n}") for n in range(LIFECYCLES)]
    pc = time.perf_counter_ns
    for n in range(warmup):
        lcs[n % LIFECYCLES].sync_turn("user text", "assistant text")
    memory.flush(timeout=120)
    out = []
    for n in range(samples):
        if gap:
            time.sleep(gap)
        lc = lcs[n % LIFECYCLES]
        t0 = pc()
        lc.sync_turn("user text", "assistant text")
        out.append(pc() - t0)
    memory.flush(timeout=120)
    return sorted(out)


def throughput(memory: memcore.Memory, turns: int) -> tuple[float, float]:
    """Turns a second, wall clock, and the process's CPU time per turn in microseconds (every thread: the caller,
    the workers, the journal writer, the SDK's exporter), which the neighbours on a shared machine disturb far less."""
    lcs = [memory.lifecycle(f"tp-{n}") for n in range(LIFECYCLES)]
    t0, c0 = time.perf_counter(), time.process_time()
    for n in range(turns):
        lcs[n % LIFECYCLES].sync_turn("user text", "assistant text")
    report = memory.flush(timeout=300)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not report.ok:
        raise RuntimeError(f"flush did not deliver everything: {report}")
    return turns / elapsed, cpu / turns * 1e6


def one_run(backend: str, mode: str, repeat: int, size: tuple[int, int, int, int], directory: Path) -> Run:
    samples, paced, turns, warmup = size
    telemetry = Telemetry(mode)
    memory = memcore.Memory(backends=[make_backend(backend, directory)], plugins=telemetry.plugins)
    try:
        fast = latency(memory, samples, warmup, 0.0)
        slow = latency(memory, paced, min(warmup, 50), PACED_GAP)
        rate, cpu = throughput(memory, turns)
        report = memory.close(timeout=120)
    finally:
        exported = telemetry.shutdown()
    calls = report.delivered + report.committed + 2 * LIFECYCLES  # + one open per session (lat-*, tp-*)
    return Run(
        backend=backend,
        mode=mode,
        repeat=repeat,
        p50_us=percentile(fast, 50),
        p99_us=percentile(fast, 99),
        paced_p50_us=percentile(slow, 50),
        paced_p99_us=percentile(slow, 99),
        turns_per_s=rate,
        cpu_us_per_turn=cpu,
        spans_exported=exported,
        calls=calls,
    )


def summarize(runs: Sequence[Run]) -> list[Row]:
    figures = ("p50_us", "p99_us", "paced_p50_us", "paced_p99_us", "turns_per_s", "cpu_us_per_turn")

    def pick(backend: str, mode: str) -> dict[int, Run]:
        return {r.repeat: r for r in runs if r.backend == backend and r.mode == mode}

    rows = []
    for backend in dict.fromkeys(r.backend for r in runs):
        off = pick(backend, "off")
        for mode in MODES:
            on = pick(backend, mode)

            def median(key: str, on: dict[int, Run] = on) -> float:
                return float(statistics.median(getattr(r, key) for r in on.values()))

            def ratio(key: str, on: dict[int, Run] = on, off: dict[int, Run] = off) -> float:
                return float(statistics.median(getattr(on[k], key) / getattr(off[k], key) for k in on))

            rows.append(
                Row(
                    backend=backend,
                    mode=mode,
                    p50_ratio=ratio("p50_us"),
                    p99_ratio=ratio("p99_us"),
                    paced_p50_ratio=ratio("paced_p50_us"),
                    paced_p99_ratio=ratio("paced_p99_us"),
                    throughput_ratio=ratio("turns_per_s"),
                    cpu_ratio=ratio("cpu_us_per_turn"),
                    **{key: median(key) for key in figures},
                )
            )
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples and turns (~1 min)")
    parser.add_argument("--tiny", action="store_true", help="the smallest run, for tests (implies --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each (backend, mode), interleaved (5; 2)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help=f"where to write the JSON (default {DEFAULT_JSON}; a quick run: "
        f"{json_path('otel_overhead', None, quick=True)}, and never a tracked results file)",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.quick = True
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    home = tempfile.TemporaryDirectory(prefix="memcore-bench-")
    os.environ["MEMCORE_HOME"] = home.name
    size_name = "tiny" if args.tiny else "quick" if args.quick else "full"
    size = SIZES[size_name]
    repeats: int = args.repeats or (1 if args.tiny else 2 if args.quick else 5)
    res = Results(quick=args.quick, config={"size": size_name, "sizes": SIZES[size_name], "repeats": repeats})
    begin = time.perf_counter()
    progress: Callable[[str], None] = progress_printer(begin)
    for repeat in range(repeats):
        for backend in BACKENDS:
            for mode in MODES:
                progress(f"repeat {repeat + 1}/{repeats}: {backend}, plugin {mode}")
                run = one_run(backend, mode, repeat, size, Path(home.name))
                if mode == "sdk" and run.spans_exported < run.calls:
                    raise RuntimeError(f"the SDK exported {run.spans_exported} spans for {run.calls} calls")
                res.runs.append(run)
    res.rows = summarize(res.runs)
    res.total_seconds = time.perf_counter() - begin
    print(f"memcore-otel overhead ({size_name}, median of {repeats}; ratios are plugin on / off)\n")
    print_table(
        [
            "backend / plugin",
            "p50 us",
            "p99 us",
            "paced p50",
            "paced p99",
            "turns/s",
            "CPU us/turn",
            "p50 x",
            "p99 x",
            "turns/s x",
            "CPU x",
        ],
        [
            [
                f"{r.backend} / {r.mode}",
                fmt(r.p50_us, ".2f"),
                fmt(r.p99_us, ".1f"),
                fmt(r.paced_p50_us, ".2f"),
                fmt(r.paced_p99_us, ".1f"),
                fmt(r.turns_per_s, ".0f"),
                fmt(r.cpu_us_per_turn, ".1f"),
                fmt(r.p50_ratio, ".2f"),
                fmt(r.p99_ratio, ".2f"),
                fmt(r.throughput_ratio, ".2f"),
                fmt(r.cpu_ratio, ".2f"),
            ]
            for r in res.rows
        ],
    )
    write_json(res, args.json or json_path("otel_overhead", None, quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())

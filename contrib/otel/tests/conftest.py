"""Every test gets its own MEMCORE_HOME, and OpenTelemetry's SDK with in-memory span and metric exporters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import memcore
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from memcore_otel import ID_KEY_ENV, IDS_ENV, OtelObserver


@pytest.fixture(autouse=True)
def memcore_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "memcore-home"
    monkeypatch.setenv("MEMCORE_HOME", str(home))
    for name in ("MEMCORE_STRICT", IDS_ENV, ID_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    return home


class Telemetry:
    """An SDK tracer and meter provider whose output stays in memory, and readers of what they got."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def observer(self, **settings: Any) -> OtelObserver:
        return OtelObserver(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **settings)

    def spans(self, operation: str | None = None) -> list[ReadableSpan]:
        """Finished spans in the order they started (``memcore.operation`` == ``operation`` if given)."""
        spans = sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
        if operation is None:
            return spans
        return [s for s in spans if (s.attributes or {}).get("memcore.operation") == operation]

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """The data points of metric ``name``: (attributes, point)."""
        found: list[tuple[dict[str, Any], Any]] = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found

    def counts(self) -> dict[tuple[str, str, str], int]:
        """``memcore.operations`` as {(backend, operation, outcome): value}."""
        return {
            (a["memcore.backend"], a["memcore.operation"], a["memcore.outcome"]): int(p.value)
            for a, p in self.points("memcore.operations")
        }

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.shutdown()


@pytest.fixture
def make_memory() -> Iterator[Callable[..., memcore.Memory]]:
    """Memory objects closed when the test ends (explicit ``plugins=``: the tests choose their observer)."""
    made: list[memcore.Memory] = []

    def make(*backends: Any, **kwargs: Any) -> memcore.Memory:
        memory = memcore.Memory(backends=list(backends) or None, **kwargs)
        made.append(memory)
        return memory

    yield make
    for memory in made:
        memory.close(timeout=5.0)

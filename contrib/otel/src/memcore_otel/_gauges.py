"""Gauges: what a Memory holds right now (pending, spilled, in flight, stalled, owed commits, the oldest pending
operation's age, operations accepted), read from :meth:`memcore.Memory.gauges` when the SDK collects.

An observer plugin never sees the Memory it is loaded into, so these are attached explicitly::

    memory = memcore.Memory()
    memcore_otel.observe(memory)

The instruments are made once per meter provider; each observed Memory is held by a weak reference (observing never
keeps one alive) and reported under its ``memcore.memory`` name until it is closed or collected.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable

import memcore
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

__all__ = ["observe"]

log = logging.getLogger("memcore.otel")

SCOPE = "memcore_otel"
VERSION = "0.1.0"

#: (instrument name, unit, description, the Gauge field it reads)
GAUGES = (
    ("memcore.pending", "{operation}", "Operations held in memory: queued, in backoff or in flight.", "pending"),
    ("memcore.spilled", "{operation}", "Operations waiting in the journal only (max_pending reached).", "spilled"),
    ("memcore.in_flight", "{call}", "Backend calls running now.", "in_flight"),
    ("memcore.stalled", "{call}", "Backend calls running past stall_after.", "stalled"),
    ("memcore.owing_commit", "{session}", "Sessions with writes no successful commit covers yet.", "owing_commit"),
    ("memcore.journaled", "{row}", "Journal rows held for the backend (pending and spilled).", "journaled"),
    ("memcore.pending.oldest_age", "s", "How long the oldest operation in memory has waited.", "oldest_pending_s"),
)


class _Registry:
    """The instruments of one meter provider and the Memories they report."""

    def __init__(self, meter_provider: metrics.MeterProvider | None) -> None:
        self.provider = meter_provider  # held, so that its id (the registry's key) is never reused
        self._lock = threading.Lock()
        self._memories: dict[str, weakref.ref[memcore.Memory]] = {}
        meter = metrics.get_meter(SCOPE, VERSION, meter_provider)
        for name, unit, description, field in GAUGES:
            meter.create_observable_gauge(name, [self._reader(field)], unit=unit, description=description)
        meter.create_observable_counter(
            "memcore.accepted",
            [self._reader("accepted")],
            unit="{operation}",
            description="Operations accepted since the Memory started (writes, notes, commits, rewinds, forgets).",
        )

    def add(self, name: str, memory: memcore.Memory) -> None:
        with self._lock:
            self._memories[name] = weakref.ref(memory)

    def _reader(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def read(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                live = [(name, ref()) for name, ref in self._memories.items()]
            out = []
            for name, memory in live:
                if memory is None or memory.closed:
                    with self._lock:
                        self._memories.pop(name, None)
                    continue
                try:
                    gauges = memory.gauges()
                except Exception:  # never raise into the SDK's collection
                    log.exception("memcore-otel: the gauges of Memory %r could not be read", name)
                    continue
                for backend, gauge in gauges.items():
                    value = getattr(gauge, field)
                    if value is not None:
                        out.append(Observation(value, {"memcore.memory": name, "memcore.backend": backend}))
            return out

        return read


_registries: dict[int, _Registry] = {}
_registries_lock = threading.Lock()


def observe(
    memory: memcore.Memory, *, name: str = "default", meter_provider: metrics.MeterProvider | None = None
) -> None:
    """Report ``memory``'s :meth:`~memcore.Memory.gauges` as OpenTelemetry instruments (``memcore.pending``,
    ``memcore.spilled``, ``memcore.in_flight``, ``memcore.stalled``, ``memcore.owing_commit``, ``memcore.journaled``,
    ``memcore.pending.oldest_age``; ``memcore.accepted``, a counter), each point with ``memcore.memory`` (``name``:
    give each Memory of a process its own) and ``memcore.backend``. Read only when the SDK collects; a closed
    Memory stops being reported. ``meter_provider`` defaults to the global one."""
    with _registries_lock:
        registry = _registries.get(id(meter_provider))
        if registry is None:
            registry = _registries[id(meter_provider)] = _Registry(meter_provider)
    registry.add(name, memory)

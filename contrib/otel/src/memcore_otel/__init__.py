"""memcore-otel: OpenTelemetry spans and metrics for memcore, as an observer plugin.

Installed, it is loaded by every ``memcore.Memory`` made without ``plugins=`` (entry-point group ``memcore.plugins``,
name ``otel``); ``memcore.Memory(plugins=[OtelObserver(ids="raw")])`` passes one explicitly. It depends on
``opentelemetry-api`` only: without an SDK configured, its spans and metrics are no-ops. ``observe(memory)`` adds
gauges of what a Memory holds right now (pending, spilled, in flight, stalled, owed commits, the oldest pending age).
"""

from __future__ import annotations

from ._gauges import observe
from ._observer import ID_KEY_ENV, IDS_ENV, OtelObserver

__version__ = "0.1.0"

__all__ = ["IDS_ENV", "ID_KEY_ENV", "OtelObserver", "__version__", "observe"]

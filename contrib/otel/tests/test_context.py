"""Whose child a recall span is. memcore runs a backend's recall on its recall workers, in a copy of the caller's
context taken when the recall was asked for, so the caller's current span is the recall span's parent; lane work
(writes, notes, commits) runs later and has root spans."""

from __future__ import annotations

import asyncio
from typing import Any

import memcore
import pytest


def _recall_in(otel: Any, memory: memcore.Memory, how: str) -> tuple[Any, Any]:
    lc = memory.lifecycle("s1")
    lc.remember("Prefers espresso in the morning", kind="preference")
    assert memory.flush(timeout=10).ok
    tracer = otel.tracer_provider.get_tracer("agent")
    with tracer.start_as_current_span("agent turn") as turn:
        if how == "recall":
            assert lc.recall("espresso", timeout=5)
        elif how == "prefetch":
            lc.queue_prefetch("espresso")
            assert lc.take_prefetch(timeout=5)
        else:
            assert asyncio.run(lc.arecall("espresso", timeout=5))
    (recall,) = otel.spans("recall")
    return recall, turn


@pytest.mark.parametrize("how", ["recall", "prefetch", "arecall"])
def test_a_recall_span_is_a_child_of_the_callers_span(otel, make_memory, how):
    """memcore runs each recall task in a copy of the caller's context (RecallPool.submit), so the span the
    wrapper opens on the recall worker is the caller's child."""
    memory = make_memory(plugins=[otel.observer()])
    recall, turn = _recall_in(otel, memory, how)
    assert recall.parent is not None
    assert recall.parent.span_id == turn.get_span_context().span_id
    assert recall.context.trace_id == turn.get_span_context().trace_id


def test_lane_spans_are_roots(otel, make_memory):
    """Writes, notes and commits run long after the call that queued them (on a lane worker, possibly after a retry
    or in another process after a replay): their spans are roots, one trace each."""
    memory = make_memory(plugins=[otel.observer()])
    tracer = otel.tracer_provider.get_tracer("agent")
    with tracer.start_as_current_span("agent turn"):
        memory.lifecycle("s1").sync_turn("hello", "hi")
    memory.close(timeout=10)
    assert otel.spans("write") and all(s.parent is None for s in otel.spans())

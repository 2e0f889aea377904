"""Whose child a recall span is. memcore runs a backend's recall on its recall workers, and the wrapper runs there
too, in that thread's context: the caller's current span is not visible to it. What the core would need is one
line, a copy of the caller's context per recall task (``contextvars.copy_context()`` when the task is submitted, on
the caller's thread, and ``context.run(task)`` on the worker); the second test makes that change with monkeypatch
and shows the observer then needs nothing more."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from typing import Any

import memcore
import pytest
from memcore import _recall_pool


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


def test_today_a_recall_span_is_a_root_of_its_own_trace(otel, make_memory):
    """The gap, recorded: when memcore starts passing the caller's context to its recall workers, this test fails
    and the next one's monkeypatch can go."""
    memory = make_memory(plugins=[otel.observer()])
    recall, turn = _recall_in(otel, memory, "recall")
    assert recall.parent is None
    assert recall.context.trace_id != turn.get_span_context().trace_id


@pytest.mark.parametrize("how", ["recall", "prefetch", "arecall"])
def test_with_the_callers_context_copied_a_recall_span_is_its_child(otel, make_memory, monkeypatch, how):
    submit = _recall_pool.RecallPool.submit

    def submit_in_callers_context(self: Any, backend: int, task: Any, **kwargs: Any) -> None:
        # What the core would do: one copy per task (a Context cannot be entered by two threads at once).
        submit(self, backend, functools.partial(contextvars.copy_context().run, task), **kwargs)

    monkeypatch.setattr(_recall_pool.RecallPool, "submit", submit_in_callers_context)
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

"""Lane workers and CPUs: while as many calls as there are CPUs have just started, a worker with runnable work waits
for them rather than start another call that would only take turns at the GIL; a call that waits (on the network, at
a gate) soon stops counting, so it never holds other sessions' work. The pool's notion of "just started" runs on a
clock the tests move; nothing sleeps and hopes."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pytest
from recording import RecordingBackend
from test_reliability import drain, eventually

import memcore
from memcore import _pool
from memcore.testing import ManualClock


@pytest.fixture
def one_cpu(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """One CPU, and the pool's ``time.monotonic()`` on a clock the test moves."""
    clock = ManualClock()
    monkeypatch.setattr(_pool, "_cpus", lambda: 1)
    monkeypatch.setattr(_pool, "time", types.SimpleNamespace(monotonic=clock))
    return clock


def test_while_a_call_is_young_a_second_worker_waits_then_runs_once_it_is_old(
    make_memory: Callable[..., memcore.Memory], backend: RecordingBackend, one_cpu: ManualClock
) -> None:
    gate = backend.hold("write", "first")
    memory = make_memory(backend, workers=4, journal=False)
    pool = memory._scheduler._pool
    memory.lifecycle("first").sync_turn("one", "a")
    eventually(lambda: gate.count == 1)
    memory.lifecycle("second").sync_turn("two", "b")
    eventually(lambda: _parked(pool) == 1)  # a worker has the second session's write and waits for a CPU
    assert backend.attempts("write", "second") == 0 and pool.running == 1
    one_cpu.advance(_pool.YOUNG)  # the held call is old now: it waits on something, it needs no CPU
    eventually(lambda: backend.texts("second") == ["two", "b"])
    assert gate.count == 1  # still held: the second session did not wait for it
    gate.release()
    drain(memory)
    assert backend.texts("first") == ["one", "a"]


def test_calls_that_wait_never_hold_other_sessions_work_with_fewer_cpus_than_workers(
    make_memory: Callable[..., memcore.Memory], backend: RecordingBackend, one_cpu: ManualClock
) -> None:
    gate = backend.hold("write", when=lambda turn: turn[0].content == "held")
    memory = make_memory(backend, workers=4, journal=False)
    for k in range(3):  # three workers in held calls, one CPU
        memory.lifecycle(f"held-{k}").sync_turn("held", "a")
        eventually(lambda k=k: gate.count == k + 1 or _parked(memory._scheduler._pool) > 0)  # type: ignore[misc]
        one_cpu.advance(_pool.YOUNG)
    eventually(lambda: gate.count == 3)
    for k in range(5):
        memory.lifecycle(f"free-{k}").sync_turn("free", "b")
    eventually(lambda: all(backend.texts(f"free-{k}") == ["free", "b"] for k in range(5)))
    gate.release()
    drain(memory)


def test_the_cpus_are_those_this_process_may_run_on() -> None:
    assert _pool._cpus() >= 1


def _parked(pool: Any) -> int:
    with pool._cond:
        return int(pool._parked)

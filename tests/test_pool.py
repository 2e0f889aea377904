"""The pool at its edges: backends never hold each other's work or recall (G9), threads and memory stay bounded (G8),
one definition of transient, and a closed Memory answers at once. Calls are held at gates; nothing sleeps and hopes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from recording import WAIT, RecordingBackend
from test_reliability import FAST, drain, eventually

import memcore
import memcore.http
from memcore import Message, Recollection, Session
from memcore._lanes import Lanes
from memcore._retry import is_transient
from memcore._sqlite import SQLiteBackend

# -- stalls ---------------------------------------------------------------------------------------------------------


def test_g9_a_stalled_call_frees_its_share_while_other_workers_sit_idle(make_memory):
    hung, healthy = RecordingBackend("hung"), RecordingBackend("healthy")
    gate = hung.hold("write", when=lambda turn: turn[0].content == "held")
    memory = make_memory(hung, healthy, workers=4, stall_after=0.05)  # a share of 2 lane workers each
    for k in range(2):  # the hung backend's whole share; the healthy one's workers go idle
        memory.lifecycle(f"h{k}").sync_turn("held", "a")
    eventually(lambda: gate.count == 2 and healthy.texts("h1") == ["held", "a"])
    memory.lifecycle("free").sync_turn("one", "a")
    # No further submit, flush or close: an idle worker notices the stall and runs the hung backend's next session.
    eventually(lambda: hung.texts("free") == ["one", "a"])
    assert memory._scheduler.lane_threads == 4  # idle workers took it: no stand-in was needed
    gate.release()
    drain(memory)
    assert hung.violations == []


def test_g8_lane_threads_never_exceed_workers_plus_max_stalled(make_memory, backend):
    gate = backend.hold("write", when=lambda turn: turn[0].content == "held")
    memory = make_memory(backend, workers=2, stall_after=0.05, max_stalled=3)
    scheduler = memory._scheduler
    assert scheduler.thread_bound == 2 + 3 + 2  # lane workers, stand-ins, recall workers
    for k in range(10):  # far more hung calls than the bound
        memory.lifecycle(f"h{k}").sync_turn("held", "a")
        memory.flush(timeout=0.06)  # each wait looks for stalled calls and starts stand-ins
        assert scheduler.lane_threads <= 5
    eventually(lambda: gate.count == 5)  # 2 workers + 3 stand-ins, each in a hung call
    memory.flush(timeout=0.2)
    assert gate.count == 5 and scheduler.lane_threads == 5
    gate.release()
    drain(memory)
    eventually(lambda: scheduler.lane_threads == 2)


class HeldSQLite(SQLiteBackend):
    """The real SQLite backend, with writes of "held" turns held at a gate (test instrumentation)."""

    def __init__(self, gate: threading.Event, **kwargs: Any):
        super().__init__(**kwargs)
        self.gate = gate
        self.held = 0

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        if messages[0].content == "held":
            self.held += 1
            assert self.gate.wait(WAIT * 3)
        super().memcore_write(session, messages)


def test_g8_waves_of_stalls_leave_no_threads_nor_connections_behind(make_memory, tmp_path):
    workers = 2
    for wave in range(6):
        gate = threading.Event()
        store = HeldSQLite(gate, path=tmp_path / f"wave{wave}.sqlite3")
        memory = make_memory(store, workers=workers, stall_after=0.05, max_stalled=2)
        scheduler = memory._scheduler
        for k in range(4):
            memory.lifecycle(f"h{k}").sync_turn("held", "a")
        while store.held < 4:  # the stalls make room for stand-ins, which take the next held calls
            memory.flush(timeout=0.06)
        assert scheduler.lane_threads == workers + 2
        memory.lifecycle("free").sync_turn("one", "a")
        gate.set()
        drain(memory)
        eventually(lambda s=scheduler: s.lane_threads == workers)
        assert len(scheduler._pool._threads) == workers  # no Thread object of a stand-in is kept
        # Each stand-in's connection went with its thread: the workers' and the constructing thread's are left.
        eventually(lambda s=store: s.open_connections <= workers + 1)
        memory.close(timeout=WAIT)
        assert store.open_connections == 0


def test_g8_the_opened_sessions_a_lane_table_remembers_are_bounded():
    class Opener:
        name, index, capabilities = "opener", 0, frozenset({"write", "open_session"})

    lanes = Lanes(opened_kept=3)
    backend: Any = Opener()
    for k in range(10):
        lane = lanes.get(backend, Session(id=f"s{k}"))
        assert not lane.opened
        lane.opened = True
        lanes.retire_if_clean(lane)
    assert len(lanes) == 0 and list(lanes._opened[0]) == ["s7", "s8", "s9"]
    assert lanes.get(backend, Session(id="s9")).opened  # recent: not opened again
    assert not lanes.get(backend, Session(id="s0")).opened  # forgotten: opened again (open is idempotent)


# -- the pending bound, per backend -----------------------------------------------------------------------------


def test_g8_a_hung_backend_fills_only_its_own_bound(make_memory):
    hung, healthy = RecordingBackend("hung"), RecordingBackend("healthy")
    gate = hung.hold("write")
    memory = make_memory(hung, healthy, workers=2, max_pending=10)  # 5 in memory per backend, journal on
    lifecycles = [memory.lifecycle(f"s{k}") for k in range(2)]
    for i in range(20):
        for lc in lifecycles:
            lc.sync_turn(f"{lc.session_id} {i}", "a")
    # The healthy backend receives every turn while the other hangs; the hung one's backlog is in the journal.
    eventually(lambda: all(len(healthy.calls("write", lc.session_id)) == 20 for lc in lifecycles))
    report = memory.flush(timeout=0)
    assert report.spilled > 0 and report.pending - report.spilled <= 5
    gate.release()
    drain(memory)
    for lc in lifecycles:
        expected = [t for i in range(20) for t in (f"{lc.session_id} {i}", "a")]
        assert hung.texts(lc.session_id) == healthy.texts(lc.session_id) == expected


def test_g8_without_a_journal_the_per_backend_bound_refuses_the_whole_write(make_memory):
    hung, healthy = RecordingBackend("hung"), RecordingBackend("healthy")
    gate = hung.hold("write")
    memory = make_memory(hung, healthy, workers=2, max_pending=100, max_pending_per_backend=3, journal=False)
    lc = memory.lifecycle("s")
    for i in range(3):
        lc.sync_turn(f"t{i}", "a")
    eventually(lambda: len(healthy.calls("write")) == 3)
    with pytest.raises(memcore.PendingLimitExceeded, match="3 per backend"):
        lc.sync_turn("t3", "a")
    gate.release()
    drain(memory)
    assert hung.texts("s") == healthy.texts("s") == [t for i in range(3) for t in (f"t{i}", "a")]


# -- recall ---------------------------------------------------------------------------------------------------------


def test_g9_every_backend_answers_recall_while_two_others_hang():
    a, b = RecordingBackend("a"), RecordingBackend("b")
    c = RecordingBackend("c", recall_answer=[Recollection(text="espresso at 7")])
    gates = [a.hold("recall"), b.hold("recall")]
    memory = memcore.Memory(backends=[a, b, c], plugins=[], journal=False)  # the default 2 recall workers
    try:
        for _ in range(3):  # recalls pile up on the hung backends
            memory.recall("coffee", timeout=0.01)
        for gate in gates:
            gate.wait_entered()
        call = memory._start_recall("coffee", None, 5, WAIT)
        eventually(lambda: [r.text for r in call.results()] == ["espresso at 7"])
        assert c.attempts("recall") == 4
    finally:
        for gate in gates:
            gate.release()
        memory.close(timeout=WAIT)


class RecallAware(RecordingBackend):
    """Records a close that runs while one of its recalls is in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.recalling = 0

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: Session | None, limit: int) -> Sequence[Recollection]:
        self.recalling += 1
        try:
            return super().memcore_recall(query, session, limit)
        finally:
            self.recalling -= 1

    @memcore.hookimpl
    def memcore_close(self) -> None:
        if self.recalling:
            self.violations.append("memcore_close ran while a recall was in flight")
        super().memcore_close()


def test_g10_a_backend_is_closed_only_after_its_recall_in_flight_returned():
    backend = RecallAware()
    gate = backend.hold("recall")
    memory = memcore.Memory(backends=[backend], plugins=[], journal=False)
    memory.recall("q", timeout=0.01)  # returns at once; the call stays in flight at the gate
    gate.wait_entered()
    closing = threading.Thread(target=memory.close, kwargs={"timeout": WAIT})
    closing.start()
    eventually(lambda: bool(memory._scheduler.recall._closers))  # close waits for the recall to return
    assert not backend.closed.is_set()
    gate.release()
    closing.join(WAIT)
    assert backend.closed.is_set() and backend.violations == []


def test_recall_and_prefetch_after_close_raise_at_once(make_memory, backend):
    memory = make_memory(backend)
    lc = memory.lifecycle("s")
    memory.close(timeout=WAIT)
    with pytest.raises(memcore.MemoryClosed):
        memory.recall("q", timeout=WAIT)
    with pytest.raises(memcore.MemoryClosed):
        lc.recall("q", timeout=WAIT)
    with pytest.raises(memcore.MemoryClosed):
        lc.queue_prefetch("q", timeout=WAIT)
    assert lc.take_prefetch() == []
    assert backend.attempts("recall") == 0


def test_a_recall_queued_at_close_is_cancelled_and_its_caller_told_at_once():
    backend = RecordingBackend()
    gate = backend.hold("recall")
    memory = memcore.Memory(backends=[backend], plugins=[], journal=False, recall_workers=1)
    memory.recall("first", timeout=0.01)
    gate.wait_entered()  # the one recall worker is held
    waiting = memory._start_recall("second", None, 5, WAIT * 3)
    closing = threading.Thread(target=memory.close, kwargs={"timeout": WAIT})
    closing.start()
    assert waiting.wait(WAIT)  # cancelled: answered (empty) long before its own deadline
    assert waiting.results() == [] and "rec" in waiting.errors
    gate.release()
    closing.join(WAIT)


# -- one definition of transient --------------------------------------------------------------------------------------


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://svc.test/x")
    return httpx.HTTPStatusError(f"{status}", request=request, response=httpx.Response(status, request=request))


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectTimeout("slow"), httpx.ReadError("reset"), _status_error(503), _status_error(429)],
    ids=["connect-timeout", "read-error", "503", "429"],
)
def test_g9_httpx_errors_let_through_are_retried_like_mapped_ones(make_memory, backend, error):
    assert memcore.http.is_transient is is_transient and is_transient(error)
    memory = make_memory(backend, retry=FAST)
    backend.fail_next("write", error)
    memory.lifecycle("s").sync_turn("once", "a")
    report = drain(memory)
    assert report.retried == 1 and report.failed == 0
    assert backend.texts("s") == ["once", "a"] and backend.attempts("write") == 2


def test_g9_a_final_httpx_status_is_not_retried(make_memory, backend):
    assert not is_transient(_status_error(404))
    memory = make_memory(backend, retry=FAST)
    backend.fail_next("write", _status_error(404))
    memory.lifecycle("s").sync_turn("lost", "a")
    assert drain(memory).failed == 1 and backend.attempts("write") == 1


# -- the largest write a backend takes --------------------------------------------------------------------------------


class Batched(RecordingBackend):
    """Takes at most 100 messages a write; the second write it sees fails transiently."""

    max_write_messages = 100

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        self.sizes.append(len(messages))
        if len(self.sizes) == 2:
            raise memcore.TransientError("the second part, once")
        super().memcore_write(session, messages)


def test_a_turn_longer_than_max_write_messages_is_split_and_a_retry_resends_one_part(make_memory):
    backend = Batched()
    memory = make_memory(backend, retry=FAST)
    memory.lifecycle("s").sync_turn("", "", messages=[{"role": "user", "content": f"m{i}"} for i in range(250)])
    drain(memory)
    assert backend.sizes == [100, 100, 100, 50]  # 350 messages sent in all, not 250 + 250
    assert backend.texts("s") == [f"m{i}" for i in range(250)]


def test_max_write_messages_must_be_a_positive_integer():
    class Bad(RecordingBackend):
        max_write_messages = 0

    with pytest.raises(memcore.PluginError, match="max_write_messages"):
        memcore.Memory(backends=[Bad()], plugins=[], journal=False)

"""One or more tests per guarantee of DESIGN.md, named after it, against the controllable RecordingBackend.

Races are made deterministic with gates (events): a test holds a backend call, does what it needs while the call is
provably in flight, then releases it. Nothing here sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from recording import WAIT, RecordingBackend

import memcore
from memcore import Recollection


def drain(memory: memcore.Memory) -> memcore.Report:
    report = memory.flush(timeout=WAIT)
    assert not report.timed_out, report
    return report


# -- G1 bound at call time ------------------------------------------------------------------------------------------


def test_g1_worker_delayed_past_switch_still_writes_old_session(memory, backend):
    gate = backend.hold("write", "s1")
    lc = memory.lifecycle("s1")
    lc.sync_turn("first", "a1")
    gate.wait_entered()  # the worker is now inside the backend with the first write
    lc.sync_turn("second", "a2")  # queued behind it
    lc.switch("s2", reason="new")
    lc.sync_turn("third", "a3")
    gate.release()
    drain(memory)
    assert backend.texts("s1") == ["first", "a1", "second", "a2"]
    assert backend.texts("s2") == ["third", "a3"]


def test_g1_note_written_before_switch_lands_in_old_session(memory, backend):
    gate = backend.hold("write", "s1")
    lc = memory.lifecycle("s1")
    lc.sync_turn("hello", "hi")
    gate.wait_entered()
    lc.remember("Prefers espresso in the morning", kind="preference")
    lc.switch("s2", reason="new")
    lc.remember("Deadline is Friday")
    gate.release()
    drain(memory)
    assert [n.text for n in backend.calls("remember", "s1")] == ["Prefers espresso in the morning"]
    assert [n.text for n in backend.calls("remember", "s2")] == ["Deadline is Friday"]
    assert backend.calls("remember", "s1")[0].kind == "preference"


def test_g1_many_switches_each_turn_in_its_session(memory, backend):
    lc = memory.lifecycle("s0")
    reasons = ["new", "branch", "resume", "compress"]
    for i in range(1, 200):
        lc.sync_turn(f"u{i}", f"a{i}")
        lc.switch(f"s{i}", reason=reasons[i % 4])
    drain(memory)
    for i in range(1, 200):
        assert backend.texts(f"s{i - 1}") == [f"u{i}", f"a{i}"]


# -- G2 ordered -----------------------------------------------------------------------------------------------------


def test_g2_writes_reach_backend_in_call_order_one_at_a_time(make_memory, backend):
    memory = make_memory(backend, workers=4)
    lifecycles = [memory.lifecycle(f"s{k}") for k in range(8)]
    for i in range(300):
        for k, lc in enumerate(lifecycles):
            lc.sync_turn(f"{k}:{i}", "ok")
            if i % 50 == 0:
                lc.remember(f"note {k}:{i}")
    drain(memory)
    for k in range(8):
        assert backend.texts(f"s{k}")[::2] == [f"{k}:{i}" for i in range(300)]
        assert [n.text for n in backend.calls("remember", f"s{k}")] == [f"note {k}:{i}" for i in range(0, 300, 50)]
    assert backend.violations == []


def test_g2_open_session_once_before_first_write(memory, backend):
    lc = memory.lifecycle("s1", parent_session_id="s0")
    for i in range(5):
        lc.sync_turn(f"u{i}", "a")
    lc.end()
    drain(memory)
    hooks = [h for h, sid, _ in backend.log if sid == "s1"]
    assert hooks == ["open"] + ["write"] * 5 + ["commit"]
    assert backend.calls("open", "s1") == ["s0"]  # the parent id reaches the backend


def test_g2_failed_open_is_retried_before_the_next_operation(memory, backend):
    backend.fail_next("open", RuntimeError("service down"))
    lc = memory.lifecycle("s1")
    lc.sync_turn("lost to the failed open", "a")
    lc.sync_turn("second", "a")
    report = drain(memory)
    assert backend.texts("s1") == ["second", "a"]
    assert report.failed == 1 and report.failures[0].operation == "write"
    assert backend.attempts("open", "s1") == 2 and len(backend.calls("open", "s1")) == 1


# -- G3 drain before commit -----------------------------------------------------------------------------------------


def test_g3_write_outliving_any_fixed_wait_finishes_before_commit(memory, backend):
    gate = backend.hold("write", "s1")
    lc = memory.lifecycle("s1")
    lc.sync_turn("slow", "write")
    gate.wait_entered()
    lc.end()
    # Far past any drain timeout a provider might use: the commit still waits, because it is queued behind the write.
    assert memory.flush(timeout=0.3).timed_out
    assert backend.commits("s1") == 0
    gate.release()
    drain(memory)
    assert [h for h, sid, _ in backend.log if sid == "s1"] == ["open", "write", "commit"]
    assert backend.violations == []


def test_g3_every_in_flight_write_is_waited_for_not_only_the_latest(memory, backend):
    first = backend.hold("write", "s1", when=lambda turn: turn[0].content == "w0")
    lc = memory.lifecycle("s1")
    for i in range(5):
        lc.sync_turn(f"w{i}", "a")
    lc.remember("a note too")
    first.wait_entered()
    lc.switch("s2", reason="new")  # asks for the commit of s1 while w0 is in flight and w1..w4 are queued
    first.release()
    drain(memory)
    s1 = [(h, p) for h, sid, p in backend.log if sid == "s1"]
    assert [h for h, _ in s1] == ["open", *["write"] * 5, "remember", "commit"]
    assert backend.violations == []


# -- G4 exactly one commit per change -------------------------------------------------------------------------------


def test_g4_end_then_switch_commits_once(memory, backend):
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    lc.end()
    lc.switch("s2", reason="new")
    drain(memory)
    assert backend.commits("s1") == 1
    memory.close(timeout=WAIT)
    assert backend.commits("s1") == 1
    assert backend.commits("s2") == 0  # nothing written there


def test_g4_end_while_commit_in_flight_does_not_commit_again(memory, backend):
    gate = backend.hold("commit", "s1")
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    lc.end()
    gate.wait_entered()
    lc.end()
    lc.switch("s2")
    gate.release()
    drain(memory)
    assert backend.commits("s1") == 1


def test_g4_clean_session_is_not_committed(memory, backend):
    lc = memory.lifecycle("s1")
    lc.end()
    lc.switch("s2")
    drain(memory)
    assert backend.commits() == 0


def test_g4_write_after_commit_makes_session_dirty_again(memory, backend):
    lc = memory.lifecycle("s1")
    lc.sync_turn("u1", "a1")
    lc.end()
    drain(memory)
    lc.sync_turn("u2", "a2")
    report = memory.close(timeout=WAIT)
    assert backend.commits("s1") == 2
    assert report.committed == 2 and report.pending == 0
    assert [h for h, sid, _ in backend.log if sid == "s1"] == ["open", "write", "commit", "write", "commit"]


def test_g4_failed_commit_leaves_session_dirty(memory, backend):
    backend.fail_next("commit", RuntimeError("boom"))
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    lc.end()
    report = drain(memory)
    assert report.failed == 1 and report.committed == 0
    lc.end()  # still dirty: asked again, it commits again
    report = drain(memory)
    assert backend.attempts("commit", "s1") == 2 and report.committed == 1
    lc.end()  # now clean
    drain(memory)
    assert backend.attempts("commit", "s1") == 2


def test_g4_close_retries_a_commit_that_failed(memory, backend):
    backend.fail_next("commit", RuntimeError("boom"))
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    lc.switch("s2")
    drain(memory)
    report = memory.close(timeout=WAIT)
    assert backend.attempts("commit", "s1") == 2
    assert report.committed == 1 and report.failed == 1


# -- G5 never block the caller --------------------------------------------------------------------------------------


def test_g5_calls_return_while_the_backend_is_stuck(memory, backend):
    gate = backend.hold("write")
    lc = memory.lifecycle("s1")
    lc.sync_turn("u0", "a0")
    gate.wait_entered()
    # Every call below would hang (and the test time out) if it waited for the stuck worker.
    for i in range(50):
        lc.sync_turn(f"u{i}", "a")
        lc.remember(f"n{i}")
        lc.end()
        lc.switch(f"s{i + 2}", reason="new")
    assert backend.commits() == 0
    gate.release()
    drain(memory)
    assert backend.commits() == 50


def test_g5_recall_returns_within_its_timeout_when_backend_hangs(memory, backend):
    gate = backend.hold("recall")
    lc = memory.lifecycle("s1")
    start = time.monotonic()
    assert lc.recall("anything", timeout=0.2) == []
    assert time.monotonic() - start < 0.2 + 1.0  # returned at its timeout, not when the backend answered
    gate.wait_entered()
    assert not backend.recall_done.is_set()


def test_g5_slow_backend_does_not_hide_a_fast_one(make_memory):
    slow = RecordingBackend("slow", [Recollection(text="from slow")])
    fast = RecordingBackend("fast", [Recollection(text="from fast")])
    gate = slow.hold("recall")
    memory = make_memory(slow, fast)
    got = memory.lifecycle("s1").recall("q", timeout=0.3)
    assert [r.text for r in got] == ["from fast"]
    assert got[0].source == "fast"
    gate.release()


def test_g5_arecall_does_not_block_the_loop(memory, backend):
    backend.recall_answer = [Recollection(text="espresso")]
    gate = backend.hold("recall")
    lc = memory.lifecycle("s1")

    async def main() -> tuple[list[Recollection], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        pending = asyncio.ensure_future(lc.arecall("coffee", timeout=WAIT))
        await asyncio.get_running_loop().run_in_executor(None, gate.wait_entered)
        gate.release()
        result = await pending
        task.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert [r.text for r in result] == ["espresso"]
    assert ticks > 0


# -- G6 no stale recall ---------------------------------------------------------------------------------------------


def test_g6_prefetch_completing_after_switch_is_never_handed_out(memory, backend):
    backend.recall_answer = [Recollection(text="about s1")]
    gate = backend.hold("recall")
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("q")
    gate.wait_entered()
    lc.switch("s2", reason="new")
    gate.release()
    assert backend.recall_done.wait(WAIT)
    assert lc.take_prefetch(timeout=WAIT) == []


def test_g6_prefetch_before_rewind_is_never_handed_out(memory, backend):
    backend.recall_answer = [Recollection(text="about the undone turn")]
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("q")
    assert backend.recall_done.wait(WAIT)
    lc.switch("s1", reason="rewind")
    assert lc.take_prefetch(timeout=WAIT) == []


def test_g6_fresh_prefetch_is_handed_out_once(memory, backend):
    backend.recall_answer = [Recollection(text="espresso", score=1.0)]
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("coffee")
    got = lc.take_prefetch(timeout=WAIT)
    assert [(r.text, r.source) for r in got] == [("espresso", "rec")]
    assert backend.calls("recall", "s1") == ["coffee"]  # asked for the session that queued it
    assert lc.take_prefetch() == []


def test_g6_prefetch_not_ready_gives_empty_then_later_the_result(memory, backend):
    backend.recall_answer = [Recollection(text="later")]
    gate = backend.hold("recall")
    lc = memory.lifecycle("s1")
    lc.queue_prefetch("q", timeout=WAIT)
    gate.wait_entered()
    assert lc.take_prefetch() == []  # not ready: empty, and not consumed
    gate.release()
    assert [r.text for r in lc.take_prefetch(timeout=WAIT)] == ["later"]


# -- G7 switch semantics --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["new", "branch", "resume", "compress"])
def test_g7_rotating_switch_commits_old_dirty_session(memory, backend, reason):
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    generation = lc.generation
    lc.switch("s2", reason=reason)
    assert lc.session_id == "s2" and lc.generation == generation + 1
    lc.sync_turn("u2", "a2")
    drain(memory)
    assert backend.commits("s1") == 1 and backend.commits("s2") == 0
    expected_parent = "s1" if reason in ("branch", "compress") else None
    assert lc.session.parent_id == expected_parent
    assert backend.calls("open", "s2") == [expected_parent]


def test_g7_branch_takes_an_explicit_parent(memory, backend):
    lc = memory.lifecycle("s1")
    lc.switch("s3", reason="branch", parent_session_id="s0")
    assert lc.session == memcore.Session(id="s3", parent_id="s0")


def test_g7_in_place_compress_commits_and_rearms(memory, backend):
    lc = memory.lifecycle("s1")
    lc.sync_turn("before", "compression")
    lc.switch("s1", reason="compress")
    drain(memory)
    assert lc.session_id == "s1" and backend.commits("s1") == 1
    lc.sync_turn("after", "compression")
    lc.end()
    drain(memory)
    assert backend.commits("s1") == 2
    assert backend.texts("s1") == ["before", "compression", "after", "compression"]


def test_g7_rewind_commits_nothing_and_invalidates_recall(memory, backend):
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    generation = lc.generation
    lc.switch("s1", reason="rewind")
    drain(memory)
    assert backend.commits() == 0
    assert lc.session_id == "s1" and lc.generation == generation + 1


def test_g7_rewind_to_another_id_is_refused(memory, backend):
    lc = memory.lifecycle("s1")
    with pytest.raises(memcore.InvalidSwitch, match="rewind keeps the session"):
        lc.switch("s2", reason="rewind")
    assert lc.session_id == "s1" and lc.generation == 0


@pytest.mark.parametrize("bad", ["", "   ", "x" * 257, "a\nb", "nul\x00", None, 42])
def test_g7_invalid_new_id_raises_and_changes_nothing(memory, backend, bad):
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    with pytest.raises(memcore.InvalidSessionId):
        lc.switch(bad, reason="new")
    assert lc.session_id == "s1" and lc.generation == 0
    drain(memory)
    assert backend.commits() == 0 and backend.texts("s1") == ["u", "a"]


def test_g7_unknown_reason_raises_and_changes_nothing(memory, backend):
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    with pytest.raises(memcore.UnknownSwitchReason, match="'fork'"):
        lc.switch("s2", reason="fork")
    assert lc.session_id == "s1"
    drain(memory)
    assert backend.commits() == 0


# -- G8 bounded -----------------------------------------------------------------------------------------------------


def test_g8_threads_are_a_fixed_pool_whatever_the_sessions(make_memory, backend):
    before = threading.active_count()
    memory = make_memory(backend, workers=3, recall_workers=2)
    gate = backend.hold("write")
    for k in range(500):
        lc = memory.lifecycle(f"s{k}")
        for i in range(4):
            lc.sync_turn(f"u{i}", "a")
    gate.wait_entered()
    assert threading.active_count() == before + 7  # 3 lane + 2 recall workers, the journal writer, its checkpointer
    assert memory.flush(timeout=0).pending == 2000
    gate.release()
    drain(memory)
    assert threading.active_count() == before + 7  # 3 lane + 2 recall workers, the journal writer, its checkpointer


def test_g8_pending_bound_without_journal_refuses_with_a_clear_error_and_loses_nothing(make_memory, backend):
    memory = make_memory(backend, max_pending=10, journal=False)
    gate = backend.hold("write")
    lc = memory.lifecycle("s1")
    for i in range(10):
        lc.sync_turn(f"u{i}", "a")
    gate.wait_entered()
    with pytest.raises(memcore.PendingLimitExceeded, match="max_pending=10"):
        lc.sync_turn("one too many", "a")
    gate.release()
    drain(memory)
    assert backend.texts("s1")[::2] == [f"u{i}" for i in range(10)]
    lc.sync_turn("room again", "a")  # once drained, writes are accepted again
    drain(memory)
    assert backend.texts("s1")[-2:] == ["room again", "a"]


def test_g8_committed_idle_sessions_are_forgotten_and_opened_only_once(memory, backend):
    lifecycles = [memory.lifecycle(f"s{k}") for k in range(300)]
    for lc in lifecycles:
        lc.sync_turn("u", "a")
        lc.end()
    drain(memory)
    scheduler = memory._scheduler
    assert len(scheduler._lanes) == 0  # nothing live is kept for 300 committed, idle sessions
    for lc in lifecycles[:10]:
        lc.sync_turn("again", "a")  # a later write to a forgotten session: not opened a second time
    drain(memory)
    assert len(scheduler._lanes) == 10  # dirty again, kept until committed
    assert all(len(backend.calls("open", f"s{k}")) == 1 for k in range(300))
    report = memory.close(timeout=WAIT)
    assert report.committed == 310 and backend.commits("s0") == 2 and backend.commits("s10") == 1


# -- G10 (the part of it in the core issue): close commits, drains within its deadline ------------------------------


def test_g10_close_commits_every_dirty_session_and_closes_backends(memory, backend):
    a, b = memory.lifecycle("a1"), memory.lifecycle("b1")
    a.sync_turn("u", "a")
    b.sync_turn("u", "b")
    b.end()
    b.sync_turn("again", "b")
    report = memory.close(timeout=WAIT)
    assert backend.commits("a1") == 1 and backend.commits("b1") == 2
    assert report.ok and report.delivered == 3 and report.committed == 3
    assert backend.closed.is_set()
    assert memory.close() is report  # idempotent
    with pytest.raises(memcore.MemoryClosed):
        a.sync_turn("late", "x")


def test_g10_close_with_a_hung_backend_returns_within_its_deadline(memory, backend):
    gate = backend.hold("write")
    lc = memory.lifecycle("s1")
    for i in range(3):
        lc.sync_turn(f"u{i}", "a")
    gate.wait_entered()
    start = time.monotonic()
    report = memory.close(timeout=0.3)
    assert time.monotonic() - start < 0.3 + 1.0
    assert report.timed_out and not report.ok
    assert report.pending == 4  # the write in flight, two queued, and the commit queued by close
    assert not backend.closed.is_set()  # a backend with work in flight is not closed under it
    gate.release()


def test_flush_waits_for_everything_accepted(memory, backend):
    gate = backend.hold("write", "s1")
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    gate.wait_entered()
    assert memory.flush(timeout=0.05).pending == 1
    gate.release()
    report = drain(memory)
    assert report.pending == 0 and report.delivered == 1


# -- G9 (core part): failures stay inside ---------------------------------------------------------------------------


def test_g9_backend_errors_never_reach_the_caller_and_are_reported(make_memory, backend):
    seen: list[memcore.Event] = []

    class Observer:
        name = "observer"

        @memcore.hookimpl
        def memcore_event(self, event: memcore.Event) -> None:
            seen.append(event)

    class Broken:
        name = "broken"

        @memcore.hookimpl
        def memcore_event(self, event: memcore.Event) -> None:
            raise RuntimeError("observer bug")

    memory = make_memory(backend, plugins=[Broken(), Observer()])
    backend.fail_next("write", ValueError("rejected"))
    lc = memory.lifecycle("s1")
    lc.sync_turn("u1", "a")
    lc.sync_turn("u2", "a")
    report = drain(memory)
    assert report.failed == 1 and "rejected" in report.failures[0].error
    assert [(e.kind, e.operation) for e in seen] == [("failed", "write"), ("delivered", "write")]
    assert backend.texts("s1") == ["u2", "a"] and backend.attempts("write", "s1") == 2


def test_g9_a_failing_backend_warns_once_not_once_per_operation(memory, backend, caplog):
    backend.fail_next("write", *[RuntimeError("rejected")] * 20)
    lc = memory.lifecycle("s1")
    with caplog.at_level("WARNING", logger="memcore"):
        for i in range(20):
            lc.sync_turn(f"u{i}", "a")
        report = drain(memory)
    assert report.failed == 20
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1

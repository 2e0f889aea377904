"""G9 retries and G10 journal, close and exit: nothing lost under faults, slow services, shutdown and crashes."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest
from recording import WAIT, RecordingBackend

import memcore
from memcore import RetryPolicy, TransientError

FAST = RetryPolicy(initial=0.001, max_delay=0.01, deadline=WAIT)


def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait for a condition another thread makes true (polling, bounded); fail the test if it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.001)


def drain(memory: memcore.Memory) -> memcore.Report:
    report = memory.flush(timeout=WAIT)
    assert not report.timed_out, report
    return report


# -- retries (G9) ---------------------------------------------------------------------------------------------------


def test_g9_delays_grow_with_jitter_cap_and_retry_after():
    policy = RetryPolicy(initial=0.1, multiplier=2, max_delay=1.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay(n, rng=rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        base = min(0.1 * 2 ** (n - 1), 1.0)
        assert base * 0.5 <= d <= base
    assert policy.delay(1, retry_after=3.0, rng=rng) == 3.0
    assert RetryPolicy(jitter=0).delay(3) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        RetryPolicy(multiplier=0.5)


@pytest.mark.parametrize("error", [TransientError("503"), ConnectionError("reset"), TimeoutError("slow")])
def test_g9_transient_failures_are_retried_in_order(make_memory, backend, error):
    seen: list[memcore.Event] = []

    class Observer:
        @memcore.hookimpl
        def memcore_event(self, event: memcore.Event) -> None:
            seen.append(event)

    memory = make_memory(backend, retry=FAST, plugins=[Observer()])
    backend.fail_next("write", error, error, error)
    lc = memory.lifecycle("s1")
    for i in range(5):
        lc.sync_turn(f"u{i}", "a")
    lc.end()
    report = drain(memory)
    assert backend.texts("s1")[::2] == [f"u{i}" for i in range(5)]
    assert report.retried == 3 and report.failed == 0 and report.delivered == 5 and report.committed == 1
    assert [e.kind for e in seen].count("retried") == 3
    assert backend.violations == []


def test_g9_non_transient_errors_are_final_at_once(make_memory, backend):
    memory = make_memory(backend, retry=FAST)
    backend.fail_next("write", ValueError("400 bad request"))
    memory.lifecycle("s1").sync_turn("u", "a")
    report = drain(memory)
    assert report.failed == 1 and report.retried == 0


def test_g9_retries_stop_at_the_operation_deadline(make_memory, backend):
    memory = make_memory(backend, retry=RetryPolicy(initial=0.01, max_delay=0.01, deadline=0.05))
    backend.fail_next("write", *[TransientError("down")] * 1000)
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    report = drain(memory)
    assert report.failed == 1 and 1 <= report.retried <= 10
    backend.failures.clear()
    lc.sync_turn("next", "a")  # the lane goes on after a final failure
    drain(memory)
    assert backend.texts("s1")[-2:] == ["next", "a"]


def test_g9_a_lane_in_backoff_holds_no_worker(make_memory, backend):
    memory = make_memory(backend, workers=1, retry=RetryPolicy(initial=WAIT, deadline=WAIT * 2))
    backend.fail_next("write", TransientError("busy", retry_after=WAIT))
    memory.lifecycle("slow").sync_turn("waits out a long backoff", "a")
    eventually(lambda: memory.flush(timeout=0).retried == 1)
    other = memory.lifecycle("other")
    for i in range(20):
        other.sync_turn(f"u{i}", "a")
    eventually(lambda: len(backend.texts("other")) == 40)  # the only worker is free for other lanes
    assert backend.texts("slow") == []


def test_g9_hung_backend_holds_only_its_share_of_workers(make_memory):
    hung, healthy = RecordingBackend("hung"), RecordingBackend("healthy")
    gate = hung.hold("write")
    memory = make_memory(hung, healthy, workers=4)
    lifecycles = [memory.lifecycle(f"s{k}") for k in range(8)]
    for lc in lifecycles:
        lc.sync_turn("u", "a")
    eventually(lambda: gate.count == 2)  # two of the four workers are stuck in the hung backend, no more
    for i in range(50):
        for lc in lifecycles:
            lc.sync_turn(f"more {i}", "a")
    eventually(lambda: len(healthy.calls("write")) == 8 * 51)  # the healthy backend got everything meanwhile
    assert gate.count == 2
    gate.release()
    drain(memory)
    assert len(hung.calls("write")) == 8 * 51


def test_g9_recall_of_a_healthy_backend_is_not_delayed_by_hung_writes(make_memory):
    hung = RecordingBackend("hung")
    healthy = RecordingBackend("healthy", [memcore.Recollection(text="still here")])
    gate = hung.hold("write")
    memory = make_memory(hung, healthy, workers=2)
    lc = memory.lifecycle("s1")
    lc.sync_turn("u", "a")
    gate.wait_entered()
    assert [r.text for r in lc.recall("q", timeout=WAIT)] == ["still here"]
    gate.release()


def test_g9_a_backend_whose_recall_hangs_holds_only_its_share_of_recall_workers(make_memory):
    hung = RecordingBackend("hung", [memcore.Recollection(text="never")])
    healthy = RecordingBackend("healthy", [memcore.Recollection(text="always")])
    gate = hung.hold("recall")
    memory = make_memory(hung, healthy, recall_workers=2)
    lc = memory.lifecycle("s1")
    for _ in range(6):  # without shares, the first two recalls would leave both recall workers stuck in "hung"
        assert [r.text for r in lc.recall("q", timeout=0.5)] == ["always"]
    assert hung.attempts("recall") == 1  # the other recalls' tasks for it were dropped at their deadline
    gate.release()


def test_g9_a_transient_recall_failure_is_asked_again_within_the_deadline(make_memory):
    backend = RecordingBackend("flaky", [memcore.Recollection(text="second time lucky")])
    backend.fail_next("recall", TransientError("503"), ConnectionError("reset"))
    memory = make_memory(backend)
    found = memory.lifecycle("s1").recall("q", timeout=WAIT)
    assert [r.text for r in found] == ["second time lucky"]
    assert backend.attempts("recall") == 3


def test_g9_a_final_recall_failure_is_not_asked_again(make_memory):
    backend = RecordingBackend("refusing", [memcore.Recollection(text="never")])
    backend.fail_next("recall", ValueError("bad query"))
    memory = make_memory(backend)
    assert memory.lifecycle("s1").recall("q", timeout=WAIT) == []
    assert backend.attempts("recall") == 1


def test_g9_a_recall_retry_that_cannot_start_before_the_deadline_is_not_made(make_memory):
    backend = RecordingBackend("busy", [memcore.Recollection(text="too late")])
    backend.fail_next("recall", TransientError("429", retry_after=60.0))
    memory = make_memory(backend)
    started = time.monotonic()
    assert memory.lifecycle("s1").recall("q", timeout=1.0) == []
    assert time.monotonic() - started < 1.0  # gave up at once: waiting 60 s could not fit in the 1 s budget
    assert backend.attempts("recall") == 1


def lane_workers() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("memcore-worker-"))


def past(seconds: float) -> None:
    """Let ``seconds`` of the monotonic clock pass (a threshold the code under test reads, not a hoped-for event)."""
    time.sleep(seconds)


def test_g9_calls_hung_past_stall_after_do_not_hold_up_other_sessions(make_memory, backend):
    gate = backend.hold("write", when=lambda turn: turn[0].content.startswith("held"))
    memory = make_memory(backend, workers=4, stall_after=0.05)
    base = lane_workers()
    for k in range(4):  # four hung requests: every lane worker is in one
        memory.lifecycle(f"h{k}").sync_turn("held", "a")
    eventually(lambda: gate.count == 4)
    past(0.06)
    free = memory.lifecycle("free")
    free.sync_turn("one", "a")  # the agent's next turn notices the stalled calls: workers stand in for them
    eventually(lambda: backend.texts("free") == ["one", "a"])
    free.sync_turn("two", "a")
    free.end()
    eventually(lambda: backend.commits("free") == 1)
    assert lane_workers() <= base + 4
    gate.release()
    drain(memory)
    eventually(lambda: lane_workers() == base)  # the stand-ins leave once the stalled calls returned
    assert [backend.texts(f"h{k}") for k in range(4)] == [["held", "a"]] * 4
    assert backend.violations == []


def test_g9_a_hung_backend_gets_at_most_max_stalled_stand_ins(make_memory):
    hung, healthy = RecordingBackend("hung"), RecordingBackend("healthy")
    gate = hung.hold("write")
    # share: 2 lane workers each; max_stalled=4 in all: 2 stand-ins each
    memory = make_memory(hung, healthy, workers=4, stall_after=0.05, max_stalled=4)
    for k in range(8):
        memory.lifecycle(f"s{k}").sync_turn(f"t{k}", "a")
    eventually(lambda: gate.count == 2)  # the hung backend's share
    for _ in range(3):  # rounds of: the calls stall, a flush notices
        past(0.06)
        memory.flush(timeout=0.1)
    assert gate.count == 4  # its share, plus its part of max_stalled; no more however long it hangs
    assert lane_workers() <= 4 + 4
    eventually(lambda: all(healthy.texts(f"s{k}") == [f"t{k}", "a"] for k in range(8)))
    gate.release()
    drain(memory)
    assert all(hung.texts(f"s{k}") == [f"t{k}", "a"] for k in range(8))


def test_g9_stall_after_none_keeps_the_pool_fixed(make_memory, backend):
    gate = backend.hold("write", when=lambda turn: turn[0].content.startswith("held"))
    memory = make_memory(backend, workers=2, stall_after=None)
    for k in range(2):
        memory.lifecycle(f"h{k}").sync_turn("held", "a")
    eventually(lambda: gate.count == 2)
    past(0.06)
    memory.lifecycle("free").sync_turn("one", "a")
    assert not memory.flush(timeout=0.2).ok
    assert backend.texts("free") == []  # waits behind the hung calls
    gate.release()
    drain(memory)
    assert backend.texts("free") == ["one", "a"]


# -- the pending bound with the journal on: spill (G8) -----------------------------------------------------------


def test_g8_past_the_bound_work_spills_to_the_journal_and_comes_back_in_order(make_memory, backend):
    gate = backend.hold("write", "s0", when=lambda turn: turn[0].content == "s0 0")
    memory = make_memory(backend, max_pending=10, workers=2)
    lifecycles = [memory.lifecycle(f"s{k}") for k in range(3)]
    for i in range(40):
        for lc in lifecycles:
            lc.sync_turn(f"{lc.session_id} {i}", "a")  # never refused: past 10 pending, it spills
        if i % 10 == 9:
            for lc in lifecycles:
                lc.end()
    gate.wait_entered()
    held = memory.flush(timeout=0)
    assert held.spilled > 0
    assert held.pending - held.spilled <= 10  # what sits in memory stays within the bound
    gate.release()
    report = drain(memory)
    assert report.spilled == 0 and report.pending == 0 and report.failed == 0
    for k in range(3):
        assert backend.texts(f"s{k}")[::2] == [f"s{k} {i}" for i in range(40)]
        assert backend.commits(f"s{k}") == 4
    assert backend.violations == []
    assert memory.close(timeout=WAIT).ok


# -- close and exit (G10) -------------------------------------------------------------------------------------------


def test_g10_close_leaves_no_memcore_thread_behind(make_memory, backend):
    memory = make_memory(backend)
    memory.lifecycle("s1").sync_turn("u", "a")
    report = memory.close(timeout=WAIT)
    assert report.ok
    assert [t.name for t in threading.enumerate() if t.name.startswith("memcore-")] == []


def test_g10_close_with_a_hung_backend_reports_what_the_journal_keeps(make_memory, backend, memcore_home):
    gate = backend.hold("write")
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    for i in range(3):
        lc.sync_turn(f"u{i}", "a")
    gate.wait_entered()
    start = time.monotonic()
    report = memory.close(timeout=0.3)
    assert time.monotonic() - start < 0.3 + 1.0
    assert report.timed_out and report.pending == 4 and report.journaled == 4

    heard: list[tuple[str, str]] = []

    class Observer:
        @memcore.hookimpl
        def memcore_event(self, event: memcore.Event) -> None:
            heard.append((event.kind, event.operation))

    # A new Memory in the same process, while u0 is still on its way: it takes over nothing yet (G15), so nothing of
    # s1 is sent beside the call in flight and s1 is not committed before u0 returned.
    healthy = RecordingBackend()
    memory2 = make_memory(healthy, plugins=[Observer()])
    assert drain(memory2).replayed == 0 and healthy.log == []
    gate.release()  # u0 returns to the Memory that sent it; then the journal is handed over
    eventually(lambda: healthy.commits("s1") == 1)
    report2 = drain(memory2)
    assert report2.replayed == 3
    assert heard.count(("replayed", "write")) == 2 and heard.count(("replayed", "commit")) == 1
    assert backend.texts("s1") == ["u0", "a"]  # delivered once, by its first sender
    assert healthy.texts("s1") == ["u1", "a", "u2", "a"]  # no second copy of u0
    assert [hook for hook, sid, _ in healthy.log if sid == "s1"][-1] == "commit"  # after every write
    assert memory._journal is not None and memory._journal.closed  # the first Memory's journal is closed now


def test_g15_a_call_that_never_returns_is_taken_as_lost_after_the_retry_deadline(make_memory, backend):
    gate = backend.hold("write")
    memory = make_memory(backend, retry=RetryPolicy(initial=0.001, deadline=0.2))
    memory.lifecycle("s1").sync_turn("u0", "a")
    gate.wait_entered()
    assert memory.close(timeout=0.1).timed_out
    healthy = RecordingBackend()
    memory2 = make_memory(healthy)
    eventually(lambda: healthy.texts("s1") == ["u0", "a"])  # handed over at the bound, though u0 never returned
    gate.release()
    drain(memory2)


def test_g10_without_journal_close_reports_dropped_operations(make_memory, backend):
    seen: list[str] = []

    class Observer:
        @memcore.hookimpl
        def memcore_event(self, event: memcore.Event) -> None:
            seen.append(event.kind)

    gate = backend.hold("write")
    memory = make_memory(backend, journal=False, plugins=[Observer()])
    lc = memory.lifecycle("s1")
    lc.sync_turn("u0", "a")
    lc.sync_turn("u1", "a")
    gate.wait_entered()
    report = memory.close(timeout=0.2)
    assert report.pending == 3 and report.journaled == 0
    assert seen.count("dropped") == 2  # the queued write and the commit close queued; the third is in flight
    gate.release()


def test_g10_acknowledged_operations_leave_the_journal(make_memory, backend, memcore_home):
    memory = make_memory(backend)
    lc = memory.lifecycle("s1")
    for i in range(100):
        lc.sync_turn(f"u{i}", "a")
    lc.end()
    memory.close(timeout=WAIT)
    with sqlite3.connect(memcore_home / "journal.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM ops").fetchone() == (0,)


def test_g10_sync_durability_puts_each_operation_on_disk_before_returning(make_memory, backend, memcore_home):
    gate = backend.hold("write")
    memory = make_memory(backend, durability="sync")
    lc = memory.lifecycle("s1")
    lc.sync_turn("u0", "a")
    with sqlite3.connect(memcore_home / "journal.sqlite3") as db:
        assert db.execute("SELECT session_id, kind FROM ops").fetchall() == [("s1", "write")]
    gate.release()


def test_g10_failed_operations_stay_in_the_journal_marked_failed(make_memory, backend, memcore_home):
    memory = make_memory(backend)
    backend.fail_next("write", ValueError("rejected for good"))
    lc = memory.lifecycle("s1")
    lc.sync_turn("bad", "a")
    lc.sync_turn("good", "a")
    memory.close(timeout=WAIT)
    with sqlite3.connect(memcore_home / "journal.sqlite3") as db:
        rows = db.execute("SELECT session_id, kind, status, last_error FROM ops").fetchall()
    assert len(rows) == 1 and rows[0][:3] == ("s1", "write", "failed") and "rejected for good" in rows[0][3]


@pytest.mark.parametrize("damage", ["garbage", "newer"])
def test_g10_unusable_journal_is_moved_aside_not_deleted(make_memory, backend, memcore_home, damage, caplog):
    memcore_home.mkdir(parents=True)
    path = memcore_home / "journal.sqlite3"
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version = 99")
    memory = make_memory(backend)
    memory.lifecycle("s1").sync_turn("u", "a")
    assert drain(memory).delivered == 1
    aside = [p for p in memcore_home.iterdir() if p.name.startswith("journal.sqlite3.unreadable-")]
    assert aside, list(memcore_home.iterdir())
    assert "moved to" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # forking one is the point
def test_g10_forked_child_starts_with_empty_lanes(make_memory, backend):
    gate = backend.hold("write", "parent")
    memory = make_memory(backend)
    lc = memory.lifecycle("parent")
    lc.sync_turn("in flight in the parent", "a")
    gate.wait_entered()
    lc.sync_turn("queued in the parent", "a")
    pid = os.fork()
    if pid == 0:  # the child: its own lanes and workers, none of the parent's work
        code = 1
        try:
            report = memory.flush(timeout=0)
            child = memory.lifecycle("child")
            child.sync_turn("from the child", "a")
            after = memory.flush(timeout=WAIT)
            code = 0 if report.pending == 0 and after.pending == 0 and after.delivered == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    gate.release()
    drain(memory)
    assert backend.texts("parent") == ["in flight in the parent", "a", "queued in the parent", "a"]


# -- a process killed with SIGKILL ----------------------------------------------------------------------------------

_DOWN_BACKEND = """
import memcore
from memcore import SQLiteBackend, TransientError

class Down(SQLiteBackend):
    '''The embedded store, with its service "down": every write fails as transient.'''
    @memcore.hookimpl
    def memcore_write(self, session, messages):
        raise TransientError("service unavailable")
"""

_WRITER = """
import sys
from down import Down
import memcore

path, sessions, turns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
memory = memcore.Memory(backends=[Down(path=path)], plugins=[], retry=memcore.RetryPolicy(initial=0.05, deadline=3600))
for s in range(sessions):
    lc = memory.lifecycle(f"session-{s}")
    for t in range(turns):
        lc.sync_turn(f"s{s} turn {t}", f"reply {t}")
    lc.end()
memory._journal.wait_durable()  # the group commit's window has passed: everything accepted is on disk
print("accepted", flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_g10_sigkill_loses_nothing_and_replays_in_order(tmp_path, memcore_home, make_memory):
    (tmp_path / "down.py").write_text(textwrap.dedent(_DOWN_BACKEND))
    (tmp_path / "writer.py").write_text(textwrap.dedent(_WRITER))
    store = tmp_path / "store.sqlite3"
    sessions, turns = 5, 40
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MEMCORE_HOME": str(memcore_home)}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "writer.py"), str(store), str(sessions), str(turns)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "accepted", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    memory = make_memory(memcore.SQLiteBackend(path=store))  # the service is back
    report = drain(memory)
    assert report.replayed == sessions * (turns + 1) and report.failed == 0
    with sqlite3.connect(store) as db:
        for s in range(sessions):
            got = [
                c
                for (c,) in db.execute(
                    "SELECT content FROM messages WHERE session_id = ? AND role = 'user' ORDER BY id", (f"session-{s}",)
                )
            ]
            assert got == [f"s{s} turn {t}" for t in range(turns)]
        commits = dict(db.execute("SELECT id, commits FROM sessions").fetchall())
    assert commits == {f"session-{s}": 1 for s in range(sessions)}
    memory.close(timeout=WAIT)
    with sqlite3.connect(memcore_home / "journal.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM ops").fetchone() == (0,)


def test_g10_sync_durability_returns_when_the_operation_was_acknowledged_before_it_was_written(make_memory):
    # An instant backend acknowledges a write before the journal writer took it: the row is never written, and a
    # durability="sync" caller must still learn that it is settled (it waited forever before).
    instant = RecordingBackend()
    memory = make_memory(instant, durability="sync")
    done = threading.Event()

    def turns() -> None:
        lc = memory.lifecycle("s")
        for i in range(50):
            lc.sync_turn(f"t{i}", "a")
        done.set()

    threading.Thread(target=turns, daemon=True).start()
    assert done.wait(WAIT), "a durability='sync' sync_turn never returned"
    drain(memory)
    assert len(instant.calls("write", "s")) == 50

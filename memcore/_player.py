"""Applying a validated replay :class:`~memcore._replay.Script` to a :class:`~memcore.Memory`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import PendingLimitExceeded
from ._lifecycle import SessionLifecycle
from ._records import Recollection, Report
from ._replay import End, NoteEvent, RecallEvent, ReplayEvent, Script, Switch, Turn

if TYPE_CHECKING:
    from ._memory import Memory

#: ``progress(events done, events in all, note)``: called after each event and while waiting for the backends.
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Recalled:
    """The answer to one ``recall`` event, asked in ``session_id``."""

    query: str
    line: int
    session_id: str
    recollections: list[Recollection]


def _no_progress(done: int, total: int, note: str) -> None:
    pass


def play(
    memory: Memory,
    script: Script,
    *,
    session_id: str,
    progress: ProgressFn = _no_progress,
    recall_timeout: float = 5.0,
    stall_timeout: float = 30.0,
) -> list[Recalled]:
    """Apply ``script`` in one lifecycle starting in its ``session`` event's id, else ``session_id``.

    Before each ``recall`` event everything written so far is delivered and committed as far as asked (``settle``), so
    the answer reflects the events before it. Returns the answers; the caller closes ``memory``."""
    lc = memory.lifecycle(script.session_id or session_id)
    total = len(script.events)
    recalled: list[Recalled] = []
    for done, event in enumerate(script.events, start=1):

        def waiting(pending: int, done: int = done) -> None:
            progress(done - 1, total, f"{pending} operation(s) pending")

        if isinstance(event, RecallEvent):
            settle(memory, waiting, stall_timeout)
            found = lc.recall(event.query, limit=event.limit, timeout=recall_timeout)
            recalled.append(Recalled(event.query, event.line, lc.session_id, found))
        else:
            try:
                apply(lc, event)
            except PendingLimitExceeded:  # nothing of the call was accepted: make room, then try once more
                settle(memory, waiting, stall_timeout)
                apply(lc, event)
        progress(done, total, "")
    settle(memory, lambda pending: progress(total, total, f"{pending} operation(s) pending"), stall_timeout)
    return recalled


def apply(lc: SessionLifecycle, event: ReplayEvent) -> None:
    """Apply one write or boundary event (``recall`` events are handled by :func:`play`)."""
    if isinstance(event, Turn):
        lc.sync_turn(event.user, event.assistant, messages=event.messages)
    elif isinstance(event, NoteEvent):
        lc.remember(event.text, kind=event.kind, metadata=event.metadata)
    elif isinstance(event, Switch):
        lc.switch(event.session_id, reason=event.reason, parent_session_id=event.parent, turns=event.turns)
    elif isinstance(event, End):
        lc.end()
    else:
        raise TypeError(f"apply() does not take {type(event).__name__}")


def settle(memory: Memory, waiting: Callable[[int], None], stall_timeout: float) -> Report:
    """Wait until everything accepted so far has finished, calling ``waiting(pending)`` every 0.1 s meanwhile.

    Gives up (returning a report with ``timed_out``) only when no operation finished for ``stall_timeout`` seconds,
    so a long but moving backlog is waited for and a hung backend is not."""
    last_done, last_change = -1, time.monotonic()
    while True:
        report = memory.flush(0.1)
        if not report.timed_out:
            return report
        done = report.delivered + report.committed + report.failed
        now = time.monotonic()
        if done != last_done:
            last_done, last_change = done, now
        elif now - last_change >= stall_timeout:
            return report
        waiting(report.pending)

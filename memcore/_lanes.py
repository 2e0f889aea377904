"""Lanes: call order per (backend, session) (G2), a commit queued behind the writes it covers (G3), and one commit per
change (G4). Pure bookkeeping: no threads, no clock, no I/O; the scheduler calls it under its lock.

Every (backend, session) pair with work or uncommitted writes has a :class:`Lane`, a FIFO of :class:`Op`. A lane counts
its writes (its *epoch*); a commit records the epoch it covers, so a session is dirty while its epoch is ahead of the
last successful commit, and a commit request that covers nothing new is not queued. A lane that is idle and clean is
retired, so memory grows with the sessions that have work, not with every session ever seen.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from ._plugins import Backend
from ._records import Session

WRITE = "write"
NOTE = "remember"
COMMIT = "commit"
FORGET = "forget"  #: erase a session (in its lane) or a user (in the user's forget lane, session id "")
REWIND = "rewind"  #: remove the last turns of a session that were delivered (payload: how many)

#: How many retired sessions' ids a backend that opens sessions remembers as opened (the most recent ones). A lane
#: that comes back after more sessions than this were opened since opens its session again, so ``memcore_open_session``
#: must be idempotent (the suite's backends are: opening an existing session changes nothing).
OPENED_KEPT = 10_000


class Op(NamedTuple):
    """One operation in a lane."""

    kind: str  #: WRITE, NOTE or COMMIT
    payload: Any  #: the messages of a turn, a Note, or None for a commit
    epoch: int  #: a write's or note's place in its lane's count; for a commit, the count it covers
    seq: int  #: its sequence number (journal row)
    key: str | None = None  #: its idempotency key if it was accepted elsewhere (taken over at start); else made of seq
    at: float = 0.0  #: ``time.monotonic()`` when it was accepted, or loaded back from the journal (for gauges)
    created: float = 0.0  #: ``time.time()`` when it was accepted, as its journal row keeps it (0: no journal)


class Lane:
    """The FIFO of one (backend, session). Its fields are guarded by the scheduler's lock, except ``opened``, which
    only the worker holding the lane's single in-flight operation touches."""

    __slots__ = (
        "added",
        "attempts",
        "backend",
        "clear_until",
        "commit_covers",
        "committed",
        "finished",
        "first_try",
        "flying",
        "in_memory",
        "opened",
        "ops",
        "scheduled",
        "session",
        "spilled_commits",
        "stalled",
        "started",
        "written",
    )

    def __init__(self, backend: Backend, session: Session, *, opened: bool):
        self.backend = backend
        self.session = session
        self.ops: collections.deque[Op] = collections.deque()
        self.opened = opened  # memcore_open_session has run (or the backend has no such hook)
        # Epochs (G4): writes and notes accepted; of which the ones given an Op in memory (the rest are spilled to the
        # journal and get theirs when loaded back); covered by the last successful commit; by any queued commit.
        self.written = 0
        self.in_memory = 0
        self.committed = 0
        self.commit_covers = 0
        # Commits accepted here and spilled, not yet loaded back: each will run after every operation the journal
        # holds for this lane now, those taken over at start included (see ``replayed``).
        self.spilled_commits = 0
        # Progress, for flush: operations appended to the lane and finished (delivered, committed or failed).
        self.added = 0
        self.finished = 0
        # The worker pool's: ready, in backoff or running (at most one op in flight); when the op in flight started
        # and whether it has run past stall_after; failed attempts of the head op and when it was first tried.
        self.scheduled = False
        self.started = 0.0
        self.stalled = False
        self.attempts = 0
        self.first_try = 0.0
        self.flying: float | None = None  # the accept time of the op in flight (gauges), None when none is
        # A journal several hosts share: operations accepted (wall time) before this need not ask whether another
        # host still holds an earlier one of the session. Only the worker holding the lane's op touches it.
        self.clear_until = 0.0

    @property
    def dirty(self) -> bool:
        return self.written > self.committed

    def __repr__(self) -> str:
        return f"<Lane {self.backend.name}:{self.session.id!r} ops={len(self.ops)} epoch={self.written}>"


class Lanes:
    """The live lanes of one scheduler, and the sessions each backend has opened."""

    def __init__(self, opened_kept: int = OPENED_KEPT) -> None:
        # Keyed by (backend index, user id, session id): two users' sessions of one id are two lanes.
        self._live: dict[tuple[int, str | None, str], Lane] = {}
        # The default user's sessions by id alone, a named user's by (user, id): the LRU costs no tuple per session.
        self._opened: dict[int, collections.OrderedDict[str | tuple[str, str], None]] = {}
        self._opened_kept = opened_kept

    def __iter__(self) -> Any:
        return iter(list(self._live.values()))

    def __len__(self) -> int:
        return len(self._live)

    def get(self, backend: Backend, session: Session) -> Lane:
        """The lane of (``backend``, ``session``), started if it has none."""
        key = (backend.index, session.user_id, session.id)
        lane = self._live.get(key)
        if lane is None:
            opened = "open_session" not in backend.capabilities
            if not opened:
                seen = self._opened.get(backend.index)
                opened = seen is not None and seen.pop(_opened_key(session), 0) is None
            lane = self._live[key] = Lane(backend, session, opened=opened)
        return lane

    def find(self, backend: Backend, session_id: str, user_id: str | None = None) -> Lane | None:
        return self._live.get((backend.index, user_id, session_id))

    def of_user(self, backend: Backend, user_id: str | None) -> list[Lane]:
        """The live lanes of ``user_id`` on ``backend`` (a scan: forget is rare)."""
        return [lane for (i, user, _), lane in self._live.items() if i == backend.index and user == user_id]

    # -- admission (a write or note counts itself: ``written += 1``, and ``in_memory = written`` unless it is spilled;
    # the scheduler does that inline, on sync_turn's path) -----------------------------------------------------------

    @staticmethod
    def wants_commit(lane: Lane) -> bool:
        """Whether a commit request covers anything not yet committed or queued for commit (G4)."""
        return lane.written > max(lane.committed, lane.commit_covers)

    @staticmethod
    def accept_commit(lane: Lane, seq: int, created: float = 0.0) -> Op:
        lane.commit_covers = lane.written
        return Op(COMMIT, None, lane.written, seq, None, time.monotonic(), created)

    @staticmethod
    def loaded(lane: Lane, kind: str, payload: Any, seq: int, key: str | None = None, created: float = 0.0) -> Op:
        """The Op of a spilled operation loaded back from the journal, in order."""
        if kind != COMMIT:
            lane.in_memory += 1
        else:
            lane.spilled_commits -= 1
        return Op(kind, payload, lane.in_memory, seq, key, time.monotonic(), created)

    @staticmethod
    def replayed(
        lane: Lane, kind: str, payload: Any, seq: int, key: str | None = None, created: float = 0.0
    ) -> Op | None:
        """The Op of an operation left by a process that is gone, loaded back from the journal in order (it counts in
        its lane now, since this process never accepted it); ``None`` for a commit right behind another commit (it
        covers nothing new). A replayed commit otherwise runs even if nothing new is written: the journal says it was
        asked for and never done (or owed: its session's writes were delivered and not committed)."""
        if kind == COMMIT:
            if lane.commit_covers >= lane.in_memory and lane.ops and lane.ops[-1].kind == COMMIT:
                return None
            lane.commit_covers = max(lane.commit_covers, lane.in_memory)
        else:
            lane.written += 1
            lane.in_memory += 1
            if lane.spilled_commits:  # a commit accepted here runs after it, so it covers it too
                lane.commit_covers = max(lane.commit_covers, lane.written)
        return Op(kind, payload, lane.in_memory, seq, key, time.monotonic(), created)

    @staticmethod
    def insert_in_order(lane: Lane, op: Op) -> bool:
        """Put ``op`` (taken over from another owner, just counted at the lane's tail) before the queued operations
        this owner accepted after it (a conversation that moved here from a host that then died), and count the lane
        again so that each queued commit covers the writes before it. False, and nothing done, when it goes last."""
        if not op.created or not lane.ops or not lane.ops[-1].created > op.created:
            return False
        ops = list(lane.ops)
        at = next(i for i, queued in enumerate(ops) if queued.created > op.created)
        ops.insert(at, op)
        first = ops[0] if at else ops[1]
        count = first.epoch - (1 if first.kind not in (COMMIT, REWIND, FORGET) else 0)
        renumbered = []
        for queued in ops:
            if queued.kind in (COMMIT, REWIND, FORGET):
                renumbered.append(queued._replace(epoch=count))
            else:
                count += 1
                renumbered.append(queued._replace(epoch=count))
        lane.ops = collections.deque(renumbered)
        covers = [o.epoch for o in renumbered if o.kind == COMMIT]
        lane.commit_covers = max([lane.committed, *covers]) if covers else lane.commit_covers
        return True

    # -- completion ------------------------------------------------------------------------------------------------

    @staticmethod
    def finish(lane: Lane, op: Op, *, failed: bool) -> None:
        """Record that ``op`` finished (succeeded, or failed for good)."""
        lane.finished += 1
        lane.attempts = 0
        if op.kind == FORGET:  # what it covered is erased: nothing of it is left to commit
            lane.committed = max(lane.committed, op.epoch)
            return
        if op.kind != COMMIT:
            return
        if not failed:
            lane.committed = max(lane.committed, op.epoch)
        else:  # the session stays dirty; a later boundary or close() commits again
            lane.commit_covers = max([lane.committed, *(o.epoch for o in lane.ops if o.kind == COMMIT)])

    @staticmethod
    def drop(lane: Lane) -> list[Op]:
        """Take every queued operation but forgets out of ``lane`` (not the one in flight: it is not queued) and mark
        what it has counted as needing no commit: a forget of its scope follows, and erases it."""
        dropped = [op for op in lane.ops if op.kind != FORGET]
        if len(dropped) == len(lane.ops):
            lane.ops.clear()
        else:
            lane.ops = collections.deque(op for op in lane.ops if op.kind == FORGET)
        lane.finished += len(dropped)
        lane.attempts = 0
        lane.committed = max(lane.committed, lane.written)
        lane.commit_covers = max(lane.commit_covers, lane.written)
        return dropped

    @staticmethod
    def disown(lane: Lane, gone: Sequence[Op]) -> None:
        """Take ``gone`` (queued operations another owner took over: it delivers and commits them) out of ``lane``;
        what they covered needs no commit from this one."""
        seqs = {op.seq for op in gone}
        if lane.ops and lane.ops[0].seq in seqs:
            lane.attempts = 0
        lane.ops = collections.deque(op for op in lane.ops if op.seq not in seqs)
        lane.finished += len(gone)
        lane.committed = max(lane.committed, *(op.epoch for op in gone))
        lane.commit_covers = max(lane.commit_covers, lane.committed)

    @staticmethod
    def undo(lane: Lane, turns: int) -> list[Op]:
        """Take up to ``turns`` of the latest queued writes out of ``lane`` (a rewind): from its tail back, past
        notes, stopping at a commit (what a queued commit covers stays) or a rewind. Returns them; the lane counts
        them no more."""
        dropped: list[Op] = []
        kept: list[Op] = []
        while lane.ops and len(dropped) < turns:
            op = lane.ops[-1]
            if op.kind in (COMMIT, REWIND, FORGET):
                break
            lane.ops.pop()
            (dropped if op.kind == WRITE else kept).append(op)
        lane.ops.extend(reversed(kept))
        lane.written -= len(dropped)
        lane.in_memory -= len(dropped)
        lane.finished += len(dropped)
        return dropped

    def forgotten(self, backend: Backend, session: Session) -> None:
        """A forget of ``session`` (of every session of its user, for a user's forget lane: id "") finished on
        ``backend``: those sessions count as never opened, so a later write opens them again."""
        if "open_session" not in backend.capabilities:
            return
        user = session.user_id
        lanes = [self.find(backend, session.id, user)] if session.id else self.of_user(backend, user)
        for lane in lanes:
            if lane is not None and lane.session.id:
                lane.opened = False
        seen = self._opened.get(backend.index)
        if seen is not None:
            if session.id:
                seen.pop(_opened_key(session), None)
            else:
                for key in [k for k in seen if (k[0] if isinstance(k, tuple) else None) == user]:
                    del seen[key]

    def retire_if_clean(self, lane: Lane) -> None:
        """Forget an idle lane with nothing left to commit; a later write starts a fresh one."""
        if lane.ops or (lane.dirty and "commit" in lane.backend.capabilities):
            return
        del self._live[(lane.backend.index, lane.session.user_id, lane.session.id)]
        if lane.opened and "open_session" in lane.backend.capabilities:
            seen = self._opened.setdefault(lane.backend.index, collections.OrderedDict())
            seen[_opened_key(lane.session)] = None
            if len(seen) > self._opened_kept:
                seen.popitem(last=False)


def _opened_key(session: Session) -> str | tuple[str, str]:
    return session.id if session.user_id is None else (session.user_id, session.id)

"""A lane puts an operation taken over from another host before the ones this host accepted after it (issue 18
item 4), and counts the lane again so that each queued commit covers exactly the writes before it."""

from __future__ import annotations

from typing import cast

import memcore
from memcore._lanes import COMMIT, WRITE, Lane, Lanes, Op
from memcore._plugins import Backend


def lane() -> Lane:
    return Lane(cast(Backend, object()), memcore.Session(id="c"), opened=True)  # the lane only keeps its backend


def own(lane: Lane, kind: str, seq: int, created: float) -> None:
    """An operation this host accepted (as the scheduler counts it)."""
    if kind == COMMIT:
        lane.ops.append(Lanes.accept_commit(lane, seq, created))
        return
    lane.written += 1
    lane.in_memory = lane.written
    lane.ops.append(Op(kind, f"turn {seq}", lane.written, seq, None, 0.0, created))


def test_a_taken_over_turn_goes_before_later_own_ones_and_the_commit_covers_it() -> None:
    c = lane()
    own(c, WRITE, 1, created=20.0)  # this host's turn, accepted after the other host's
    own(c, COMMIT, 2, created=21.0)  # and the end of the session
    taken = Lanes.replayed(c, WRITE, "turn from A", 100, "A:7", created=10.0)
    assert taken is not None and Lanes.insert_in_order(c, taken)
    assert [(o.kind, o.seq, o.epoch) for o in c.ops] == [(WRITE, 100, 1), (WRITE, 1, 2), (COMMIT, 2, 2)]
    assert c.written == 2 and c.commit_covers == 2  # the commit covers both writes: committed once, after them


def test_a_taken_over_commit_goes_between_the_writes_it_covers_and_later_ones() -> None:
    c = lane()
    own(c, WRITE, 1, created=20.0)
    first = Lanes.replayed(c, WRITE, "A's turn", 100, "A:1", created=10.0)
    assert first is not None and Lanes.insert_in_order(c, first)
    commit = Lanes.replayed(c, COMMIT, None, 101, "A:2", created=11.0)  # A's session ended before it moved here
    assert commit is not None and Lanes.insert_in_order(c, commit)
    assert [(o.kind, o.seq, o.epoch) for o in c.ops] == [(WRITE, 100, 1), (COMMIT, 101, 1), (WRITE, 1, 2)]
    assert c.commit_covers == 1 and c.written == 2  # this host's later turn still needs a commit of its own


def test_an_operation_accepted_after_everything_queued_goes_last_untouched() -> None:
    c = lane()
    own(c, WRITE, 1, created=20.0)
    later = Lanes.replayed(c, WRITE, "A's later turn", 100, "A:1", created=30.0)
    assert later is not None and not Lanes.insert_in_order(c, later)
    assert [o.seq for o in c.ops] == [1]  # the caller appends it
    unknown = Lanes.replayed(c, WRITE, "no time known", 101, "A:2", created=0.0)
    assert unknown is not None and not Lanes.insert_in_order(c, unknown)

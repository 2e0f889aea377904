"""The figures of ``vs_hermes.py`` that need no server: where the workload's turns ended up in a server state, and
what the proxy's log says about commits and recall. Pure functions over plain data, tested in
``tests/test_bench_vs_hermes.py``."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from _fault_proxy import TURN, Exchange


@dataclass
class ServerState:
    turns: dict[str, list[str]] = field(default_factory=dict)  # session -> turn markers of its user messages, in order
    archives: dict[str, int] = field(default_factory=dict)
    live: dict[str, int] = field(default_factory=dict)  # messages in no archive


def marker(text: str) -> str:
    m = TURN.search(text)
    return f"{m.group(1)} t{m.group(2)}" if m else ""


def longest_increasing(xs: Sequence[int]) -> int:
    tails: list[int] = []
    for x in xs:
        i = bisect.bisect_left(tails, x)
        tails[i : i + 1] = [x]
    return len(tails)


def placement(expected: dict[str, list[str]], state: ServerState) -> dict[str, int]:
    """Lost, wrong-session, out-of-order and duplicated turns of the workload in one server state."""
    where: dict[str, list[tuple[str, int]]] = {}
    for sid, found in state.turns.items():
        for pos, mark in enumerate(found):
            where.setdefault(mark, []).append((sid, pos))
    out = {"lost": 0, "wrong_session": 0, "out_of_order": 0, "duplicated": 0, "present": 0}
    for sid, marks in expected.items():
        positions = []
        for mark in marks:
            hits = where.get(mark, [])
            if not hits:
                out["lost"] += 1
                continue
            out["duplicated"] += len(hits) - 1
            mine = [p for s, p in hits if s == sid]
            if not mine:
                out["wrong_session"] += 1
                continue
            out["present"] += 1
            positions.append(mine[0])
        out["out_of_order"] += len(positions) - longest_increasing(positions)
    return out


def commit_figures(exchanges: Sequence[Exchange]) -> dict[str, int]:
    """From the proxy's log: commits sent and accepted; commits accepted while a write of the session was in flight
    (the write reached the proxy before the commit did and was not answered before the commit went to the server;
    writes the server refused with a 4xx do not count); double commits (accepted with no write of the session applied
    since its previous accepted commit)."""
    writes = [e for e in exchanges if e.cls == "write" and not (e.upstream_status and 400 <= e.upstream_status < 500)]
    commits = sorted((e for e in exchanges if e.cls == "commit"), key=lambda e: e.t_arrive)
    in_flight = 0
    for c in commits:
        if c.t_forward is None or not (c.upstream_status and 200 <= c.upstream_status < 300):
            continue  # the server did not commit
        if any(
            w.session == c.session and w.t_arrive < c.t_arrive and (w.t_done is None or w.t_done > c.t_forward)
            for w in writes
        ):
            in_flight += 1
    applied = sorted(
        (e for e in exchanges if e.upstream_status is not None and 200 <= e.upstream_status < 300),
        key=lambda e: e.t_forward or 0.0,
    )
    dirty: dict[str, bool] = {}
    double = accepted = 0
    for e in applied:
        if e.cls == "write":
            dirty[e.session or ""] = True
        elif e.cls == "commit":
            accepted += 1
            if not dirty.get(e.session or "", False):
                double += 1
            dirty[e.session or ""] = False
    return {
        "commits_sent": len(commits),
        "commits_accepted": accepted,
        "commits_in_flight": in_flight,
        "double_commits": double,
    }


def stale_recall(record: dict[str, Any], by_id: dict[int, Exchange]) -> dict[str, int]:
    """Recalls handed out, those with nothing from the server (no probe), and the stale ones: a probe from a search
    asked for another session, or asked before the agent entered the session it is in."""
    switches = sorted(record["switches"])
    handed = empty = stale = 0
    for r in record["recalls"]:
        handed += 1
        if not r["probes"]:
            empty += 1
            continue
        entered = max((t for t, _ in switches if t <= r["t0"]), default=0.0)
        for pid in r["probes"]:
            ex = by_id.get(pid)
            if ex is None or ex.search_session not in (None, r["session"]) or ex.t_arrive < entered:
                stale += 1
                break
    return {"recalls": handed, "recalls_empty": empty, "recalls_stale": stale}

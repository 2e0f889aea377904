"""What the command line prints: recall tables, reports, store statistics and the backend listing."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._journal_admin import OWES_COMMIT, PendingGroup
from ._records import Recollection, Report
from ._replay import End, NoteEvent, RecallEvent, Script, Switch, Turn
from ._table import table, terminal_width, wrap

#: How many final failures a printed report lists (``Report.failed`` has the exact count).
FAILURES_SHOWN = 5
#: How many lines ``memcore pending`` gives one last error (``--json`` has it whole).
ERROR_LINES = 6

_KINDS = (
    (Turn, "turn", "turns"),
    (NoteEvent, "note", "notes"),
    (Switch, "switch", "switches"),
    (End, "end", "ends"),
    (RecallEvent, "recall", "recalls"),
)


def script_summary(script: Script, default_session: str) -> str:
    """``36 events in 5 sessions: 15 turns, 6 notes, 7 switches (new, branch, ...), 4 ends, 4 recalls``."""
    events = script.events
    reasons = ", ".join(dict.fromkeys(e.reason for e in events if isinstance(e, Switch)))
    parts = []
    for kind, one, many in _KINDS:
        n = sum(isinstance(e, kind) for e in events)
        if n:
            label = f"{n} {one if n == 1 else many}"
            parts.append(f"{label} ({reasons})" if kind is Switch else label)
    sessions = len(script.session_ids(default_session))
    head = f"{len(events)} event{'s' * (len(events) != 1)} in {sessions} session{'s' * (sessions != 1)}"
    return head + (": " + ", ".join(parts) if parts else "")


def origin(item: Recollection, with_source: bool = False) -> str:
    """Where a recollection came from, as its backend tells it: ``note/preference``, ``message/user``..."""
    where = "/".join(str(item.metadata[k]) for k in ("origin", "kind") if item.metadata.get(k))
    if not where:
        return item.source or "-"
    return f"{item.source}:{where}" if with_source and item.source else where


def score(item: Recollection) -> str:
    return "-" if item.score is None else f"{item.score:.2f}"


def recall_table(groups: Sequence[tuple[str, Sequence[Recollection]]], *, show_query: bool, width: int = 0) -> str:
    """One table for the answers to one or more queries; the query is shown on the first row of its answers."""
    sources = {item.source for _, items in groups for item in items}
    rows: list[list[str]] = []
    for query, items in groups:
        if not items and show_query:
            rows.append([query, "", "", "", "", "(nothing recalled)"])
        for rank, item in enumerate(items, start=1):
            row = [str(rank), score(item), item.session_id or "-", origin(item, len(sources) > 1), item.text]
            rows.append(([query if rank == 1 else ""] if show_query else []) + row)
    headers = ["#", "SCORE", "SESSION", "FROM", "TEXT"]
    limits: list[int | None] = [None, None, 16, 20]
    if show_query:
        headers, limits = ["QUERY", *headers], [24, *limits]
    first = 1 if show_query else 0
    return table(headers, rows, width=width or terminal_width(), limits=limits, right=(first, first + 1))


def report_lines(report: Report, elapsed: float) -> list[str]:
    """The report of a run: its counts, then each skipped backend and the first few failures."""
    lines = [
        f"Report: delivered {report.delivered}, committed {report.committed}, failed {report.failed}, "
        f"pending {report.pending}, elapsed {elapsed:.2f} s" + (" (timed out)" if report.timed_out else "")
    ]
    extra = [
        f"{name} {n}"
        for name, n in (
            ("retried", report.retried),
            ("replayed", report.replayed),
            ("taken over by another host", report.taken_over),
            ("kept in the journal", report.journaled),
        )
        if n
    ]
    if extra:
        lines.append("  " + ", ".join(extra))
    lines += [f"  skipped backend {name}: {why}" for name, why in report.skipped_backends.items()]
    for failure in report.failures[:FAILURES_SHOWN]:
        sid = f" of session {failure.session_id!r}" if failure.session_id else ""
        lines.append(f"  failed: {failure.operation}{sid} on {failure.backend}: {failure.error}")
    if report.failed > FAILURES_SHOWN:
        lines.append(f"  ... and {report.failed - FAILURES_SHOWN} more failures")
    return lines


def stats_line(stats: Mapping[str, Any]) -> str:
    """``Store: sessions 5, messages 40, ...`` from ``SQLiteBackend.stats()``."""
    return "Store: " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in stats.items())


def backends_text(
    backends: Sequence[Mapping[str, Any]], plugins: Sequence[Mapping[str, Any]], groups: Sequence[str]
) -> str:
    """The ``memcore backends`` listing: one table for backends, one for observer plugins."""
    out = []
    for title, group, entries, what in (
        ("Backends", groups[0], backends, "capabilities"),
        ("Observer plugins", groups[1], plugins, "hooks"),
    ):
        out.append(f"{title} (entry-point group {group}):")
        if not entries:
            out.append("  none installed")
        else:
            rows = [
                [e["name"], e["target"], f"load error: {e['error']}" if e["error"] else ", ".join(e[what]) or "-"]
                for e in entries
            ]
            body = table(["NAME", "TARGET", what.upper()], rows, width=terminal_width() - 2)
            out += ["  " + line for line in body.splitlines()]
        out.append("")
    return "\n".join(out).rstrip("\n")


def _whose(group: PendingGroup) -> str:
    if group.status == "failed":
        return ""
    if group.owner_running:
        return " (running)"
    return " (commits at start)" if group.status == OWES_COMMIT else " (replays at start)"


def pending_table(groups: Sequence[PendingGroup], width: int = 0) -> str:
    """What ``memcore pending`` prints: one row per backend, session and status; a group's last error follows its
    row on lines of its own, as wide as the terminal (at most :data:`ERROR_LINES` of them)."""
    width = width or terminal_width()
    rows = [
        [
            g.backend,
            g.session_id,
            g.status + _whose(g),
            str(g.operations),
            g.kinds,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(g.oldest)),
        ]
        for g in groups
    ]
    headers = ["BACKEND", "SESSION", "STATUS", "OPS", "KINDS", "OLDEST"]
    header, *lines = table(headers, rows, width=width, limits=(30, 24, None, None, None, 19), right=(3,)).splitlines()
    out = [header]
    for group, line in zip(groups, lines, strict=True):
        out.append(line)
        if group.last_error:
            out += wrap(group.last_error, width, first="  last error: ", rest="    ", max_lines=ERROR_LINES)
    return "\n".join(out)

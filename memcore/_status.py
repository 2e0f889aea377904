"""``memcore status``: what a MEMCORE_HOME holds, read-only. The journal's processes and whether each still runs, what
is pending per backend (queued in a running process, or waiting for the next start), the sessions that owe a commit,
the oldest pending operation, the most recent final failures, and the store's counts.

Nothing is created, moved or written: every file is recognised first (:func:`memcore._journal_admin.identify`) and
read through :func:`~memcore._journal_admin.connect_readonly`, in one read transaction per file, so the figures of a
journal in use by a running process are one consistent snapshot.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import attrs

from ._commands import UsageError, _problem, _refuse, journal_file, store_stats
from ._journal import live_owners
from ._journal_admin import EMPTY, MISSING, RETRY_OWNER, STORE, STORE_VERSION, connect_readonly, identify
from ._output import stats_line
from ._paths import memcore_home
from ._sqlite import default_path
from ._table import table, terminal_width, wrap

__all__ = ["BackendStatus", "Failed", "Owner", "Pending", "Status", "cmd_status", "read_status"]

#: How many recent failures are listed unless ``--failures`` says otherwise.
FAILURES_SHOWN = 5
#: How many lines one failure's last error gets in the table (``--json`` has it whole).
ERROR_LINES = 3
_PENDING = ("pending", "spilled")


@attrs.frozen(kw_only=True)
class Owner:
    """A process registered in the journal (a Memory with that journal), and whether it still runs."""

    owner: str
    pid: int | None
    host: str | None
    started: float
    running: bool
    pending: int  #: operations of its still pending in the journal
    #: False for an owner that only its rows name: a process that is gone and whose registration a later Memory
    #: removed (it took over that owner's rows for its own backends, not the others), or ``memcore retry``'s.
    registered: bool = True


@attrs.frozen(kw_only=True)
class BackendStatus:
    """One backend (its journal key) in the journal: pending operations (``running``: queued in a running process;
    ``at_start``: left by one that stopped, or re-queued by ``memcore retry``, delivered by the next Memory with that
    backend), sessions owing a commit, operations failed for good, and when the oldest pending one was accepted."""

    backend: str
    pending: int
    running: int
    at_start: int
    owing_commit: int
    failed: int
    oldest_pending: float | None


@attrs.frozen(kw_only=True)
class Pending:
    """The oldest pending operation."""

    backend: str
    session_id: str
    user_id: str | None
    kind: str
    accepted: float
    running: bool


@attrs.frozen(kw_only=True)
class Failed:
    """An operation that failed for good, with its last error."""

    backend: str
    session_id: str
    user_id: str | None
    kind: str
    accepted: float
    last_error: str | None


@attrs.frozen(kw_only=True)
class Status:
    home: str
    journal: str | None  #: None: no journal yet (the default one does not exist)
    owners: tuple[Owner, ...] = ()
    backends: tuple[BackendStatus, ...] = ()
    oldest_pending: Pending | None = None
    failed: int = 0
    failures: tuple[Failed, ...] = ()  #: the most recent ones, newest first
    store: str | None = None
    store_stats: dict[str, Any] | None = None  #: None: no store there yet


def read_status(journal: Path | None, store: Path | None, *, failures: int = FAILURES_SHOWN) -> Status:
    """What ``journal`` (recognised as one, or None) and ``store`` (a memory store, or None, or a path where there is
    none yet) hold, read-only."""
    found = _read_journal(journal, failures) if journal is not None else {}
    stats = None
    if store is not None and identify(store).kind == STORE:
        stats = store_stats(store)
    return Status(
        home=str(memcore_home()),
        journal=str(journal) if journal is not None else None,
        store=str(store) if store is not None else None,
        store_stats=stats,
        **found,
    )


def _read_journal(path: Path, failures: int) -> dict[str, Any]:
    db = connect_readonly(path)
    try:
        db.execute("BEGIN")  # one snapshot for every figure below
        live = live_owners(db)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        user = "user_id" if "user_id" in {row[1] for row in db.execute("PRAGMA table_info(ops)")} else "NULL"
        registered = db.execute("SELECT owner, pid, host, started FROM owners ORDER BY owner").fetchall()
        groups = db.execute(
            "SELECT backend, owner, status, count(*), min(created) FROM ops GROUP BY backend, owner, status"
        ).fetchall()
        debts = (
            db.execute("SELECT backend, count(*) FROM debts GROUP BY backend").fetchall() if "debts" in tables else []
        )
        oldest = db.execute(
            f"SELECT backend, session_id, {user}, kind, created, owner FROM ops "
            "WHERE status IN ('pending', 'spilled') ORDER BY created, owner, seq LIMIT 1"
        ).fetchone()
        failed = db.execute("SELECT count(*) FROM ops WHERE status = 'failed'").fetchone()[0]
        recent = db.execute(
            f"SELECT backend, session_id, {user}, kind, created, last_error FROM ops WHERE status = 'failed' "
            "ORDER BY created DESC, owner DESC, seq DESC LIMIT ?",
            (failures,),
        ).fetchall()
        db.execute("COMMIT")
    finally:
        db.close()

    per_owner: dict[str, int] = {}
    backends: dict[str, dict[str, Any]] = {}

    def entry(key: str) -> dict[str, Any]:
        return backends.setdefault(
            key, {"running": 0, "at_start": 0, "owing_commit": 0, "failed": 0, "oldest_pending": None}
        )

    for backend, owner, status, count, first in groups:
        row = entry(backend)
        if status == "failed":
            row["failed"] += count
        elif status in _PENDING:
            row["running" if owner in live else "at_start"] += count
            per_owner[owner] = per_owner.get(owner, 0) + count
            if row["oldest_pending"] is None or first < row["oldest_pending"]:
                row["oldest_pending"] = first
    for backend, count in debts:
        entry(backend)["owing_commit"] += count
    owners = tuple(
        Owner(
            owner=owner,
            pid=pid,
            host=host,
            started=started,
            running=owner in live,
            pending=per_owner.get(owner, 0),
        )
        for owner, pid, host, started in registered
    )
    known = {o.owner for o in owners}
    owners += tuple(_unregistered(owner, n) for owner, n in per_owner.items() if owner not in known)
    owners = tuple(sorted(owners, key=lambda o: o.owner))  # by start time (the retry owner's is zero)
    return {
        "owners": owners,
        "backends": tuple(
            BackendStatus(backend=key, pending=row["running"] + row["at_start"], **row)
            for key, row in sorted(backends.items())
        ),
        "oldest_pending": Pending(
            backend=oldest[0],
            session_id=oldest[1],
            user_id=oldest[2],
            kind=oldest[3],
            accepted=oldest[4],
            running=oldest[5] in live,
        )
        if oldest is not None
        else None,
        "failed": int(failed),
        "failures": tuple(
            Failed(backend=b, session_id=s, user_id=u, kind=k, accepted=c, last_error=e) for b, s, u, k, c, e in recent
        ),
    }


def _unregistered(owner: str, pending: int) -> Owner:
    """An owner named by pending rows only. A process's owner id is ``start time in ns:host:pid``."""
    if owner == RETRY_OWNER:
        return Owner(owner=owner, pid=None, host=None, started=0.0, running=False, pending=pending, registered=False)
    start, _, rest = owner.partition(":")
    host, _, pid = rest.rpartition(":")
    try:
        started, number = int(start) / 1e9, int(pid)
    except ValueError:
        started, number = 0.0, None
    return Owner(
        owner=owner, pid=number, host=host or None, started=started, running=False, pending=pending, registered=False
    )


# -- the command ----------------------------------------------------------------------------------------------------


def store_file(args: argparse.Namespace) -> Path:
    """The store to report on: ``--path`` (which must be a memory store) or the default one (which may not exist)."""
    named = args.path is not None
    path = Path(args.path).expanduser() if named else default_path()
    info = identify(path)
    if info.kind == STORE:
        if info.version > STORE_VERSION:
            problem = (
                f"{path} is a memory store of a newer memcore (schema {info.version}; this one knows {STORE_VERSION})"
            )
            raise _refuse(problem, named=named)
        return path
    if info.kind in (MISSING, EMPTY) and not named:
        return path
    if info.kind == MISSING:
        raise UsageError(f"no memory store at {path}")
    raise _refuse(_problem(path, info, "memory store"), named=named)


def cmd_status(args: argparse.Namespace) -> int:
    store = store_file(args)  # both files are recognised before either is read
    journal = journal_file(args, writing=False)
    status = read_status(journal, store, failures=args.failures)
    if args.json:
        print(json.dumps(attrs.asdict(status), indent=2, ensure_ascii=False))
    else:
        print(status_text(status))
    return 0


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _when(t: float, now: float) -> str:
    return f"{_clock(t)} ({_age(now - t)})"


def _age(seconds: float, *, ago: bool = True) -> str:
    """``1 h 2 min ago`` (or without ``ago``)."""
    if seconds < 1:
        return "just now" if ago else "0 s"
    s = int(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if s >= size:
            big, rest = divmod(s, size)
            small = {"d": (3600, "h"), "h": (60, "min"), "min": (1, "s")}[unit]
            part = rest // small[0]
            return f"{big} {unit}" + (f" {part} {small[1]}" if part else "") + (" ago" if ago else "")
    return f"{s} s" + (" ago" if ago else "")


def _state(owner: Owner) -> str:
    if owner.owner == RETRY_OWNER:
        return "re-queued by memcore retry"
    if owner.running:
        return "running"
    return "gone"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _where(p: Pending) -> str:
    return "queued in a running process" if p.running else "waiting for the next Memory with its backend"


def status_text(status: Status, width: int = 0, now: float | None = None) -> str:
    """What ``memcore status`` prints."""
    width = width or terminal_width()
    now = time.time() if now is None else now
    out = [f"memcore home: {status.home}", ""]
    if status.journal is None:
        out.append("Journal: none yet (nothing was ever accepted here).")
    else:
        out += _journal_lines(status, width, now)
    out.append("")
    if status.store is not None:
        if status.store_stats is None:
            out.append(f"Store: none yet at {status.store}.")
        else:
            out.append(f"{stats_line(status.store_stats)}  ({status.store})")
    return "\n".join(out).rstrip("\n")


def _journal_lines(status: Status, width: int, now: float) -> list[str]:
    out = [f"Journal: {status.journal}"]
    running = sum(o.running for o in status.owners)
    if not status.owners:
        out.append("  no process has it open")
    else:
        processes = [o for o in status.owners if o.owner != RETRY_OWNER]
        gone = len(processes) - running
        out.append(f"  {_plural(len(processes), 'process', 'processes')}: {running} running, {gone} gone")
        rows = [
            [
                str(o.pid) if o.pid is not None else "-",
                o.host or "-",
                _clock(o.started) if o.started else "-",
                _state(o),
                str(o.pending),
            ]
            for o in status.owners
        ]
        body = table(
            ["PID", "HOST", "STARTED", "STATE", "PENDING"], rows, width=width - 2, limits=(None, 24), right=(0, 4)
        )
        out += ["  " + line for line in body.splitlines()]
    out.append("")
    if not status.backends:
        out.append("Nothing pending, no session owes a commit, nothing failed.")
        return out
    rows = [
        [
            b.backend,
            str(b.running),
            str(b.at_start),
            str(b.owing_commit),
            str(b.failed),
            _age(now - b.oldest_pending, ago=False) if b.oldest_pending is not None else "-",
        ]
        for b in status.backends
    ]
    headers = ["BACKEND", "RUNNING", "AT START", "OWE COMMIT", "FAILED", "OLDEST"]
    out += table(headers, rows, width=width, limits=(20,), right=(1, 2, 3, 4)).splitlines()
    out += wrap(
        "Pending operations are queued in a running process (RUNNING) or wait for the next Memory with their "
        "backend (AT START); OWE COMMIT: sessions whose delivered writes no commit covers yet; FAILED: operations "
        "that failed for good ('memcore retry' re-queues them, 'memcore pending' lists them all); OLDEST: how long "
        "the oldest pending operation has waited.",
        width,
        first="  ",
        rest="  ",
    )
    oldest = status.oldest_pending
    if oldest is not None:
        user = f" of user {oldest.user_id!r}" if oldest.user_id is not None else ""
        text = (
            f"Oldest pending: {oldest.kind} of session {oldest.session_id!r}{user} on {oldest.backend}, accepted "
            f"{_when(oldest.accepted, now)}, {_where(oldest)}."
        )
        out += ["", *wrap(text, width, rest="  ")]
    if status.failures:
        shown = len(status.failures)
        head = (
            f"Recent failures ({shown} of {status.failed}, newest first):"
            if status.failed > shown
            else (f"Recent failures ({status.failed}, newest first):")
        )
        out += ["", head]
        for f in status.failures:
            user = f" of user {f.user_id!r}" if f.user_id is not None else ""
            out += wrap(
                f"{f.kind} of session {f.session_id!r}{user} on {f.backend}, accepted {_when(f.accepted, now)}",
                width,
                first="  ",
                rest="    ",
            )
            if f.last_error:
                out += wrap(f.last_error, width, first="    last error: ", rest="      ", max_lines=ERROR_LINES)
    return out

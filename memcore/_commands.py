"""The commands of the ``memcore`` command line: demo, replay, recall, backends, pending, retry and forget."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from . import _plugins as registry
from . import _validate as check
from ._errors import BackendLoadError, MemcoreError
from ._hooks import hookimpl
from ._journal import live_owners
from ._journal_admin import (
    DIRECTORY,
    EMPTY,
    JOURNAL,
    JOURNAL_VERSION,
    MISSING,
    OTHER_SQLITE,
    STORE,
    STORE_VERSION,
    FileInfo,
    PendingGroup,
    connect_readonly,
    identify,
    matches_backend,
    pending,
    requeue_failed,
)
from ._memory import JOURNAL_FILE, Memory
from ._output import backends_text, pending_table, recall_table, report_lines, script_summary, stats_line
from ._paths import memcore_home
from ._player import Recalled, play
from ._records import Recollection, Report, Session
from ._replay import DEFAULT_SESSION, Script, parse
from ._sqlite import SQLiteBackend, default_path, fts_query
from ._table import Progress

#: The demo's database, under ``memcore_home()``; replaced on every run.
DEMO_FILE = "demo.sqlite3"


#: What the demo's closing lines suggest recalling from its store.
DEMO_QUERY = "espresso"


class UsageError(Exception):
    """Bad input given on the command line (exit status 2)."""


class UnusableFile(MemcoreError):
    """A file memcore found at its own default place cannot be used (exit status 1); it is left as it is."""


def _out(text: str = "") -> None:
    print(text, file=sys.stdout)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


# -- choosing and opening the store ---------------------------------------------------------------------------------


def store_options(args: argparse.Namespace) -> tuple[list[str] | None, dict[str, dict[str, Any]]]:
    """``Memory(backends=..., settings=...)`` from ``--backend`` and ``--path``; checked before anything is opened."""
    names: list[str] | None = list(args.backends) if args.backends else None
    if names:
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"backend {twice[0]!r} is given more than once")
    settings: dict[str, dict[str, Any]] = {}
    if args.path is not None:
        if names is not None and "sqlite" not in names:
            raise UsageError("--path sets the sqlite backend's database, but sqlite is not among the --backend names")
        settings["sqlite"] = {"path": args.path}
    return names, settings


def sqlite_path(args: argparse.Namespace) -> Path | None:
    """The database the sqlite backend uses for these arguments, or None when sqlite is not selected."""
    if args.backends and "sqlite" not in args.backends:
        return None
    return Path(args.path).expanduser() if args.path is not None else default_path()


def store_stats(path: Path) -> dict[str, Any]:
    backend = ReadOnlyStore(path)
    try:
        return backend.stats()
    finally:
        backend.memcore_close()


class ReadOnlyStore(SQLiteBackend):
    """The SQLite backend on an existing store, opened read-only (``mode=ro``): recall and counts, never a write,
    never a schema. Every connection it opens comes from :meth:`_db`."""

    def __init__(self, path: Path):
        self._ro_local = threading.local()
        self._ro_connections: list[sqlite3.Connection] = []
        self._ro_lock = threading.Lock()
        #: The schema version of a store older than this memcore's, read as it is (else None): the next backend
        #: that writes to it migrates it.
        self.legacy: int | None = None
        super().__init__(path)  # reads the schema version through _db, and finds nothing to create

    def _upgrade(self, db: sqlite3.Connection, version: int) -> None:
        self.legacy = version  # never migrated here: schema 1 has no users, so all of it is the default user's

    @hookimpl
    def memcore_recall(
        self, query: str, session: Session | None, limit: int, user_id: str | None = None
    ) -> Sequence[Recollection]:
        if self.legacy is None:
            return super().memcore_recall(query, session, limit, user_id)
        user = session.user_id if session is not None else user_id
        match = fts_query(query)
        if user is not None or not match:
            return []
        rows = self._db().execute(
            "SELECT text, origin, ref, session_id, kind, bm25(recall) FROM recall WHERE recall MATCH ? "
            "ORDER BY bm25(recall), rowid LIMIT ?",
            (match, limit),
        )
        return self._recollections(rows)

    def scope_counts(self, user_id: str | None, session_id: str | None = None) -> dict[str, int]:
        if self.legacy is None:
            return super().scope_counts(user_id, session_id)
        if user_id is not None:
            return {"sessions": 0, "messages": 0, "notes": 0}
        where, by_id, args = ("session_id = ?", "id = ?", (session_id,)) if session_id is not None else ("1", "1", ())
        db = self._db()
        sessions = db.execute(
            f"SELECT count(sid) FROM (SELECT id AS sid FROM sessions WHERE {by_id} "
            f"UNION SELECT session_id FROM messages WHERE {where} UNION SELECT session_id FROM notes WHERE {where})",
            args * 3,
        ).fetchone()[0]
        messages = db.execute(f"SELECT count(*) FROM messages WHERE {where}", args).fetchone()[0]
        notes = db.execute(f"SELECT count(*) FROM notes WHERE {where}", args).fetchone()[0]
        return {"sessions": int(sessions), "messages": int(messages), "notes": int(notes)}

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._ro_local, "db", None)
        if db is None:
            db = connect_readonly(self.path, timeout=self.busy_timeout)
            self._ro_local.db = db
            with self._ro_lock:
                self._ro_connections.append(db)
        return db

    @hookimpl
    def memcore_close(self) -> None:
        with self._ro_lock:
            connections, self._ro_connections = self._ro_connections, []
        for db in connections:
            db.close()
        self._ro_local = threading.local()
        super().memcore_close()


def _problem(path: Path, info: FileInfo, what: str) -> str:
    """Why ``path`` is not a memcore ``what`` ("memory store", "journal")."""
    if info.kind == DIRECTORY:
        return f"{path} is a directory, not a {what}"
    if info.kind == EMPTY:
        return f"{path} is empty, not a memcore {what}"
    if info.kind == STORE:
        return f"{path} is a memcore memory store, not a {what}"
    if info.kind == JOURNAL:
        return f"{path} is memcore's journal, not a {what}"
    if info.kind == OTHER_SQLITE:
        return f"{path} is not a memcore {what}: it is an SQLite database of something else ({info.detail})"
    return f"{path} is not a memcore {what}: {info.detail}"


def _refuse(problem: str, *, named: bool, note: str = "") -> Exception:
    """The error for a file memcore will not use: bad input (2) when the user named it, else :class:`UnusableFile`."""
    message = f"{problem}; it was left as it is{note}"
    return UsageError(message) if named else UnusableFile(message)


def check_store(path: Path, *, named: bool, writing: bool) -> None:
    """Refuse anything at ``path`` but a memory store of the SQLite backend, before anything opens it. A writing
    command may also make a new store where there is none (no file, or an empty one); a reading one may not."""
    info = identify(path)
    if info.kind == STORE:
        if info.version > STORE_VERSION:
            raise _refuse(
                f"{path} is a memory store of a newer memcore (schema {info.version}; this one knows {STORE_VERSION})",
                named=named,
            )
        return
    if info.kind in (MISSING, EMPTY):
        if writing:
            return
        empty = ": the file is empty" if info.kind == EMPTY else ""
        raise UsageError(f"no memory store at {path} yet{empty} (replay an event log into it first, or give --path)")
    raise _refuse(_problem(path, info, "memory store"), named=named)


# -- replaying ------------------------------------------------------------------------------------------------------


def read_input(name: str) -> tuple[bytes, str]:
    """The bytes of ``name`` (``-`` is stdin) and the name to show in messages."""
    if name == "-":
        stdin: Any = sys.stdin
        buffer = getattr(stdin, "buffer", None)
        return (buffer.read() if buffer is not None else stdin.read().encode("utf-8")), "<stdin>"
    try:
        return Path(name).read_bytes(), name
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None


def run_script(memory: Memory, script: Script, *, session_id: str, quiet: bool) -> tuple[list[Recalled], Report, float]:
    """Play ``script`` into ``memory`` with a progress bar on stderr, then close ``memory`` (always)."""
    progress = Progress(sys.stderr, f"replaying {Path(script.source).name}", enabled=not quiet)
    start = time.monotonic()
    try:
        recalled = play(memory, script, session_id=session_id, progress=progress.update)
    finally:
        report = memory.close()
        progress.finish()
    elapsed = time.monotonic() - start
    progress.finish(f"memcore: replayed {len(script.events)} events from {script.source} in {elapsed:.2f} s")
    return recalled, report, elapsed


def print_results(recalled: Sequence[Recalled], report: Report, elapsed: float, store: Path | None) -> int:
    """The recall table, the report and the store's counts; returns the exit status (1 if anything failed)."""
    if recalled:
        _out(recall_table([(r.query, r.recollections) for r in recalled], show_query=True))
        _out()
    for line in report_lines(report, elapsed):
        _out(line)
    if store is not None:
        _out(f"{stats_line(store_stats(store))}  ({store})")
    if report.ok:
        return 0
    _err(f"memcore: error: {report.failed} operation(s) failed and {report.pending} are left pending")
    return 1


def cmd_replay(args: argparse.Namespace) -> int:
    session = check.session_id(args.session, "--session") if args.session is not None else DEFAULT_SESSION
    names, settings = store_options(args)
    data, source = read_input(args.file)
    script = parse(data, source, default_session=session)  # the whole file, before anything is opened
    target = sqlite_path(args)
    if target is not None:
        check_store(target, named=args.path is not None, writing=True)
    memory = Memory(backends=names, settings=settings)
    _out(f"Replaying {source}: {script_summary(script, session)}")
    store = sqlite_path(args) if "sqlite" in memory.backends else None
    recalled, report, elapsed = run_script(memory, script, session_id=session, quiet=args.quiet)
    return print_results(recalled, report, elapsed, store)


# -- the demo -------------------------------------------------------------------------------------------------------


def demo_script() -> Script:
    data = (resources.files("memcore") / "_data" / "demo.jsonl").read_bytes()
    return parse(data, "demo.jsonl")


def reset_demo_store(path: Path, sessions: set[str], *, explicit: bool) -> None:
    """Delete the demo database and its ``-wal``/``-shm`` files. A file given with ``--path`` is deleted only if it
    holds nothing but the demo's sessions (an earlier demo run), so the demo never wipes real memories."""
    if path.is_dir():
        raise UsageError(f"{path} is a directory; --path takes a database file")
    if explicit:
        info = identify(path)
        if info.kind == STORE:
            problem = _not_a_demo_store(path, sessions)
        elif info.kind in (MISSING, EMPTY):
            problem = None
        else:
            problem = _problem(path, info, "memory store")
        if problem:
            raise UsageError(f"{problem}; it was left as it is (the demo needs a file of its own: pick another --path)")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _not_a_demo_store(path: Path, sessions: set[str]) -> str | None:
    """Why the demo must not replace the store at ``path``, or None if it holds only the demo's sessions."""
    try:
        db = connect_readonly(path)
        try:
            rows = db.execute(
                "SELECT id FROM sessions UNION SELECT session_id FROM messages UNION SELECT session_id FROM notes"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"{path} cannot be read ({exc})"
    return None if {row[0] for row in rows} <= sessions else f"{path} holds memories other than the demo's"


def demo_recall_command(path: Path) -> str:
    """The command that recalls from the demo's store at ``path``."""
    return f"memcore recall --path {shlex.quote(str(path))} {DEMO_QUERY}"


def cmd_demo(args: argparse.Namespace) -> int:
    script = demo_script()
    explicit = args.path is not None
    path = Path(args.path).expanduser() if explicit else memcore_home() / DEMO_FILE
    reset_demo_store(path, set(script.session_ids()), explicit=explicit)
    _out("memcore demo: a week of Sam, a developer, with a coding and life assistant, replayed into memory.")
    _out(f"  {script_summary(script, DEFAULT_SESSION)}")
    _out(f"  database: {path} (made afresh on every run; your own memories are not touched)")
    _out()
    # No journal: the demo's store is made afresh each run, so there is nothing for a journal to keep.
    memory = Memory(backends=["sqlite"], settings={"sqlite": {"path": str(path)}}, plugins=[], journal=False)
    recalled, report, elapsed = run_script(memory, script, session_id=DEFAULT_SESSION, quiet=args.quiet)
    status = print_results(recalled, report, elapsed, path)
    _out()
    _out(f"Ask the demo's memory yourself: {demo_recall_command(path)}")
    return status


# -- recall and backends ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _warnings_logged() -> Iterator[list[logging.LogRecord]]:
    """The warnings memcore logs inside the block (they are printed as usual: this only collects them)."""
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger, handler = logging.getLogger("memcore"), Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def cmd_recall(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise UsageError("the query is blank")
    names, settings = store_options(args)
    store = sqlite_path(args)
    specs: list[str | Any] | None = list(names) if names else None
    if store is not None:  # read-only: a recall never writes to the store, nor creates one
        check_store(store, named=args.path is not None, writing=False)
        try:
            reader = ReadOnlyStore(store)
        except (sqlite3.Error, RuntimeError) as exc:
            raise _refuse(f"{store} cannot be read ({exc})", named=args.path is not None) from None
        specs = [reader if name == "sqlite" else name for name in specs] if specs else [reader]
        settings.pop("sqlite", None)
    memory = Memory(backends=specs, settings=settings, journal=False)  # reads only: never replays the journal
    try:
        if not any("recall" in caps for caps in memory.capabilities.values()):
            raise UsageError(f"none of the selected backends can recall ({', '.join(memory.backends)})")
        with _warnings_logged() as warnings:
            start = time.monotonic()
            found = memory.recall(args.query, limit=args.limit, timeout=args.timeout)
            # recall() returns before its timeout once every backend answered; only a call that was cut off waits
            # the whole timeout out.
            timed_out = time.monotonic() - start >= args.timeout
    finally:
        memory.close()
    if args.json:
        _out(json.dumps([attrs.asdict(item) for item in found], indent=2, ensure_ascii=False, default=str))
    elif found:
        _out(recall_table([(args.query, found)], show_query=False))
    elif timed_out:
        _out(f"Nothing recalled for {args.query!r} within the {args.timeout:g} s timeout.")
    else:
        _out(f"Nothing recalled for {args.query!r}.")
    if timed_out:
        _err(
            f"memcore: error: recall timed out after {args.timeout:g} s: not every backend answered"
            + (", so what is shown may be incomplete" if found else "")
            + " (give a longer --timeout)"
        )
    return 1 if timed_out or warnings else 0


def describe_entry(name: str, target: str, group: str) -> dict[str, Any]:
    """One installed entry point: what it implements, or why it cannot be loaded."""
    backend = group == registry.BACKENDS_GROUP
    key = "capabilities" if backend else "hooks"
    entry: dict[str, Any] = {"name": name, "target": target, key: [], "error": None}
    try:
        obj = registry.load_class(name, group)
    except BackendLoadError as exc:
        entry["error"] = repr(exc.__cause__) if exc.__cause__ is not None else str(exc)
        return entry
    if backend:
        entry[key] = sorted(registry.capabilities(obj))
        if "write" not in entry[key]:
            entry["error"] = "does not implement memcore_write, so memcore refuses it"
    else:
        pm = registry.new_manager()
        entry[key] = sorted(a for a in dir(obj) if a.startswith("memcore_") and pm.parse_hookimpl_opts(obj, a))
    return entry


def cmd_backends(args: argparse.Namespace) -> int:
    groups = (registry.BACKENDS_GROUP, registry.PLUGINS_GROUP)
    found = [[describe_entry(n, t, g) for n, t in sorted(registry.available(g).items())] for g in groups]
    if args.json:
        _out(json.dumps({"backends": found[0], "plugins": found[1]}, indent=2))
    else:
        _out(backends_text(found[0], found[1], groups))
    return 0


# -- the journal: pending and retry -----------------------------------------------------------------------------------


def journal_file(args: argparse.Namespace, *, writing: bool) -> Path | None:
    """The journal to use, recognised as one before anything opens it (a writing command also has SQLite check its
    integrity, which the journal requires). None when the default journal does not exist yet (nothing was ever
    accepted here); a named file that is missing, or is anything but a journal, is refused and left as it is."""
    named = args.journal is not None
    path = Path(args.journal).expanduser() if named else memcore_home() / JOURNAL_FILE
    info = identify(path, check_integrity=writing)
    if info.kind == JOURNAL:
        if info.version > JOURNAL_VERSION:
            problem = (
                f"{path} is the journal of a newer memcore (schema {info.version}; this one knows {JOURNAL_VERSION})"
            )
            raise _refuse(problem, named=named)
        return path
    if info.kind == MISSING:
        if named:
            raise UsageError(f"no journal at {path}")
        return None
    if info.kind == EMPTY and not named:
        return None
    note = "" if named else " (the next Memory that starts moves it aside and starts a new journal)"
    raise _refuse(_problem(path, info, "journal"), named=named, note=note)


def cmd_pending(args: argparse.Namespace) -> int:
    path = journal_file(args, writing=False)
    groups = pending(path) if path is not None else []
    if args.json:
        _out(json.dumps([attrs.asdict(g) for g in groups], indent=2, ensure_ascii=False))
        return 0
    if not groups:
        _out("The journal holds nothing: every accepted operation was delivered.")
        return 0
    _out(pending_table(groups))
    return 0


def _tally(groups: Sequence[PendingGroup], by: str) -> str:
    """``sqlite:/x/store.sqlite3 (2), openviking (1)``: operations per backend key or session."""
    counts: dict[str, int] = {}
    for g in groups:
        counts[getattr(g, by)] = counts.get(getattr(g, by), 0) + g.operations
    return ", ".join(f"{key} ({n})" for key, n in counts.items())


def _filters(args: argparse.Namespace) -> str:
    parts = [f"--only-backend {args.backend_key}"] if args.backend_key is not None else []
    parts += [f"--session {args.session}"] if args.session is not None else []
    return " ".join(parts)


def cmd_retry(args: argparse.Namespace) -> int:
    if args.session is not None:
        check.session_id(args.session, "--session")
    if args.backend_key is not None and not args.backend_key.strip():
        raise UsageError("--only-backend is empty")
    names, settings = store_options(args)  # everything is checked before the journal is changed
    if args.deliver:
        for name in names or ():
            with contextlib.suppress(BackendLoadError):  # an unknown name is an error now; a broken one, in the report
                registry.load_class(name)
        store = sqlite_path(args)
        if store is not None:
            check_store(store, named=args.path is not None, writing=True)
    path = journal_file(args, writing=True)
    if path is None:
        _out("No failed operations to retry: there is no journal yet.")
        return 0
    failed = [g for g in pending(path) if g.status == "failed"]
    count = requeue_failed(path, backend=args.backend_key, session_id=args.session)
    if count:
        _out(f"Re-queued {count} failed operation(s), in their order, ahead of their sessions' later operations.")
    elif failed and _filters(args):
        matching = [g for g in failed if args.backend_key is None or matches_backend(g.backend, args.backend_key)]
        owner = (
            f"the failed operations of {args.backend_key}" if args.backend_key else "the journal's failed operations"
        )
        where = (
            f"{owner} are in the sessions {_tally(matching, 'session_id')}"
            if matching
            else f"the journal's failed operations are for {_tally(failed, 'backend')}"
        )
        _out(f"No failed operations match {_filters(args)}: {where}.")
    else:
        _out("No failed operations to retry.")
    waiting = [g for g in pending(path) if g.waiting]
    total = sum(g.operations for g in waiting)
    if not args.deliver:
        if count:
            _out(
                "The next Memory that starts with their backend delivers them; 'memcore retry --deliver' (with their "
                "--backend and --path) does it now."
            )
        elif total:
            _out(
                f"{total} operation(s) wait in the journal for the next Memory with their backend: "
                f"{_tally(waiting, 'backend')} ('memcore retry --deliver' delivers them now)."
            )
        return 0
    if not total:
        _out("Nothing waits in the journal to be delivered.")
        return 0
    _out(f"Delivering now what waits in the journal: {_tally(waiting, 'backend')}.")
    memory = Memory(backends=names, settings=settings, journal=path)
    report = memory.close(timeout=args.timeout)
    first, *rest = report_lines(report, report.elapsed)
    _out("Delivered now: " + first)
    for line in rest:
        _out(line)
    left = [g for g in pending(path) if g.waiting]
    if left:
        _out(
            f"Still waiting in the journal: {_tally(left, 'backend')} (for other backends or stores than the ones "
            "selected with --backend and --path, or not delivered in time; 'memcore pending' lists them)."
        )
    return 0 if report.ok else 1


# -- forget -----------------------------------------------------------------------------------------------------------


def _plural(n: int, one: str) -> str:
    return f"{n} {one}{'' if n == 1 else 's'}"


def _counted(counts: dict[str, int]) -> str:
    """``1 session, 4 messages and 2 notes``."""
    parts = [_plural(counts[k], k[:-1]) for k in ("sessions", "messages", "notes")]
    return f"{parts[0]}, {parts[1]} and {parts[2]}"


def _scope_text(user_id: str | None, session_id: str | None) -> str:
    who = "the default user" if user_id is None else f"user {user_id!r}"
    return f"session {session_id!r} of {who}" if session_id is not None else f"everything of {who}"


@attrs.frozen(kw_only=True)
class JournalScope:
    """What a journal holds of one user's session (or of all the user's sessions), but forgets: operations for the
    store, ``waiting`` for the next Memory (a forget drops them), ``running`` (queued by a Memory that is still
    running: not dropped, they reach the store after the forget), ``failed`` (kept in the journal, with their
    content; ``memcore retry`` would deliver them again); and ``elsewhere``, operations for other backends or stores."""

    waiting: int = 0
    running: int = 0
    failed: int = 0
    elsewhere: int = 0


def journal_scope(path: Path | None, key: str, user_id: str | None, session_id: str | None) -> JournalScope:
    """Count, read-only, what the journal at ``path`` holds of the scope (all zero without a journal)."""
    if path is None:
        return JournalScope()
    db = connect_readonly(path)
    try:
        live = live_owners(db)
        columns = {row[1] for row in db.execute("PRAGMA table_info(ops)")}
        if "user_id" in columns:
            where, args = "kind != 'forget' AND user_id IS ?", [user_id]
        elif user_id is None:  # a journal from before users: everything in it is the default user's
            where, args = "kind != 'forget'", []
        else:
            return JournalScope()
        if session_id is not None:
            where += " AND session_id = ?"
            args.append(session_id)
        rows = db.execute(
            f"SELECT backend, owner, status, count(*) FROM ops WHERE {where} GROUP BY backend, owner, status", args
        ).fetchall()
    finally:
        db.close()
    counts = {"waiting": 0, "running": 0, "failed": 0, "elsewhere": 0}
    for backend, owner, status, n in rows:
        if backend != key:
            counts["elsewhere"] += n
        elif status == "failed":
            counts["failed"] += n
        else:
            counts["running" if owner in live else "waiting"] += n
    return JournalScope(**counts)


def _forget_user(args: argparse.Namespace) -> str | None:
    """The user ``--user`` names, checked (None for ``--default-user``)."""
    if args.default_user:
        return None
    if not args.user.strip():
        raise UsageError("--user is empty or blank; for the default user give --default-user instead")
    return check.session_id(args.user, "--user")


def _stdin_is_terminal() -> bool:
    isatty = getattr(sys.stdin, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):  # closed or detached
        return False


def _confirmed(prompt: str) -> bool:
    try:
        answer = input(prompt)
    except EOFError:
        _out()
        return False
    return answer.strip().lower() in ("y", "yes")


def _read_scope(path: Path, user_id: str | None, session_id: str | None, *, named: bool) -> dict[str, int]:
    try:
        reader = ReadOnlyStore(path)
    except (sqlite3.Error, RuntimeError) as exc:
        raise _refuse(f"{path} cannot be read ({exc})", named=named) from None
    try:
        return reader.scope_counts(user_id, session_id)
    finally:
        reader.memcore_close()


def cmd_forget(args: argparse.Namespace) -> int:
    user = _forget_user(args)
    session = check.session_id(args.session, "--session") if args.session is not None else None
    named = args.path is not None
    store = Path(args.path).expanduser() if named else default_path()
    if identify(store).kind in (MISSING, EMPTY):
        raise UsageError(f"no memory store at {store}: there is nothing to forget")
    check_store(store, named=named, writing=False)  # read-only: nothing is opened for writing before the answer
    journal = journal_file(args, writing=True)
    if not args.yes and not _stdin_is_terminal():
        raise UsageError(
            "forget asks before it erases, and stdin is not a terminal: give --yes to erase without asking"
        )
    scope = _scope_text(user, session)
    counts = _read_scope(store, user, session, named=named)
    key = f"sqlite:{store.resolve()}"
    queued = journal_scope(journal, key, user, session)
    if not any(counts.values()) and not queued.waiting:
        _out(f"Nothing to forget: {store} holds nothing of {scope}.")
        _forget_notes(queued)
        return 0
    _out(f"This erases {scope} from {store}: {_counted(counts)}.")
    if queued.waiting:
        waiting = _plural(queued.waiting, "operation")
        _out(f"  and {waiting} of it waiting in the journal ({journal}): they are dropped.")
    _forget_notes(queued)
    if not args.yes and not _confirmed("Erase it? [y/N] "):
        _out("Nothing was erased.")
        return 1
    start = time.monotonic()
    memory = Memory(backends=[SQLiteBackend(path=store)], journal=journal if journal is not None else False)
    try:
        handle = memory.forget(user_id=user, session_id=session)
        finished = handle.wait(args.timeout)
    finally:
        report = memory.close(timeout=max(1.0, args.timeout - (time.monotonic() - start)))
    if not finished:
        later = (
            "it is kept in the journal and finishes at the next start"
            if journal is not None
            else "run memcore forget again"
        )
        _err(f"memcore: error: the forget did not finish within {args.timeout:g} s; {later}")
        return 1
    if handle.failures:
        _err(f"memcore: error: the forget failed: {handle.failures[0].error}")
        return 1
    left = _read_scope(store, user, session, named=named)
    dropped = f"; {_plural(handle.dropped, 'queued operation')} dropped" if handle.dropped else ""
    _out(f"Erased {scope}: {_counted(counts)}{dropped}.")
    for backend, kept in handle.kept.items():
        _out(f"{backend} keeps: {kept}")
    if report.replayed:  # a Memory on the journal delivers what waits there for its store, other users' too
        _out(f"Also delivered what waited in the journal for this store: {_plural(report.delivered, 'operation')}.")
    if not report.ok:
        for line in report_lines(report, report.elapsed):
            _out(line)
    if any(left.values()):  # written meanwhile by a process that is still running
        _err(f"memcore: error: {store} holds {_counted(left)} of {scope} again: a running process wrote them")
        return 1
    return 0 if report.ok else 1


def _forget_notes(queued: JournalScope) -> None:
    """What the forget cannot reach in the journal."""
    if queued.running:
        _out(
            f"  Not erased: {_plural(queued.running, 'operation')} of it queued by a running process, which delivers "
            "them to the store after this (stop that process first, or forget from it)."
        )
    if queued.failed:
        them = "it" if queued.failed == 1 else "them"
        _out(
            f"  Not erased: {_plural(queued.failed, 'failed operation')} of it, kept in the journal with what "
            f"{'it' if queued.failed == 1 else 'they'} held ('memcore retry' would deliver {them} again)."
        )
    if queued.elsewhere:
        _out(
            f"  Not erased: {_plural(queued.elsewhere, 'operation')} of it in the journal for other backends or stores."
        )

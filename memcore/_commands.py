"""The commands of the ``memcore`` command line: demo, replay, recall, backends, pending and retry."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from . import _plugins as registry
from . import _validate as check
from ._errors import BackendLoadError
from ._journal import pending, requeue_failed
from ._memory import JOURNAL_FILE, Memory
from ._output import backends_text, pending_table, recall_table, report_lines, script_summary, stats_line
from ._paths import memcore_home
from ._player import Recalled, play
from ._records import Report
from ._replay import DEFAULT_SESSION, Script, parse
from ._sqlite import SQLiteBackend, default_path
from ._table import Progress

#: The demo's database, under ``memcore_home()``; replaced on every run.
DEMO_FILE = "demo.sqlite3"


class UsageError(Exception):
    """Bad input given on the command line (exit status 2)."""


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
    backend = SQLiteBackend(path)
    try:
        return backend.stats()
    finally:
        backend.memcore_close()


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
    if explicit and path.exists() and path.stat().st_size:
        problem = _not_a_demo_store(path, sessions)
        if problem:
            raise UsageError(f"{path} {problem}; the demo needs a file of its own: pick another --path")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _not_a_demo_store(path: Path, sessions: set[str]) -> str | None:
    """Why the demo must not replace ``path``, or None if it holds only the demo's sessions."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT id FROM sessions UNION SELECT session_id FROM messages UNION SELECT session_id FROM notes"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return "is not a memcore database"
    return None if {row[0] for row in rows} <= sessions else "holds memories other than the demo's"


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
    return print_results(recalled, report, elapsed, path)


# -- recall and backends ----------------------------------------------------------------------------------------------


def cmd_recall(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise UsageError("the query is blank")
    names, settings = store_options(args)
    store = sqlite_path(args)
    if store is not None and not store.exists():
        raise UsageError(f"no memory store at {store} yet (replay an event log into it first, or give --path)")
    memory = Memory(backends=names, settings=settings, journal=False)  # reads only: never replays the journal
    try:
        found = memory.recall(args.query, limit=args.limit, timeout=args.timeout)
    finally:
        memory.close()
    if args.json:
        _out(json.dumps([attrs.asdict(item) for item in found], indent=2, ensure_ascii=False, default=str))
    elif found:
        _out(recall_table([(args.query, found)], show_query=False))
    else:
        _out(f"Nothing recalled for {args.query!r}.")
    return 0


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


def journal_path(args: argparse.Namespace) -> Path | None:
    """The journal to read; None when the default one does not exist yet (nothing was ever accepted here)."""
    if args.journal:
        path = Path(args.journal).expanduser()
        if not path.is_file():
            raise UsageError(f"no journal at {path}")
        return path
    path = memcore_home() / JOURNAL_FILE
    return path if path.is_file() else None


def cmd_pending(args: argparse.Namespace) -> int:
    path = journal_path(args)
    groups = pending(path) if path is not None else []
    if args.json:
        _out(json.dumps([attrs.asdict(g) for g in groups], indent=2, ensure_ascii=False))
        return 0
    if not groups:
        _out("The journal holds nothing: every accepted operation was delivered.")
        return 0
    _out(pending_table(groups))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    path = journal_path(args)
    if path is None:
        _out("No failed operations to retry.")
        return 0
    count = requeue_failed(path, backend=args.backend_key, session_id=args.session)
    if not count:
        _out("No failed operations to retry.")
        return 0
    _out(f"Re-queued {count} failed operation(s); the next Memory that starts with their backend delivers them.")
    if not args.deliver:
        return 0
    names, settings = store_options(args)
    memory = Memory(backends=names, settings=settings, journal=path)
    report = memory.close(timeout=args.timeout)
    _out("Delivered now: " + report_lines(report, report.elapsed)[0])
    return 0 if report.ok else 1

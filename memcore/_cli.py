"""The ``memcore`` command line: argument parsing and error handling. The commands live in :mod:`memcore._commands`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator

from . import __version__
from ._commands import (
    DEMO_FILE,
    UsageError,
    cmd_backends,
    cmd_demo,
    cmd_forget,
    cmd_pending,
    cmd_recall,
    cmd_replay,
    cmd_retry,
    demo_recall_command,
)
from ._errors import InvalidContent, InvalidSessionId, InvalidSwitch, MemcoreError, UnknownBackend
from ._paths import memcore_home
from ._replay import ScriptError
from ._status import FAILURES_SHOWN, cmd_status

#: How many of the core's warnings (failed operations, skipped backends...) a run prints; the report has the rest.
WARNINGS_SHOWN = 5

#: Errors in what the user gave (exit status 2, like argparse's usage errors); other memcore errors exit with 1.
INPUT_ERRORS = (UsageError, UnknownBackend, InvalidSessionId, InvalidSwitch, InvalidContent)

_STORE_HELP = """\
Without --backend, memcore uses its embedded SQLite store, $MEMCORE_HOME/memory.sqlite3
(or the per-user data directory). --backend takes installed backend names (see
'memcore backends'); --path another SQLite file."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, at least 0, not {text}")
    return value


def _db_path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the database path is empty")
    return text


def _journal_path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the journal path is empty")
    return text


def _top_epilog() -> str:
    """The examples of ``memcore --help``: the demo keeps its memories in a store of its own, so the recall that
    follows it names that store."""
    lines = [
        ("memcore demo", "a bundled conversation, replayed into a store of its own"),
        (demo_recall_command(memcore_home() / DEMO_FILE), "what the demo's memory recalls"),
        ("memcore replay chat.jsonl", "your own event log, replayed into your memory store"),
        ('memcore recall "espresso"', "what your memory store recalls"),
    ]
    examples = "\n".join(f"  {command}\n      # {what}" for command, what in lines)
    return (
        f"examples:\n{examples}\n\n"
        "Run 'memcore COMMAND --help' for a command's options. MEMCORE_HOME sets where memcore keeps its files."
    )


def _store_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("store options", _STORE_HELP)
    group.add_argument(
        "--backend",
        dest="backends",
        action="append",
        metavar="NAME",
        help="an installed backend to use (repeat for several; default: sqlite)",
    )
    group.add_argument("--path", type=_db_path, metavar="DB", help="the SQLite database file of the sqlite backend")
    return parent


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    run: Callable[[argparse.Namespace], int],
    summary: str,
    description: str,
    examples: list[str],
    parents: list[argparse.ArgumentParser] | None = None,
) -> argparse.ArgumentParser:
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    parser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        parents=parents or [],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memcore",
        description="memcore: long-term memory for AI agents, one session lifecycle for any memory service.",
        epilog=_top_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    store = [_store_parent()]

    demo = _command(
        sub,
        "demo",
        cmd_demo,
        "replay a bundled conversation and show what memory makes of it",
        "Replays a bundled week of conversation (turns, notes, session switches) into a fresh SQLite database,\n"
        "then shows what a few recall queries find, the delivery report and the store's counts.\n"
        "Needs no network and no configuration; your own memory store is not touched. Its last line is the\n"
        "'memcore recall --path ...' command that searches the demo's store.",
        ["memcore demo", "memcore demo --quiet --path /tmp/demo.sqlite3"],
    )
    demo.add_argument(
        "--path",
        type=_db_path,
        metavar="DB",
        help="the database to use (default: $MEMCORE_HOME/demo.sqlite3); replaced on every run (a --path file only "
        "if it is new, empty or an earlier demo's)",
    )
    demo.add_argument("--quiet", "-q", action="store_true", help="no progress display on stderr")

    replay = _command(
        sub,
        "replay",
        cmd_replay,
        "replay a JSONL event log into memory",
        "Replays an event log (one JSON object per line: session, turn, note, switch, end, recall; see\n"
        "docs/replay.md) through a session lifecycle. The whole file is checked first: if any line is bad,\n"
        "each is reported as FILE:LINE: problem, nothing is applied, and the exit status is 2.",
        ["memcore replay chat.jsonl", "cat chat.jsonl | memcore replay - --session support-42 --path team.sqlite3"],
        store,
    )
    replay.add_argument("file", metavar="FILE.jsonl", help="the event log to replay; '-' reads stdin")
    replay.add_argument(
        "--session", metavar="ID", help="the session to start in when the log has no session event (default: replay)"
    )
    replay.add_argument("--quiet", "-q", action="store_true", help="no progress display on stderr")

    recall = _command(
        sub,
        "recall",
        cmd_recall,
        "search memory for what is relevant to a query",
        "Asks every selected backend for memories relevant to QUERY (outside any session) and prints them,\n"
        "best first. In the SQLite store, notes are recallable at once and turns once their session is committed.\n"
        "The store is opened read-only and must exist. The exit status is 1 if the recall timed out before every\n"
        "backend answered, or a backend's recall failed.",
        ['memcore recall "espresso in the morning"', 'memcore recall "deadline" --limit 3 --json'],
        store,
    )
    recall.add_argument("query", metavar="QUERY", help="what to look for")
    recall.add_argument("--limit", "-n", type=_positive_int, default=5, metavar="N", help="at most N results (5)")
    recall.add_argument("--timeout", type=_seconds, default=2.0, metavar="SECONDS", help="wait at most this long (2)")
    recall.add_argument("--json", action="store_true", help="print the recollections as JSON")

    backends = _command(
        sub,
        "backends",
        cmd_backends,
        "list installed backends and observer plugins",
        "Lists the backends installed in the entry-point group memcore.backends with what each implements\n"
        "(its capabilities), and the observer plugins of the group memcore.plugins. An entry point that fails\n"
        "to import is listed with its error.",
        ["memcore backends", "memcore backends --json"],
    )
    backends.add_argument("--json", action="store_true", help="print the listing as JSON")

    journal_help = "the journal file (default: $MEMCORE_HOME/journal.sqlite3)"
    pending = _command(
        sub,
        "pending",
        cmd_pending,
        "list what the journal holds: operations not yet delivered, and those that failed",
        "Lists the journal's operations per backend and session: 'pending' ones are queued in a running\n"
        "process or were left by one that stopped (the next Memory with that backend replays them, in order);\n"
        "'failed' ones failed for good, with their last error ('memcore retry' re-queues them).",
        ["memcore pending", "memcore pending --json"],
    )
    pending.add_argument("--journal", type=_journal_path, metavar="FILE", help=journal_help)
    pending.add_argument("--json", action="store_true", help="print the listing as JSON")

    status = _command(
        sub,
        "status",
        cmd_status,
        "show the journal's processes, what is pending or failed per backend, and the store's counts",
        "Shows, for $MEMCORE_HOME (or --journal FILE and --path DB): the processes registered in the journal and\n"
        "whether each still runs, per backend the operations pending (queued in a running process, or waiting\n"
        "for the next Memory with that backend), the sessions that owe a commit and the operations that failed\n"
        "for good, the oldest pending operation, the most recent failures with their last error, and the\n"
        "store's counts. Read-only: it never creates, moves or changes a file. A missing default journal or\n"
        "store holds nothing; a file named with --journal or --path must be one.",
        ["memcore status", "memcore status --json", "MEMCORE_HOME=/srv/agent/memcore memcore status --failures 20"],
    )
    status.add_argument("--journal", type=_journal_path, metavar="FILE", help=journal_help)
    status.add_argument(
        "--path", type=_db_path, metavar="DB", help="the SQLite store (default: $MEMCORE_HOME/memory.sqlite3)"
    )
    status.add_argument(
        "--failures",
        type=_positive_int,
        default=FAILURES_SHOWN,
        metavar="N",
        help=f"list the N most recent failures ({FAILURES_SHOWN})",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    retry = _command(
        sub,
        "retry",
        cmd_retry,
        "re-queue operations that failed for good",
        "Marks the journal's failed operations pending again, in their order and ahead of their sessions' later\n"
        "operations, so that the next Memory that starts with their backend delivers them. With --deliver, starts\n"
        "one now (with --backend/--path), which delivers them and whatever else waits in the journal for its\n"
        "backends, and reports what it delivered.",
        ["memcore retry", "memcore retry --only-backend openviking --deliver --backend openviking"],
        store,
    )
    retry.add_argument("--journal", type=_journal_path, metavar="FILE", help=journal_help)
    retry.add_argument(
        "--only-backend",
        dest="backend_key",
        metavar="KEY",
        help="only this backend: its key as 'memcore pending' lists it, or its name (sqlite)",
    )
    retry.add_argument("--session", metavar="ID", help="only this session")
    retry.add_argument("--deliver", action="store_true", help="deliver them now instead of at the next start")
    retry.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS", help="for --deliver (30)")

    forget = _command(
        sub,
        "forget",
        cmd_forget,
        "erase a user's session, or everything of a user, from the SQLite store",
        "Erases one user's session (--session) or every session of the user from the SQLite store (--path, or\n"
        "the default store): its turns, notes and what recall finds of them, and drops what of it waits in the\n"
        "journal. It first says what it will erase (read-only) and asks on the terminal; --yes erases without\n"
        "asking (needed when stdin is not a terminal). Other users and sessions are not touched.",
        [
            "memcore forget --user alice --session chat-42",
            "memcore forget --user alice --yes --path team.sqlite3",
            "memcore forget --default-user --session scratch",
        ],
    )
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="ID", help="the user whose memory to erase")
    who.add_argument("--default-user", action="store_true", help="the default user (sessions made without a user id)")
    forget.add_argument("--session", metavar="ID", help="only this session of the user (default: all of them)")
    forget.add_argument("--yes", "-y", action="store_true", help="erase without asking")
    forget.add_argument(
        "--path", type=_db_path, metavar="DB", help="the SQLite store (default: $MEMCORE_HOME/memory.sqlite3)"
    )
    forget.add_argument("--journal", type=_journal_path, metavar="FILE", help=journal_help)
    forget.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS", help="wait at most this long (30)")
    return parser


class _CappedWarnings(logging.Handler):
    """Prints the first few warnings memcore logs, one line each, then says that more were left out."""

    def __init__(self, cap: int):
        super().__init__(logging.WARNING)
        self.cap = cap
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += 1
        if self.seen <= self.cap:
            print(" ".join(record.getMessage().split()), file=sys.stderr)
        elif self.seen == self.cap + 1:
            print("memcore: (further warnings are not shown)", file=sys.stderr)


@contextlib.contextmanager
def _capped_warnings(cap: int = WARNINGS_SHOWN) -> Iterator[None]:
    logger = logging.getLogger("memcore")
    handler, propagate = _CappedWarnings(cap), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _error(message: object) -> None:
    print("memcore: error: " + " ".join(str(message).split()), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: argparse has printed what is needed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        with _capped_warnings():
            status: int = args.run(args)
        return status
    except ScriptError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        _error(exc)
        return 2
    except INPUT_ERRORS as exc:
        _error(exc)
        return 2
    except (MemcoreError, OSError, sqlite3.Error) as exc:
        if isinstance(exc, BrokenPipeError):  # the reader went away (| head): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        _error(exc)
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130

"""memcore's files as the command line sees them: telling what a file is without changing it, listing what the
journal holds (``memcore pending``) and re-queueing what failed for good (``memcore retry``).

The command line must never let :class:`memcore._journal.Journal` or :class:`memcore.SQLiteBackend` open a file it
has not recognised first: the Journal moves a file it cannot use aside (right for memcore's own journal at start-up,
wrong for a file the user named), and the SQLite backend writes its schema into any database it opens.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import attrs

from ._journal import SCHEMA_VERSION as JOURNAL_VERSION
from ._journal import TABLES as JOURNAL_TABLES
from ._journal import live_owners
from ._sqlite import SCHEMA_VERSION as STORE_VERSION
from ._sqlite import TABLES as STORE_TABLES

__all__ = [
    "DIRECTORY",
    "EMPTY",
    "JOURNAL",
    "JOURNAL_VERSION",
    "MISSING",
    "OTHER_SQLITE",
    "RETRY_OWNER",
    "STORE",
    "STORE_VERSION",
    "UNREADABLE",
    "FileInfo",
    "PendingGroup",
    "connect_readonly",
    "identify",
    "matches_backend",
    "pending",
    "requeue_failed",
]

#: What a file is (:attr:`FileInfo.kind`).
MISSING = "missing"
DIRECTORY = "directory"
EMPTY = "empty"  # no bytes at all, or an SQLite database with nothing in it: a new store may be made there
STORE = "store"  # a memory store of the SQLite backend
JOURNAL = "journal"  # memcore's journal
OTHER_SQLITE = "sqlite"  # an SQLite database that is neither
UNREADABLE = "unreadable"  # not an SQLite database, damaged, or not readable at all

#: Where ``memcore retry`` puts the operations it re-queues. ``Journal.claim`` hands rows out ``ORDER BY owner,
#: seq``, and a real owner begins with its start time in nanoseconds on 20 digits; this owner (time zero) sorts
#: before all of them, so a session's re-queued operations are delivered before its later ones that are still
#: pending (the journal's ``"0:retry"`` sorts after them: ``:`` comes after the digits).
RETRY_OWNER = "00000000000000000000:retry"

_SQLITE_MAGIC = b"SQLite format 3\x00"


@attrs.frozen
class FileInfo:
    """What :func:`identify` found: the kind, the schema version (``PRAGMA user_version``) of a store or journal,
    and for the other kinds a few words on what the file is instead."""

    kind: str
    version: int = 0
    detail: str = ""


@functools.cache
def _wal_mode(path: Path) -> bool:
    """Whether the database header says WAL (file format versions 2 at offsets 18 and 19)."""
    try:
        with path.open("rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return head.startswith(_SQLITE_MAGIC) and head[18:20] == b"\x02\x02"


def connect_readonly(path: Path, timeout: float = 30.0) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``) that leaves nothing behind. SQLite opens a database in WAL mode, even
    read-only, by creating its ``-wal`` and ``-shm`` files, which a read-only connection never removes; so when no
    ``-wal`` file exists (no connection has the database open), it is opened ``immutable``, which creates nothing."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if _wal_mode(path) and not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)


def identify(path: Path, *, check_integrity: bool = False) -> FileInfo:
    """What ``path`` is, read-only: nothing is created, moved or written. ``check_integrity`` also runs SQLite's
    quick check on a journal (what ``Journal`` requires before it uses one)."""
    wal = Path(f"{path}-wal")
    try:
        if path.is_dir():
            return FileInfo(DIRECTORY)
        if not path.exists():
            return FileInfo(MISSING)
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        return FileInfo(UNREADABLE, detail=f"it cannot be read ({exc.strerror or exc})")
    if not head and not wal.exists():
        return FileInfo(EMPTY)
    if head and head != _SQLITE_MAGIC:
        return FileInfo(UNREADABLE, detail="it is not an SQLite database")
    try:
        db = connect_readonly(path)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            objects = db.execute("SELECT type, name FROM sqlite_master").fetchall()
            tables = frozenset(name for kind, name in objects if kind == "table")
            journal = tables >= JOURNAL_TABLES
            verdict = db.execute("PRAGMA quick_check").fetchone()[0] if journal and check_integrity else "ok"
        finally:
            db.close()
    except sqlite3.Error as exc:
        return FileInfo(UNREADABLE, detail=f"SQLite cannot read it ({exc})")
    store = tables >= STORE_TABLES
    if not objects and not version:
        return FileInfo(EMPTY)
    if journal and store:
        return FileInfo(OTHER_SQLITE, version, "it holds the tables of both a memcore store and a journal")
    if journal:
        if verdict != "ok":
            return FileInfo(UNREADABLE, version, f"it fails SQLite's integrity check ({verdict})")
        return FileInfo(JOURNAL, version)
    if store:
        return FileInfo(STORE, version)
    names = sorted(tables)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return FileInfo(OTHER_SQLITE, version, f"its tables: {shown}" if names else "it holds no tables")


def matches_backend(key: str, wanted: str) -> bool:
    """Whether the journal's backend ``key`` (``sqlite:/path/to/store.sqlite3``, ``openviking``...) is ``wanted``:
    the whole key, or the backend name before its first ``:``."""
    return key == wanted or key.split(":", 1)[0] == wanted


# -- reading and re-queueing ----------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PendingGroup:
    """What the journal holds for one (backend, session, status, owner): ``pending`` (not yet acknowledged: queued in
    a running Memory, or left by one that is gone and replayed at the next start), ``spilled`` (pending, kept on disk
    only), ``failed`` (for good), or :data:`OWES_COMMIT` (its writes were delivered and no commit covers them yet: a
    running Memory commits it at a boundary or at close, and the next start commits a gone owner's once)."""

    backend: str
    session_id: str
    status: str
    operations: int
    kinds: str
    oldest: float
    last_error: str | None
    owner_running: bool

    @property
    def waiting(self) -> bool:
        """Pending with no running Memory holding it: the next Memory with its backend delivers it."""
        return self.status != "failed" and not self.owner_running


#: The status of a session that owes a commit, in :func:`pending`.
OWES_COMMIT = "owes commit"


def pending(path: Path) -> list[PendingGroup]:
    """Group what the journal at ``path`` (recognised by :func:`identify`) holds, read-only."""
    db = connect_readonly(path)
    try:
        live = live_owners(db)
        rows = db.execute(
            "SELECT backend, session_id, status, owner, count(*), group_concat(DISTINCT kind), min(created), "
            "(SELECT last_error FROM ops i WHERE i.backend = o.backend AND i.session_id = o.session_id "
            " AND i.status = o.status AND i.owner = o.owner AND i.last_error IS NOT NULL "
            " ORDER BY i.created DESC LIMIT 1) "
            "FROM ops o GROUP BY backend, session_id, status, owner ORDER BY backend, session_id, status, owner"
        ).fetchall()
        if "debts" in {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
            rows += db.execute(
                "SELECT backend, session_id, ?, owner, 1, 'commit', created, NULL FROM debts "
                "ORDER BY backend, session_id, owner",
                (OWES_COMMIT,),
            ).fetchall()
            rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    finally:
        db.close()
    return [
        PendingGroup(
            backend=backend,
            session_id=sid,
            status=status,
            operations=count,
            kinds=kinds,
            oldest=oldest,
            last_error=error,
            owner_running=owner in live,
        )
        for backend, sid, status, owner, count, kinds, oldest, error in rows
    ]


def requeue_failed(path: Path, *, backend: str | None = None, session_id: str | None = None) -> int:
    """Mark the failed operations of the journal at ``path`` (recognised by :func:`identify`) pending again, only
    ``backend``'s (see :func:`matches_backend`) or ``session_id``'s when given. They move to :data:`RETRY_OWNER`
    in their order, after what an earlier retry left there, so that the next Memory that starts with their backend
    delivers them first for their session, then the session's later operations. Returns how many."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            where, args = "status = 'failed'", []
            if backend is not None:
                where += " AND (backend = ? OR substr(backend, 1, length(?) + 1) = ? || ':')"
                args += [backend, backend, backend]
            if session_id is not None:
                where += " AND session_id = ?"
                args.append(session_id)
            rows = db.execute(f"SELECT owner, seq FROM ops WHERE {where} ORDER BY owner, seq", args).fetchall()
            top = db.execute("SELECT coalesce(max(seq), 0) FROM ops WHERE owner = ?", (RETRY_OWNER,)).fetchone()[0]
            db.executemany(
                "UPDATE ops SET owner = ?, seq = ?, status = 'pending' WHERE owner = ? AND seq = ?",
                [(RETRY_OWNER, top + n, owner, seq) for n, (owner, seq) in enumerate(rows, start=1)],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()
    return len(rows)

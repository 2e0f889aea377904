"""The journal's WAL checkpoints, kept off the writer's path (G3: the group-commit loss window).

SQLite checkpoints a WAL database on the connection whose COMMIT crossed ``wal_autocheckpoint`` pages, inside that
COMMIT: with ``synchronous=NORMAL`` the checkpoint is the only place a commit waits for the disk (two fsyncs), so the
journal writer stalled for it while accepted operations waited in memory, and a SIGKILL then lost them. The writer
turns automatic checkpoints off (``PRAGMA wal_autocheckpoint = 0``) and tells this thread how many rows each batch
wrote instead; once :data:`EVERY` rows were written since the last checkpoint (SQLite's own default is 1,000 pages),
it runs a PASSIVE checkpoint on a connection of its own, which never blocks the writer (the writer appends to the WAL
while the checkpoint copies earlier frames). A steady writer may keep PASSIVE from ever catching up, and the WAL then
grows: past :data:`WAL_BOUND` bytes one TRUNCATE checkpoint waits for the writer (briefly blocking it) and shrinks the
file. ``journal_size_limit`` makes SQLite truncate the WAL each time it starts over, so its size tells how much was
written since the last complete checkpoint.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("memcore.journal")

EVERY = 500  #: rows written (inserted, acknowledged, failed, settled) between two checkpoints
PAUSE = 0.25  #: at least this many seconds between two checkpoints: what is written meanwhile waits for the next
WAL_BOUND = 64 * 1024 * 1024  #: bytes of WAL past which a checkpoint waits for the writer (TRUNCATE)
SIZE_LIMIT = 4 * 1024 * 1024  #: ``journal_size_limit``: the WAL is cut back to this when SQLite starts it over
#: Each journal connection's page caches (its file's, and its temporary tables', where the claim sorts), in KiB
#: (``PRAGMA cache_size``; SQLite's default is 2,000 KiB). The journal is read and written near its ends (the newest
#: rows, the next spilled ones), so a small cache costs little, and memory stays the same whatever the journal's size:
#: 100,000 leftover rows once filled three default caches (about +4 MiB of RSS over a 10,000-row replay).
CACHE_KIB = 256


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the journal at ``path``, autocommit, usable from any thread, with a bounded page cache."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    try:
        bound_cache(db)
    except BaseException:
        db.close()
        raise
    return db


def bound_cache(db: sqlite3.Connection) -> None:
    """Cap ``db``'s page caches at :data:`CACHE_KIB` (raises if the file is not a database)."""
    for schema in ("main", "temp"):  # temp: the claim's renumbering table
        db.execute(f"PRAGMA {schema}.cache_size = -{CACHE_KIB}")


def writer_pragmas(db: sqlite3.Connection) -> None:
    """On the writer's connection: no checkpoint inside its COMMITs; the WAL cut back when it starts over."""
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute(f"PRAGMA journal_size_limit = {SIZE_LIMIT}")


class Checkpointer:
    """A daemon thread checkpointing the journal at ``path`` every :data:`EVERY` rows, at most every :data:`PAUSE`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wal = Path(f"{path}-wal")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._written = 0  # rows the writer wrote (only the writer's thread adds to it)
        self._covered = 0  # of which a checkpoint started after (only this thread sets it)
        self.runs = 0  #: checkpoints run (PASSIVE and TRUNCATE)
        self.truncates = 0  #: of which TRUNCATE, after the WAL passed WAL_BOUND
        self._thread = threading.Thread(target=self._run, name="memcore-journal-checkpoint", daemon=True)
        self._thread.start()

    def wrote(self, rows: int) -> None:
        """The writer committed a batch of ``rows`` rows (on the writer's thread; cheap)."""
        self._written += rows
        if self._written - self._covered >= EVERY:
            self._wake.set()

    def wal_size(self) -> int:
        try:
            return os.stat(self._wal).st_size
        except OSError:
            return 0

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                if self._stop.is_set():
                    return
                self._wake.clear()
                self._covered = self._written
                if db is None:
                    db = connect(self.path)
                mode = "TRUNCATE" if self.wal_size() > WAL_BOUND else "PASSIVE"
                try:
                    db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
                except sqlite3.Error as exc:  # the writer reports what matters; a checkpoint is tried again later
                    log.warning("memcore: a checkpoint of the journal %s failed: %s", self.path, exc)
                self.runs += 1
                self.truncates += mode == "TRUNCATE"
                if self._stop.wait(PAUSE):
                    return
        finally:
            if db is not None:
                db.close()

    def close(self, timeout: float) -> bool:
        """Stop the thread (a checkpoint under way finishes first). False if it did not stop within ``timeout``."""
        self._stop.set()
        self._wake.set()
        self._thread.join(max(timeout, 0.0))
        return not self._thread.is_alive()

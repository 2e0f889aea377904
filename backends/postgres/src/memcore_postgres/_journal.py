"""A journal every host of a fleet shares: memcore's outbox of accepted operations in PostgreSQL (issue 18, item 3).

``memcore.Memory(journal="postgresql://...")`` (or ``journal=PostgresJournal(dsn)``). The Memory keeps its buffer and
group commit as with the SQLite file: callers never wait on the database; one writer thread puts each batch in one
transaction. What differs is who counts as gone. A host cannot see another host's processes, so each owner holds a
*lease* (``expires``, on the database server's clock, so the hosts' clocks do not matter): every batch renews it, and
an idle writer renews it every third of ``lease`` seconds. An owner whose lease expired, or that closed, is gone, and
a running Memory (checking at each renewal) or the next one to start takes its operations over: renumbered in the
order they were accepted in, commit debts included, each session committed once (the claim runs under an advisory
lock, so two hosts never take the same rows). A host that comes back after its lease expired finds its owner row
gone: it registers again, so what it accepts from then on is its own, and logs that what it held before may be
delivered twice (the idempotency keys travel with the rows, so a backend that takes keys keeps one copy).

No thread and no lock of its own: the writer thread uses one connection, a claim with ``fresh`` and the reloading
worker each open their own (the contract of :class:`memcore.journal.JournalStore`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import memcore
import psycopg
from memcore.journal import Batch, Claim, Spilled, decode
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["DEFAULT_LEASE", "JOURNAL_SCHEMA_VERSION", "PostgresJournal"]

log = logging.getLogger("memcore_postgres")

JOURNAL_SCHEMA_VERSION = 1
#: Seconds an owner's lease lasts; renewed with every batch and, when idle, every third of it.
DEFAULT_LEASE = 10.0
#: The advisory lock (one bigint) every claim of a journal schema takes: its key is derived from the schema's name.
_LOCK_CLASS = 0x6D656D63  # "memc"
#: The columns a batch writes, and the temporary table it is copied into first.
_COLUMNS = "owner, seq, backend, session_id, parent_id, kind, payload, created, status, user_id"
_INCOMING = "memcore_incoming"

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.owners (
    owner text COLLATE "C" PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started timestamptz NOT NULL DEFAULT now(),
    expires timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.ops (
    owner text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    backend text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    parent_id text COLLATE "C",
    kind text NOT NULL,
    payload text,
    status text NOT NULL DEFAULT 'pending',
    last_error text,
    created double precision NOT NULL,
    user_id text COLLATE "C",
    op_key text COLLATE "C",
    PRIMARY KEY (owner, seq)
);
CREATE INDEX IF NOT EXISTS ops_by_backend ON {schema}.ops (backend, status);
CREATE INDEX IF NOT EXISTS ops_by_session ON {schema}.ops (backend, session_id);
CREATE TABLE IF NOT EXISTS {schema}.debts (
    owner text COLLATE "C" NOT NULL,
    backend text COLLATE "C" NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    parent_id text COLLATE "C",
    created double precision NOT NULL,
    PRIMARY KEY (owner, backend, user_id, session_id)
);
"""

#: Rows whose owner holds no live lease (it expired, or the owner closed), of the backends in %(backends)s.
_ORPHAN = (
    "backend = ANY(%(backends)s) AND owner <> %(owner)s "
    "AND NOT EXISTS (SELECT 1 FROM {schema}.owners w WHERE w.owner = {table}.owner AND w.expires > now())"
)


class PostgresJournal:
    """memcore's journal in a PostgreSQL schema (default ``memcore_journal``) that several hosts share.

    ``dsn``: a libpq connection string or URL; ``lease``: seconds an owner is taken for alive without renewing (a
    host is taken over that long after it died or was cut off); ``connect_timeout`` and ``statement_timeout``
    bound every call (a batch that fails is kept by the Memory and written with the next one)."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "memcore_journal",
        lease: float = DEFAULT_LEASE,
        connect_timeout: float = 10.0,
        statement_timeout: float = 30.0,
    ) -> None:
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"invalid dsn: {exc}") from None
        if not isinstance(schema, str) or not schema.strip() or "\x00" in schema or len(schema.encode()) > 63:
            raise ValueError(f"schema must be a non-empty name of at most 63 bytes, not {schema!r}")
        if not lease > 0 or not connect_timeout > 0 or not statement_timeout > 0:
            raise ValueError("lease, connect_timeout and statement_timeout must be positive (seconds)")
        self.schema = schema
        self.lease = float(lease)
        self.statement_timeout = float(statement_timeout)
        extra = {"connect_timeout": str(max(2, math.ceil(connect_timeout)))}
        self._conninfo = make_conninfo(dsn, **{k: v for k, v in extra.items() if k not in params})
        shown = {k: v for k, v in params.items() if k != "password"}
        where = f"{shown.get('host', '')}:{shown.get('port', '')}/{shown.get('dbname', '')}"
        self.name = f"postgresql://{where}#{schema}"
        s = sql.Identifier(schema)
        self._q = {
            "ops": s,
            "orphan_ops": sql.SQL(_ORPHAN).format(schema=s, table=sql.SQL("{}.ops").format(s)),
            "orphan_debts": sql.SQL(_ORPHAN).format(schema=s, table=sql.SQL("{}.debts").format(s)),
        }
        self._lock_key = (_LOCK_CLASS << 32) ^ (hash_name(schema) & 0xFFFFFFFF)
        self._db: psycopg.Connection[Any] | None = None
        self._reader: psycopg.Connection[Any] | None = None
        self._checkers = threading.local()  # waits_for: a connection per lane worker, opened on its first check
        self._checking: list[psycopg.Connection[Any]] = []
        self._checking_lock = threading.Lock()
        self._owner: str | None = None
        self._sync = False
        self._ready = False  # the schema exists (register made it)

    def __repr__(self) -> str:
        return f"PostgresJournal({self.name!r}, lease={self.lease:g})"

    # -- connections -------------------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        db = psycopg.connect(self._conninfo, autocommit=True)
        db.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(int(self.statement_timeout * 1000))))
        if not self._sync:  # group commit: ordering, not an fsync per batch (as SQLite's synchronous=NORMAL)
            db.execute("SET synchronous_commit = off")
        return db

    def _writer(self) -> psycopg.Connection[Any]:
        """The writer's connection, opened again after it broke (with the temporary table its batches pass through;
        the schema must exist for it, so :meth:`register` makes the schema first)."""
        if self._db is None or self._db.closed or self._db.broken:
            if self._db is not None:
                with contextlib.suppress(Exception):
                    self._db.close()
            db = self._connect()
            if self._ready:
                self._incoming(db)
            self._db = db
        return self._db

    def _incoming(self, db: psycopg.Connection[Any]) -> None:
        db.execute(
            self._sql(f"CREATE TEMP TABLE IF NOT EXISTS {_INCOMING} (LIKE {{schema}}.ops) ON COMMIT DELETE ROWS")
        )

    def _sql(self, text: str, **extra: sql.Composable) -> sql.Composed:
        return sql.SQL(text).format(schema=self._q["ops"], **extra)

    # -- the store ---------------------------------------------------------------------------------------------

    def register(self, owner: str, *, sync: bool) -> None:
        self._owner, self._sync = owner, sync
        db = self._writer()
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))  # two hosts creating it at once
            db.execute(self._sql(_SCHEMA))
            self._insert_owner(db, owner)
        self._incoming(db)
        self._ready = True

    def _insert_owner(self, db: psycopg.Connection[Any], owner: str) -> None:
        db.execute(
            self._sql(
                "INSERT INTO {schema}.owners (owner, host, pid, expires) "
                "VALUES (%s, %s, %s, now() + make_interval(secs => %s)) "
                "ON CONFLICT (owner) DO UPDATE SET expires = excluded.expires"
            ),
            (owner, socket.gethostname(), os.getpid(), self.lease),
        )

    def _hold(self, db: psycopg.Connection[Any], owner: str) -> None:
        """(In a transaction.) Renew ``owner``'s lease; if it had expired and was taken over, register again (what is
        written from now on is this owner's again) and say so."""
        renewed = db.execute(
            self._sql(
                "UPDATE {schema}.owners SET expires = now() + make_interval(secs => %s) "
                "WHERE owner = %s AND expires > now()"
            ),
            (self.lease, owner),
        ).rowcount
        if renewed:
            return
        self._insert_owner(db, owner)
        log.error(
            "memcore: the lease of %s on the journal %s had expired (the host was cut off or stopped for longer "
            "than %g s); another host may have taken over and delivered what it held: those operations may reach "
            "the service twice (a backend that takes idempotency keys keeps one copy)",
            owner,
            self.name,
            self.lease,
        )

    def write(self, owner: str, batch: Batch) -> None:
        db = self._writer()
        q = self._sql
        with db.transaction():
            self._hold(db, owner)
            if batch.rows:  # COPY into a temporary table (one round trip, little Python per row), then one INSERT
                with db.cursor() as cur, cur.copy(f"COPY {_INCOMING} ({_COLUMNS}) FROM STDIN") as copy:
                    for row in batch.rows:
                        copy.write_row(row)
                db.execute(
                    q(
                        f"INSERT INTO {{schema}}.ops ({_COLUMNS}) SELECT {_COLUMNS} FROM {_INCOMING} "
                        "ON CONFLICT (owner, seq) DO UPDATE SET status = excluded.status, payload = excluded.payload"
                    )
                )
            if batch.acks:
                db.execute(q("DELETE FROM {schema}.ops WHERE owner = %s AND seq = ANY(%s)"), (owner, list(batch.acks)))
            for error, seq in batch.fails:
                db.execute(
                    q("UPDATE {schema}.ops SET status = 'failed', last_error = %s WHERE owner = %s AND seq = %s"),
                    (error, owner, seq),
                )
            for (backend, user, sid), session in batch.debts.items():  # in order: the last word wins
                if session is not None:
                    db.execute(
                        q(
                            "INSERT INTO {schema}.debts (owner, backend, user_id, session_id, parent_id, created) "
                            "VALUES (%s, %s, %s, %s, %s, extract(epoch FROM now())) ON CONFLICT DO NOTHING"
                        ),
                        (owner, backend, user or "", sid, session.parent_id),
                    )
                elif sid:
                    db.execute(
                        q(
                            "DELETE FROM {schema}.debts WHERE owner = %s AND backend = %s AND user_id = %s "
                            "AND session_id = %s"
                        ),
                        (owner, backend, user or "", sid),
                    )
                else:
                    db.execute(
                        q("DELETE FROM {schema}.debts WHERE owner = %s AND backend = %s AND user_id = %s"),
                        (owner, backend, user or ""),
                    )
            for backend, who, scoped in batch.erasures:
                db.execute(
                    q(
                        "DELETE FROM {schema}.ops WHERE backend = %s AND coalesce(user_id, '') = %s "
                        "AND status = 'failed' AND (%s::text IS NULL OR session_id = %s)"
                    ),
                    (backend, who or "", scoped, scoped),
                )

    def renew(self, owner: str, backends: Sequence[str]) -> bool:
        """Renew the lease (the idle writer calls this every third of it); whether owners that are gone left
        operations or commit debts of ``backends`` for this one to take over."""
        db = self._writer()
        args = {"backends": list(backends), "owner": owner}
        with db.transaction():
            self._hold(db, owner)
            if not backends:
                return False
            row = db.execute(
                self._sql(
                    "SELECT EXISTS (SELECT 1 FROM {schema}.ops WHERE {orphan} AND status IN ('pending', 'spilled')) "
                    "OR EXISTS (SELECT 1 FROM {schema}.debts WHERE {debts})",
                    orphan=self._q["orphan_ops"],
                    debts=self._q["orphan_debts"],
                ),
                args,
            ).fetchone()
        return bool(row and row[0])

    def held(self, owner: str, seqs: Sequence[int]) -> set[int]:
        """Which of ``seqs`` (rows this owner wrote) are still its own: after its lease lapsed, another host may have
        claimed the rest. Under the claims' lock, so that a claim running now has either finished or not begun."""
        db = self._writer()
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            found = db.execute(
                self._sql("SELECT seq FROM {schema}.ops WHERE owner = %s AND seq = ANY(%s)"), (owner, list(seqs))
            ).fetchall()
        return {int(row[0]) for row in found}

    def claim(
        self, owner: str, backends: Sequence[str], first_seq: int | Callable[[int], int], *, fresh: bool = False
    ) -> Claim:
        db = self._connect() if fresh else self._writer()
        q = self._sql
        args: dict[str, Any] = {"backends": list(backends), "owner": owner}
        orphan_ops = self._q["orphan_ops"]
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))  # one claim at a time, fleet-wide
                self._hold(db, owner)
                db.execute(
                    q(
                        "CREATE TEMP TABLE claim_order ON COMMIT DROP AS "
                        "SELECT owner AS o, seq AS s, row_number() OVER (ORDER BY owner, seq) - 1 AS n "
                        "FROM {schema}.ops WHERE {orphan} AND status IN ('pending', 'spilled')",
                        orphan=orphan_ops,
                    ),
                    args,
                )
                count = db.execute("SELECT count(*) FROM claim_order").fetchone()[0]  # type: ignore[index]
                committing = {
                    (b, u, s)
                    for b, u, s in db.execute(
                        q(
                            "SELECT DISTINCT o.backend, coalesce(o.user_id, ''), o.session_id FROM {schema}.ops o "
                            "JOIN claim_order c ON o.owner = c.o AND o.seq = c.s WHERE o.kind = 'commit'"
                        )
                    )
                }
                debts: dict[tuple[str, str, str], memcore.Session] = {}
                for key, user, sid, parent in db.execute(
                    q(
                        "SELECT backend, user_id, session_id, parent_id FROM {schema}.debts WHERE {orphan} "
                        "ORDER BY owner, created",
                        orphan=self._q["orphan_debts"],
                    ),
                    args,
                ):
                    if (key, user, sid) not in committing:
                        debts.setdefault(
                            (key, user, sid), memcore.Session(id=sid, parent_id=parent, user_id=user or None)
                        )
                base = first_seq(count + len(debts)) if callable(first_seq) else first_seq
                if count:
                    db.execute(
                        q(
                            "UPDATE {schema}.ops SET owner = %(owner)s, status = 'spilled', "
                            "op_key = coalesce(op_key, ops.owner || ':' || ops.seq), seq = %(base)s + c.n "
                            "FROM claim_order c WHERE ops.owner = c.o AND ops.seq = c.s"
                        ),
                        {**args, "base": base},
                    )
                with db.cursor() as cur:
                    cur.executemany(
                        q(
                            "INSERT INTO {schema}.ops (owner, seq, backend, session_id, parent_id, kind, payload, "
                            "created, status, user_id) VALUES (%s, %s, %s, %s, %s, 'commit', NULL, "
                            "extract(epoch FROM now()), 'spilled', %s)"
                        ),
                        [
                            (owner, base + count + n, key, s.id, s.parent_id, s.user_id)
                            for n, ((key, _, _), s) in enumerate(debts.items())
                        ],
                    )
                db.execute(q("DELETE FROM {schema}.debts WHERE {orphan}", orphan=self._q["orphan_debts"]), args)
                db.execute(  # owners long gone and left with nothing: their rows are taken or settled
                    q(
                        "DELETE FROM {schema}.owners w WHERE w.expires <= now() AND NOT EXISTS "
                        "(SELECT 1 FROM {schema}.ops o WHERE o.owner = w.owner)"
                    )
                )
                backlog = {
                    key: (n, high)
                    for key, n, high in db.execute(
                        q(
                            "SELECT backend, count(*), max(seq) FROM {schema}.ops WHERE owner = %s AND seq >= %s "
                            "AND seq < %s GROUP BY backend"
                        ),
                        (owner, base, base + count + len(debts)),
                    )
                }
        finally:
            if fresh:
                db.close()
        return Claim(backlog=backlog, owed=tuple((key, s) for (key, _, _), s in debts.items()))

    def read_spilled(self, owner: str, backend: str, after: int, limit: int) -> list[Spilled]:
        if self._reader is None or self._reader.closed or self._reader.broken:
            self._reader = self._connect()
        rows = self._reader.execute(
            self._sql(
                "SELECT seq, session_id, parent_id, kind, payload, user_id, op_key, created FROM {schema}.ops "
                "WHERE owner = %s AND status = 'spilled' AND backend = %s AND seq > %s ORDER BY seq LIMIT %s"
            ),
            (owner, backend, after, limit),
        ).fetchall()
        return [
            Spilled(seq, memcore.Session(id=sid, parent_id=p, user_id=u), k, decode(k, data), key, created)
            for seq, sid, p, k, data, u, key, created in rows
        ]

    def waits_for(self, owner: str, backend: str, session: memcore.Session, loaded: int) -> float | None:
        """One writer per session across hosts: the acceptance time of the earliest row of ``session`` still
        undelivered that ``owner`` must let go first (another owner's: the conversation moved here from that host; or
        its own spilled one above ``loaded``: taken over, not in memory yet); None if none. One indexed query, on the
        calling worker's own connection."""
        db: psycopg.Connection[Any] | None = getattr(self._checkers, "db", None)
        if db is None or db.closed or db.broken:
            db = self._checkers.db = self._connect()
            with self._checking_lock:
                self._checking.append(db)
        row = db.execute(
            self._sql(
                "SELECT min(created) FROM {schema}.ops WHERE backend = %(b)s AND session_id = %(s)s "
                "AND user_id IS NOT DISTINCT FROM %(u)s AND status IN ('pending', 'spilled') "
                "AND (owner <> %(o)s OR (status = 'spilled' AND seq > %(l)s))"
            ),
            {"b": backend, "s": session.id, "u": session.user_id, "o": owner, "l": loaded},
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def close(self, owner: str, timeout: float) -> bool:
        try:
            self._writer().execute(self._sql("DELETE FROM {schema}.owners WHERE owner = %s"), (owner,))
        finally:
            with self._checking_lock:
                checking, self._checking = self._checking, []
            for db in (self._db, self._reader, *checking):
                if db is not None:
                    with contextlib.suppress(Exception):
                        db.close()
            self._db = self._reader = None
        return True


def hash_name(name: str) -> int:
    """A stable 32-bit hash of a name (Python's ``hash`` of a str changes per process)."""
    value = 2166136261
    for byte in name.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value

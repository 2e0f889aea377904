"""The journal's storage contract: where the buffered, group-committed outbox of accepted operations is kept (G10).

:class:`~memcore._journal.Journal` owns everything that runs on the caller's thread and the timing: the in-memory
buffer, the one writer thread that puts each batch on disk in one transaction, retries of a failed batch,
``wait_durable``. A :class:`JournalStore` is only the place: a SQLite file on this host
(:class:`~memcore._journal_sqlite.SQLiteJournal`, the default), or a database every host of a fleet shares. Neither is
special: the Memory talks to both through these six methods.

Who calls what, so that a store needs no lock of its own: :meth:`~JournalStore.register` once, before anything else;
:meth:`~JournalStore.write` only on the writer thread, one batch at a time; :meth:`~JournalStore.claim` while nothing
is being written (at start) or with ``fresh=True`` (on a connection of its own, while the writer runs);
:meth:`~JournalStore.read_spilled` from one worker at a time (possibly beside ``write``: it must use a connection of its
own); :meth:`~JournalStore.close` once, after the writer stopped.

A store that several hosts share cannot see whether another host's process runs, so it keeps owners by *lease*. It
then has two more members, which the Journal looks for: ``lease`` (seconds an owner counts as alive without renewing)
and ``renew(owner, backends) -> bool`` (renew the lease; whether gone owners left operations of ``backends`` to take
over). The idle writer calls ``renew`` every third of ``lease`` (``write`` renews too), and when it answers True the
Memory claims (``fresh=True``) on a worker. ``memcore_postgres.PostgresJournal`` is such a store.

A leased store fences an owner whose lease lapsed (a host stopped or cut off past it while another took its operations
over): past most of the lease since its last renewal the owner delivers nothing; once renewed, it asks the store's
optional ``held(owner, seqs) -> set[int]`` (on the writer thread) which of its written rows are still its own, and
drops the rest from memory, which the other owner delivers. ``held`` must not answer while a claim is half done.

A shared store may also keep each session to one writer across owners, in the order its operations were accepted:
``waits_for(owner, backend, session, loaded) -> float | None`` (called on a lane worker; it must be safe to call from
several threads) answers the acceptance time (``created``) of the earliest undelivered row of that session that this
owner must let go first: another owner's pending or spilled row, or this owner's spilled row above ``loaded`` (taken
over, not loaded back yet); None if there is none. An operation accepted after that time waits and asks again; the
answer also clears, without asking again, this owner's operations of the session accepted before it and before the
question. Rows it reads back carry ``created`` (:attr:`Spilled.created`), so that taken-over operations are put in their
lanes in the order they were accepted, before later ones this owner accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import attrs

from ._records import Message, Note, Session, message_fields, message_from

#: A buffered operation as written: owner, seq, backend key, session id, parent id, kind, payload (encoded JSON text,
#: or None), created (epoch seconds), status ("pending" or "spilled"), user id (None: the default user).
Row = tuple[Any, ...]
#: A commit debt's key: backend key, user id (None: the default user), session id ("" with a user: all its sessions).
DebtKey = tuple[str, str | None, str]


def encode(kind: str, payload: Any) -> str | None:
    """JSON for a turn (its messages) or a note. Written out by hand: ``attrs.asdict`` is half the writer's time."""
    if payload is None:
        return None
    if kind == "rewind":  # how many turns
        return str(int(payload))
    if isinstance(payload, Note):
        data: Any = {"text": payload.text, "kind": payload.kind, "metadata": dict(payload.metadata)}
    else:
        data = [{"role": m.role, "content": m.content, **message_fields(m)} for m in payload]
    return json.dumps(data, ensure_ascii=False, default=str)


def decode(kind: str, text: str | None) -> Any:
    return None if text is None else decoded(kind, json.loads(text))


def decoded(kind: str, data: Any) -> Any:
    """The payload from its parsed JSON (:func:`decode` without the parse: a store may parse many rows at once)."""
    if data is None:
        return None
    if kind == "rewind":
        return int(data)
    if kind == "remember":
        return Note(**data)
    return tuple(  # a list, not a generator: a replay decodes 100,000 of these
        [
            Message(role=m["role"], content=m["content"]) if len(m) == 2 else message_from(m["role"], m["content"], m)
            for m in data
        ]
    )


class Spilled(NamedTuple):
    """One spilled operation as :meth:`JournalStore.read_spilled` loads it back (a tuple, not a record like
    :class:`Entry`: a replay builds 100,000 of them, and a record costs five times as much)."""

    seq: int
    session: Session
    kind: str
    payload: Any  #: decoded (:func:`decode`)
    key: str | None = None  #: the idempotency key it was accepted with, if another owner accepted it
    created: float = 0.0  #: when it was accepted (``time.time()`` on the host that accepted it; 0: not known)


@attrs.frozen(kw_only=True)
class Entry:
    """One journaled operation, as replayed or listed."""

    seq: int
    backend: str
    session: Session
    kind: str
    payload: Any
    status: str = "pending"
    last_error: str | None = None
    key: str | None = None  #: the idempotency key it was accepted with, if another owner accepted it
    created: float = 0.0  #: when it was accepted (``time.time()`` on the host that accepted it; 0: not known)


@attrs.frozen(kw_only=True)
class Claim:
    """What :meth:`JournalStore.claim` took over, left in the store as this owner's *spilled* rows (loaded back as
    lanes drain): ``backlog`` maps a backend key to (how many operations, the sequence number of its last one);
    ``owed`` lists the sessions that owed a commit and had none queued, for which a commit was added after their
    operations."""

    backlog: Mapping[str, tuple[int, int]] = attrs.field(factory=dict)
    owed: tuple[tuple[str, Session], ...] = ()

    @property
    def total(self) -> int:
        return sum(n for n, _ in self.backlog.values())


@attrs.frozen(kw_only=True)
class Batch:
    """What one writer transaction applies, in this order, all or nothing.

    ``rows``: operations to insert (or replace: a spilled row may be written again); ``acks``: sequence numbers of
    this owner's operations that are done (delete them); ``fails``: (error, seq) of operations that failed for good
    (keep them, marked ``failed`` with the error); ``debts``: the newest word on each session's commit debt, in the
    order the words were said (a :class:`Session`: it owes a commit, recorded once with its first date; None: it owes
    nothing; a key with session id "" and None: none of that user's sessions owes anything); ``erasures``: (backend,
    user, session id or None) whose *failed* rows, of any owner, are erased (a forget of that scope finished)."""

    rows: Sequence[Row] = ()
    acks: Sequence[int] = ()
    fails: Sequence[tuple[str, int]] = ()
    debts: Mapping[DebtKey, Session | None] = attrs.field(factory=dict)
    erasures: Sequence[tuple[str, str | None, str | None]] = ()

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.acks) + len(self.fails) + len(self.debts) + len(self.erasures)


@runtime_checkable
class JournalStore(Protocol):
    """Where a Memory's journal keeps its operations. See the module docstring for which thread calls what."""

    #: How the store is named in logs, errors and ``Report.journal_error`` (a path, or a URL without its password).
    #: Two stores with one name are one journal: a Memory that closes with calls in flight hands its rows over to the
    #: running Memories of this process with the same name.
    name: str

    def register(self, owner: str, *, sync: bool) -> None:
        """Open the store and register ``owner`` (a string that sorts by start time) as running. ``sync``: every
        write must be durable when it returns (``durability="sync"``), not only ordered."""

    def write(self, owner: str, batch: Batch) -> None:
        """Apply ``batch`` for ``owner`` in one transaction, or raise and apply none of it (the Journal keeps the
        batch and tries again with the next one)."""

    def claim(
        self, owner: str, backends: Sequence[str], first_seq: int | Callable[[int], int], *, fresh: bool = False
    ) -> Claim:
        """Take over for ``owner``, in one transaction, the pending and spilled rows of the named backends whose owner
        is no longer running (it died, or closed), with their commit debts. They become ``owner``'s spilled rows,
        renumbered from ``first_seq`` (or from what ``first_seq(n)`` reserves for ``n`` sequence numbers: the rows'
        count, or more if the store keeps the gaps between them) in the order they were accepted in (owner, then
        seq), each keeping the idempotency key it was accepted with (its old
        ``owner:seq`` if it had none). A session that owed a commit and has no commit among them gets one, after
        them. ``fresh``: on a connection of its own (the writer runs beside it)."""
        ...

    def read_spilled(self, owner: str, backend: str, after: int, limit: int) -> Sequence[Spilled]:
        """``owner``'s next ``limit`` spilled operations of ``backend`` with a sequence number above ``after``, in
        order, payloads decoded."""
        ...

    def close(self, owner: str, timeout: float) -> bool:
        """Unregister ``owner`` (what it left is anyone's now) and release what the store holds. False if that could
        not be finished within ``timeout``."""
        ...

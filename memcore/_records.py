"""Frozen, keyword-only records that cross memcore's public boundary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["Event", "Failure", "Message", "Note", "Recollection", "Report", "Session"]


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value) if value else {}


@attrs.frozen(kw_only=True)
class Session:
    """A conversation's session as a backend sees it.

    ``parent_id`` names the session it was branched, compressed or started from, if any. ``user_id`` names whose it
    is (``None``: the default user). Two users may have sessions of the same id: they are different sessions.
    """

    id: str
    parent_id: str | None = None
    user_id: str | None = None


@attrs.frozen(kw_only=True)
class Message:
    """One message of a turn, OpenAI-style (``role`` is ``user``, ``assistant``, ``tool``, ``system``)."""

    role: str
    content: str
    name: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    tool_call_id: str | None = None


def message_fields(message: Message) -> dict[str, Any]:
    """The optional fields of ``message`` that are set, as plain JSON-ready values (for stores and the journal)."""
    fields: dict[str, Any] = {}
    if message.name is not None:
        fields["name"] = message.name
    if message.tool_calls:
        fields["tool_calls"] = [dict(c) for c in message.tool_calls]
    if message.tool_call_id is not None:
        fields["tool_call_id"] = message.tool_call_id
    return fields


def message_from(role: str, content: str, fields: Mapping[str, Any]) -> Message:
    """The inverse of :func:`message_fields`: a record from stored values."""
    return Message(
        role=role,
        content=content,
        name=fields.get("name"),
        tool_calls=tuple(fields.get("tool_calls") or ()),
        tool_call_id=fields.get("tool_call_id"),
    )


@attrs.frozen(kw_only=True)
class Note:
    """Something the agent chose to remember outright (a preference, a fact...)."""

    text: str
    kind: str = "note"
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)


@attrs.frozen(kw_only=True)
class Recollection:
    """One recalled memory. ``source`` names the backend it came from."""

    text: str
    score: float | None = None
    source: str | None = None
    session_id: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)


@attrs.frozen(kw_only=True)
class Failure:
    """An operation that failed for good (after any retries)."""

    backend: str
    operation: str
    session_id: str | None
    error: str
    user_id: str | None = None


@attrs.frozen(kw_only=True)
class Event:
    """What observer plugins hear through ``memcore_event``.

    ``kind`` is one of ``delivered``, ``committed``, ``failed`` (for good), ``retried`` (a transient failure; it will
    be tried again after a backoff), ``replayed`` (taken over from the journal at start, as it is loaded into its
    lane), ``owes_commit`` (at start: the session's writes were delivered by a Memory that is gone and never committed;
    a commit is queued after its replayed operations), ``dropped`` (left pending at close with no journal to keep it).
    """

    kind: str
    backend: str
    operation: str
    session_id: str | None = None
    error: str | None = None
    user_id: str | None = None


@attrs.frozen(kw_only=True)
class Gauge:
    """One backend's work right now (:meth:`~memcore.Memory.gauges`): ``accepted`` operations since the Memory
    started (writes, notes, commits, rewinds, forgets; replayed ones are ``Report.replayed``), ``pending`` in memory
    (queued, in backoff or in flight), ``spilled`` waiting in the journal only, ``in_flight`` calls running now,
    ``stalled`` of those past ``stall_after``, ``owing_commit`` sessions with writes no successful commit covers yet,
    ``journaled`` the journal rows this Memory holds for the backend (its pending and spilled operations, with the
    journal on; 0 without one; failed rows kept for ``memcore retry`` are not counted) and ``oldest_pending_s``
    how long the oldest operation in memory has waited since it was accepted (or loaded back from the journal) in
    this process; None when nothing is pending in memory."""

    accepted: int = 0
    pending: int = 0
    spilled: int = 0
    in_flight: int = 0
    stalled: int = 0
    owing_commit: int = 0
    journaled: int = 0
    oldest_pending_s: float | None = None


@attrs.frozen(kw_only=True)
class Report:
    """Counts since the :class:`~memcore.Memory` started, as of the moment it was made.

    ``delivered`` counts writes and notes a backend acknowledged, ``committed`` successful commits, ``failed``
    operations that failed for good, ``pending`` operations accepted but not finished (queued, waiting out a backoff
    or in flight), ``spilled`` how many of those wait in the journal only because ``max_pending`` was reached,
    ``journaled`` how many pending ones the journal keeps for the next start, ``retried`` transient failures that
    were retried, ``replayed`` operations taken over from the journal at start, ``taken_over`` operations another
    host of a shared journal took over from this one while its lease had lapsed (that host delivers them),
    ``owing_commit`` the sessions (one per backend that commits) with writes that no successful commit covers yet.
    ``journal_error`` is None while the journal keeps up; else why it does not: the last write failure while its
    writes fail (accepted operations are still delivered, but are not on disk until a write succeeds again), or
    operations it could never write.
    """

    delivered: int = 0
    committed: int = 0
    failed: int = 0
    pending: int = 0
    journaled: int = 0
    spilled: int = 0
    retried: int = 0
    replayed: int = 0
    taken_over: int = 0
    owing_commit: int = 0
    failures: tuple[Failure, ...] = ()
    skipped_backends: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    elapsed: float = 0.0
    timed_out: bool = False
    journal_error: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing is left pending."""
        return self.failed == 0 and self.pending == 0 and not self.timed_out

"""memcore for PostgreSQL: a store backend (turns, notes and commits per user and session, with full-text recall), and
a journal the hosts of a fleet share (``memcore.Memory(journal="postgresql://...")``)."""

from ._backend import SCHEMA_VERSION, PostgresBackend, is_transient
from ._journal import DEFAULT_LEASE, JOURNAL_SCHEMA_VERSION, PostgresJournal

__all__ = [
    "DEFAULT_LEASE",
    "JOURNAL_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "PostgresBackend",
    "PostgresJournal",
    "is_transient",
]

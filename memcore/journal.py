"""The journal's storage, for whoever keeps it somewhere else than the default SQLite file (G10).

``Memory(journal=...)`` takes a path (a :class:`SQLiteJournal` there), ``True`` (``$MEMCORE_HOME/journal.sqlite3``),
``False`` (none) or any :class:`JournalStore`. The Memory keeps the buffer, the group commit, retries and replay; a
store only keeps rows, in six methods. See ``docs/reliability.md`` ("Where the journal is kept").
"""

from __future__ import annotations

from ._journal_sqlite import SQLiteJournal
from ._journal_store import Batch, Claim, DebtKey, Entry, JournalStore, Row, Spilled, decode, encode

__all__ = [
    "Batch",
    "Claim",
    "DebtKey",
    "Entry",
    "JournalStore",
    "Row",
    "SQLiteJournal",
    "Spilled",
    "decode",
    "encode",
]

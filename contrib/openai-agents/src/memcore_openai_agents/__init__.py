"""memcore-openai-agents: long-term memory from any memcore backend for the OpenAI Agents SDK.

``MemorySession(SQLiteSession(...), memcore.Memory(), user_id=...)`` keeps the history in the inner session and writes
each finished turn to memory; ``memory_instructions`` and the ``recall_memory`` / ``remember_memory`` tools give the
agent what memory holds.
"""

from __future__ import annotations

from ._items import finished, message
from ._session import MemorySession
from ._tools import (
    HEADER,
    format_recollections,
    memory_instructions,
    memory_session_of,
    recall_memory,
    remember_memory,
)

__version__ = "0.1.0"

__all__ = [
    "HEADER",
    "MemorySession",
    "__version__",
    "finished",
    "format_recollections",
    "memory_instructions",
    "memory_session_of",
    "message",
    "recall_memory",
    "remember_memory",
]

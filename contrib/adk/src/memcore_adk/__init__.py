"""memcore-adk: any memcore backend as a Google ADK memory service.

``Runner(..., memory_service=MemcoreMemoryService(memcore.Memory()))``; ADK's ``load_memory`` and ``preload_memory``
tools then search memcore, and ``add_session_to_memory`` (e.g. from an ``after_agent_callback``) writes to it.
"""

from __future__ import annotations

from ._events import event_key, event_messages
from ._service import (
    EVENTS_SESSION,
    MEMORIES_SESSION,
    MemcoreMemoryService,
    MemoryNotForgotten,
    default_user_id,
    memory_id,
    session_of,
)

__version__ = "0.1.0"

__all__ = [
    "EVENTS_SESSION",
    "MEMORIES_SESSION",
    "MemcoreMemoryService",
    "MemoryNotForgotten",
    "__version__",
    "default_user_id",
    "event_key",
    "event_messages",
    "memory_id",
    "session_of",
]

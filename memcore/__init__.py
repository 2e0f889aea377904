"""memcore: the session lifecycle of long-term agent memory, written once, for any memory service.

See ``DESIGN.md`` for the guarantees. The public names are re-exported here; everything else is private.
"""

from ._errors import (
    BackendLoadError,
    InvalidContent,
    InvalidSessionId,
    InvalidSwitch,
    MemcoreError,
    MemoryClosed,
    PendingLimitExceeded,
    PluginError,
    TransientError,
    UnknownBackend,
    UnknownSwitchReason,
    UsersNotSeparated,
)
from ._forget import Forgetting
from ._hooks import BackendSpec, ObserverSpec, hookimpl, hookspec
from ._lifecycle import SWITCH_REASONS, PrefetchResult, SessionLifecycle
from ._memory import Memory
from ._paths import memcore_home
from ._records import Event, Failure, Message, Note, Recollection, Report, Session
from ._retry import RetryPolicy
from ._sqlite import SQLiteBackend

__version__ = "0.1.0"

__all__ = [
    "SWITCH_REASONS",
    "BackendLoadError",
    "BackendSpec",
    "Event",
    "Failure",
    "Forgetting",
    "InvalidContent",
    "InvalidSessionId",
    "InvalidSwitch",
    "MemcoreError",
    "Memory",
    "MemoryClosed",
    "Message",
    "Note",
    "ObserverSpec",
    "PendingLimitExceeded",
    "PluginError",
    "PrefetchResult",
    "Recollection",
    "Report",
    "RetryPolicy",
    "SQLiteBackend",
    "Session",
    "SessionLifecycle",
    "TransientError",
    "UnknownBackend",
    "UnknownSwitchReason",
    "UsersNotSeparated",
    "__version__",
    "hookimpl",
    "hookspec",
    "memcore_home",
]

"""memcore: the session lifecycle of long-term agent memory, written once, for any memory service.

The public names are re-exported here; everything else is private. The guide is ``README.md``, which is also this
package's long description (``importlib.metadata.metadata("memcore").get_payload()``); the guarantees (G1 to G12), the
backend contract and the rest are in ``docs/`` of the source distribution and the repository: ``docs/design.md``,
``docs/backends.md``, ``docs/http.md``, ``docs/reliability.md``, ``docs/cli.md``, ``docs/conformance.md``.
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
from ._records import Event, Failure, Gauge, Message, Note, Recollection, Report, Session
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
    "Gauge",
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

"""The exceptions memcore raises, one class per kind of problem."""

from __future__ import annotations

__all__ = [
    "BackendLoadError",
    "InvalidContent",
    "InvalidSessionId",
    "InvalidSwitch",
    "MemcoreError",
    "MemoryClosed",
    "PendingLimitExceeded",
    "PluginError",
    "TransientError",
    "UnknownBackend",
    "UnknownSwitchReason",
]


class MemcoreError(Exception):
    """Base class of every error memcore raises on purpose."""


class InvalidSessionId(MemcoreError, ValueError):
    """A session id is empty, blank, too long, not a string or holds control characters."""


class InvalidContent(MemcoreError, TypeError):
    """Content handed to memcore is not text (or text that cannot be stored, such as lone surrogates)."""


class InvalidSwitch(MemcoreError, ValueError):
    """A session switch that cannot be carried out as asked (for example a rewind to another id)."""


class UnknownSwitchReason(InvalidSwitch):
    """``switch(reason=...)`` names a reason memcore does not know."""


class UnknownBackend(MemcoreError, LookupError):
    """A backend name that no installed entry point (nor the built-in ``sqlite``) provides."""


class BackendLoadError(MemcoreError):
    """A backend or plugin failed to import or to construct (raised in strict mode, or when none is left)."""


class PluginError(MemcoreError):
    """A plugin's hook implementations do not match memcore's hook specifications."""


class UsersNotSeparated(MemcoreError, ValueError):
    """A user other than the default one was named, and a backend in use cannot keep users apart (it does not
    declare ``separates_users = True``): memcore refuses rather than mix their memories."""


class MemoryClosed(MemcoreError, RuntimeError):
    """The :class:`~memcore.Memory` was closed: it accepts no new work."""


class PendingLimitExceeded(MemcoreError):
    """Accepting this operation would take pending work past ``Memory(max_pending=...)``.

    Nothing of the refused call was accepted; everything accepted earlier is kept.
    """


class TransientError(MemcoreError):
    """Raised by a backend for a failure that is worth retrying (timeouts, connection errors, 429, 5xx).

    ``retry_after`` (seconds), when the service said how long to wait, is honoured as the least delay before the
    next attempt.
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after

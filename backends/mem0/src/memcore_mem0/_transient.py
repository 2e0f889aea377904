"""Which failures of mem0 and its model client memcore retries."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import memcore
import openai

__all__ = ["is_transient", "mapped"]

_STATUS = (408, 429)


def is_transient(exc: BaseException) -> bool:
    """Timeouts, connection errors, 408/429 and 5xx from the model endpoint (mem0 wraps some of them: the whole
    cause chain is looked at), and a locked SQLite database."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, memcore.TransientError):
            return True
        if isinstance(current, (openai.APITimeoutError, openai.APIConnectionError, httpx.TransportError)):
            return True
        if isinstance(current, openai.APIStatusError):
            return current.status_code in _STATUS or current.status_code >= 500
        if isinstance(current, sqlite3.OperationalError) and "locked" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def mapped() -> Iterator[None]:
    """Raise :class:`memcore.TransientError` (chained) for what :func:`is_transient` accepts; the rest passes."""
    try:
        yield
    except memcore.TransientError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise memcore.TransientError(f"{type(exc).__name__}: {exc}"[:300]) from exc
        raise

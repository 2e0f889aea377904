"""What is worth retrying, and how long to wait before the next attempt (G9)."""

from __future__ import annotations

import random

import attrs

from ._errors import TransientError

__all__ = ["RetryPolicy", "is_transient"]


def is_transient(exc: BaseException) -> bool:
    """Transient: :class:`memcore.TransientError` (what ``memcore.http`` maps timeouts, resets, 429 and 5xx to), and
    Python's own ``TimeoutError`` and ``ConnectionError`` from backends that talk to sockets themselves."""
    return isinstance(exc, (TransientError, TimeoutError, ConnectionError))


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter inside a per-operation deadline.

    Attempt ``n`` (from 1) waits ``initial * multiplier**(n-1)``, at most ``max_delay``, scaled by a random factor in
    ``[1 - jitter, 1]``, and never less than the service's ``retry_after``. No attempt starts later than ``deadline``
    seconds after the first one; then the failure is final. ``deadline=0`` turns retries off.
    """

    initial: float = attrs.field(default=0.2, validator=attrs.validators.ge(0))
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    max_delay: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    deadline: float = attrs.field(default=120.0, validator=attrs.validators.ge(0))
    jitter: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0), attrs.validators.le(1)])

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first failure)."""
        base = min(self.initial * self.multiplier ** (attempt - 1), self.max_delay)
        factor = 1.0 - self.jitter * (rng or random).random()
        wait = base * factor
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

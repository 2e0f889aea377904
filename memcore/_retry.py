"""What is worth retrying, and how long to wait before the next attempt (G9)."""

from __future__ import annotations

import random

import attrs
import httpx

from ._errors import TransientError

__all__ = ["TRANSIENT_4XX", "RetryPolicy", "is_transient"]

#: 4xx statuses worth retrying: 408 Request Timeout (the service timed out waiting; G9 counts timeouts as
#: transient) and 429 Too Many Requests (honouring Retry-After). Every other 4xx is final.
TRANSIENT_4XX = frozenset({408, 429})
_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def is_transient(exc: BaseException) -> bool:
    """Whether memcore retries ``exc`` (the one definition, also ``memcore.http.is_transient``): a
    :class:`memcore.TransientError` (what ``memcore.http`` maps timeouts, resets, 429 and 5xx to), an httpx timeout,
    network or remote protocol error, httpx's own status error for 408, 429 or 5xx, and Python's ``TimeoutError`` and
    ``ConnectionError`` from backends that talk to sockets themselves."""
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return status in TRANSIENT_4XX or status >= 500
    return isinstance(exc, (TransientError, TimeoutError, ConnectionError, *_TRANSPORT_ERRORS))


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

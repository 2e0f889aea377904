"""How an HTTP backend's failures become memcore's (G9), and how ids and secrets stay safe on the wire (G12)."""

from __future__ import annotations

import datetime
import email.utils
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import httpx

from ._errors import MemcoreError, TransientError
from ._retry import _TRANSPORT_ERRORS, TRANSIENT_4XX, is_transient

__all__ = [
    "HTTPStatusError",
    "is_transient",
    "mapped",
    "parse_retry_after",
    "quote_segment",
    "raise_for_status",
    "redact_headers",
    "redact_url",
]

EXCERPT = 200
REDACTED = "***"
_SECRET_WORDS = ("auth", "cookie", "key", "token", "secret", "password", "credential", "signature")
_DELTA_SECONDS = re.compile(r"-?\d+(\.\d+)?")


class HTTPStatusError(MemcoreError):
    """A 4xx answer other than 408 and 429: final for the operation, retrying would not change it.

    Keeps only what is safe to log: the status, the method, the URL path (never the query string or any header) and
    a short excerpt of the body. ``str()`` and ``repr()`` are built from those alone.
    """

    def __init__(self, status_code: int, method: str = "", path: str = "", excerpt: str = "") -> None:
        self.status_code = status_code
        self.method = method
        self.path = path
        self.excerpt = excerpt
        super().__init__(_describe(method, path, status_code, excerpt))

    def __reduce__(self) -> tuple[type[HTTPStatusError], tuple[int, str, str, str]]:
        return type(self), (self.status_code, self.method, self.path, self.excerpt)


def raise_for_status(response: httpx.Response) -> httpx.Response:
    """Return ``response`` if it succeeded (below 400); raise what memcore makes of it otherwise.

    408, 429 and 5xx raise :class:`memcore.TransientError` with ``retry_after`` from the Retry-After header; any
    other 4xx raises :class:`HTTPStatusError`. Use this rather than ``response.raise_for_status()``: httpx's own
    message holds the full URL, query string (and any key in it) included.
    """
    status = response.status_code
    if status < 400:
        return response
    method, path = _request_line(response)
    excerpt = _excerpt(response)
    if status in TRANSIENT_4XX or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise TransientError(_describe(method, path, status, excerpt), retry_after=retry_after)
    raise HTTPStatusError(status, method, path, excerpt)


@contextmanager
def mapped() -> Iterator[None]:
    """Turn httpx's timeouts, connection errors and protocol breaks raised inside the block into
    :class:`memcore.TransientError` (chained, so the cause stays in tracebacks); leave every other exception alone.

    A context manager rather than a ``call(fn, ...)`` helper: it wraps any number of statements (a request, reading a
    streamed body, ``raise_for_status``) without lambdas, and keeps the type checker's view of each call intact.
    """
    try:
        yield
    except _TRANSPORT_ERRORS as exc:
        method, path = _request_line(exc)
        where = f" on {method} {path}" if method else ""
        raise TransientError(f"{type(exc).__name__}{where}: {exc}") from exc


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; negatives (and past dates) become 0,
    anything unparsable ``None``."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # which one depends on the Python version
        return None
    if when.tzinfo is None:  # "-0000": UTC, with no claim about the local zone
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - now())


def quote_segment(value: str) -> str:
    """Quote ``value`` (a session id, say) as exactly one URL path segment.

    Every reserved character is percent-encoded (``/``, ``?``, ``#``, ``%``...), so ``a/b?c#d`` stays one segment of
    the path, and ``.`` or ``..`` as the whole segment become ``%2E`` / ``%2E%2E`` so that clients and servers that
    resolve dot segments do not climb out of the intended path.
    """
    if not value:
        raise ValueError("an empty path segment would merge with its neighbours")
    quoted = urllib.parse.quote(value, safe="")
    if quoted in (".", ".."):
        return quoted.replace(".", "%2E")
    return quoted


def redact_headers(headers: Mapping[str, str] | httpx.Headers) -> dict[str, str]:
    """A copy of ``headers`` fit for logs and reprs: Authorization, Cookie, X-API-Key and any name holding "auth",
    "key", "token", "secret", "password"... has its value replaced by ``***``."""
    return {name: REDACTED if _is_secret(name) else value for name, value in headers.items()}


def redact_url(url: str | httpx.URL) -> str:
    """``url`` fit for logs and reprs: a password in it and the values of secret-named query parameters (``api_key``,
    ``token``...) become ``***``; the rest is kept as it was."""
    parts = urllib.parse.urlsplit(str(url))
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{host}"
    query = "&".join(
        f"{name}={REDACTED}" if eq and _is_secret(urllib.parse.unquote_plus(name)) else f"{name}{eq}{value}"
        for name, eq, value in (item.partition("=") for item in parts.query.split("&"))
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _describe(method: str, path: str, status: int, excerpt: str) -> str:
    where = f"{method} {path} -> " if method else ""
    reason = httpx.codes.get_reason_phrase(status)
    return f"{where}{status}" + (f" {reason}" if reason else "") + (f": {excerpt}" if excerpt else "")


def _request_line(source: httpx.Response | httpx.RequestError) -> tuple[str, str]:
    """Method and encoded path (no query string) of the request behind ``source``; empty if it has none."""
    try:
        request = source.request
    except RuntimeError:  # a response or an error built without its request
        return "", ""
    return request.method, wire_path(request)


def wire_path(request: httpx.Request) -> str:
    """The path of ``request`` as sent (percent-encoded), without the query string."""
    return request.url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")


def _excerpt(response: httpx.Response) -> str:
    """The start of the body, on one line, at most ``EXCERPT`` characters, with the request's own secrets (a key
    in a header or the query string that the service echoes back) blanked out. A streamed body not yet read gives
    none: reading it here could be slow or large."""
    try:
        text = " ".join(response.text.split())
    except httpx.ResponseNotRead:
        return ""
    try:
        request = response.request
    except RuntimeError:
        secrets: list[str] = []
    else:
        secrets = [value for name, value in request.headers.items() if _is_secret(name)]
        secrets += [value for name, value in request.url.params.multi_items() if _is_secret(name)]
        secrets += [part for value in secrets for part in value.split()[1:]]  # "Bearer sk-..." -> "sk-..."
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"

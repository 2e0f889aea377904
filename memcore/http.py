"""What every HTTP backend shares: httpx failures mapped to memcore's (G9), URL-safe ids and redaction (G12), and a
fault-injecting transport for tests and benchmarks. See ``docs/http.md``."""

from __future__ import annotations

from ._faults import Fault, FaultInjector, FaultKind, FaultTransport, LogEntry
from ._http_errors import (
    HTTPStatusError,
    is_transient,
    mapped,
    parse_retry_after,
    quote_segment,
    raise_for_status,
    redact_headers,
    redact_url,
)

__all__ = [
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultTransport",
    "HTTPStatusError",
    "LogEntry",
    "is_transient",
    "mapped",
    "parse_retry_after",
    "quote_segment",
    "raise_for_status",
    "redact_headers",
    "redact_url",
]

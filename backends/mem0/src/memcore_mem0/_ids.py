"""memcore ids as mem0 entity ids.

mem0 trims its ``user_id`` / ``run_id`` / ``agent_id`` values and refuses any with whitespace inside, so
``"  padded  "`` would become ``"padded"`` and ``"with spaces"`` would be refused. An id without whitespace that
does not start with ``%`` is stored as it is; any other becomes ``%`` followed by the id percent-encoded (UTF-8,
nothing kept), which has neither whitespace nor a second reading. :func:`decode_id` reverses it."""

from __future__ import annotations

from urllib.parse import quote, unquote

__all__ = ["decode_id", "encode_id"]


def encode_id(value: str) -> str:
    if value and not value.startswith("%") and not any(c.isspace() for c in value):
        return value
    return "%" + quote(value, safe="")


def decode_id(stored: str) -> str:
    return unquote(stored[1:]) if stored.startswith("%") else stored

"""Checks done once, in the core, before anything is accepted (G12)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import InvalidContent, InvalidSessionId
from ._records import Message

MAX_SESSION_ID = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def session_id(value: object, what: str = "session id") -> str:
    """Return ``value`` unchanged if it is a valid session id, else raise :class:`InvalidSessionId`."""
    if not isinstance(value, str):
        raise InvalidSessionId(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidSessionId(f"{what} is empty or blank: {value!r}")
    if len(value) > MAX_SESSION_ID:
        raise InvalidSessionId(f"{what} is {len(value)} characters long; at most {MAX_SESSION_ID} are allowed")
    if _CONTROL.search(value):
        raise InvalidSessionId(f"{what} holds a control character: {value!r}")
    if _SURROGATE.search(value):
        raise InvalidSessionId(f"{what} holds a lone surrogate and cannot be encoded: {value!r}")
    return value


def text(value: object, what: str) -> str:
    """Return ``value`` if it is storable text, else raise :class:`InvalidContent`."""
    if not isinstance(value, str):
        raise InvalidContent(f"{what} must be a string, not {type(value).__name__}")
    if not value.isascii() and _SURROGATE.search(value):
        raise InvalidContent(f"{what} holds a lone surrogate and cannot be encoded as UTF-8")
    return value


def _content(value: object, what: str) -> str:
    """OpenAI content: a string, None (assistant tool calls) or a list of parts whose text is joined."""
    if value is None:
        return ""
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if isinstance(part, Mapping) and part.get("type", "text") == "text":
                parts.append(text(part.get("text", ""), f"{what} part {i}"))
            elif isinstance(part, str):
                parts.append(text(part, f"{what} part {i}"))
            else:
                raise InvalidContent(f"{what} part {i} is not a text part: {type(part).__name__}")
        return "\n".join(parts)
    return text(value, what)


def messages(value: object) -> tuple[Message, ...]:
    """Turn an OpenAI-style list of message dicts (or :class:`Message` records) into records."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidContent(f"messages must be a list of messages, not {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, Message):
            text(item.content, f"messages[{i}].content")
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise InvalidContent(f"messages[{i}] must be a mapping or a Message, not {type(item).__name__}")
        out.append(_message(item, i))
    return tuple(out)


def _message(item: Mapping[str, Any], i: int) -> Message:
    role = item.get("role")
    if not isinstance(role, str) or not role:
        raise InvalidContent(f"messages[{i}].role must be a non-empty string, not {role!r}")
    name = item.get("name")
    if name is not None:
        text(name, f"messages[{i}].name")
    call_id = item.get("tool_call_id")
    if call_id is not None:
        text(call_id, f"messages[{i}].tool_call_id")
    calls = item.get("tool_calls") or ()
    if not isinstance(calls, (list, tuple)) or not all(isinstance(c, Mapping) for c in calls):
        raise InvalidContent(f"messages[{i}].tool_calls must be a list of mappings")
    return Message(
        role=role,
        content=_content(item.get("content"), f"messages[{i}].content"),
        name=name,
        tool_calls=tuple(dict(c) for c in calls),
        tool_call_id=call_id,
    )

"""Checks done once, in the core, before anything is accepted (G12)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import InvalidContent, InvalidSessionId
from ._records import Message

MAX_SESSION_ID = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: Strict JSON, as the journal and the stores keep it: no ``default`` (a value JSON cannot hold is refused, not turned
#: into its ``str``), no NaN or infinities, cycles detected.
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


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


def user_id(value: object) -> str | None:
    """Return ``value`` if it is None (the default user) or a valid user id (the rules of session ids), else raise
    :class:`InvalidSessionId`."""
    return None if value is None else session_id(value, "user id")


def text(value: object, what: str) -> str:
    """Return ``value`` if it is storable text, else raise :class:`InvalidContent`."""
    if not isinstance(value, str):
        raise InvalidContent(f"{what} must be a string, not {type(value).__name__}")
    if not value.isascii():  # the fast path: ASCII holds no surrogate
        try:
            value.encode("utf-8")  # several times faster than a regex search on non-ASCII text
        except UnicodeEncodeError:
            raise InvalidContent(f"{what} holds a lone surrogate and cannot be encoded as UTF-8") from None
    return value


def json_value(value: object, what: str) -> None:
    """Raise :class:`InvalidContent` unless ``value`` can be stored as JSON and read back: only dicts, lists,
    tuples, strings, numbers (no NaN nor infinity), booleans and None, no cycle, no lone surrogate. Checked on the
    caller's thread so that nothing the journal's writer or a store cannot encode is ever accepted."""
    try:
        encoded = _JSON.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidContent(f"{what} cannot be stored as JSON: {exc}") from None
    if not encoded.isascii():
        try:
            encoded.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidContent(f"{what} holds a lone surrogate and cannot be encoded as UTF-8") from None


def metadata(value: Mapping[str, Any] | None, what: str = "metadata") -> Mapping[str, Any] | None:
    """Return ``value`` if it is a mapping with string keys whose values can be stored as JSON (see
    :func:`json_value`), or None; else raise :class:`InvalidContent`."""
    if not value:
        return value
    if not isinstance(value, Mapping):
        raise InvalidContent(f"{what} must be a mapping, not {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise InvalidContent(f"{what} keys must be strings, not {type(key).__name__}: {key!r}")
    json_value(dict(value), what)
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
            out.append(_record(item, i))
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
    return Message(
        role=text(role, f"messages[{i}].role"),
        content=_content(item.get("content"), f"messages[{i}].content"),
        name=name,
        tool_calls=_tool_calls(item.get("tool_calls"), i),
        tool_call_id=call_id,
    )


def _record(item: Message, i: int) -> Message:
    """A :class:`Message` handed in as a record: its fields are checked as a dict's would be (attrs checks no
    types), and returned unchanged."""
    if not isinstance(item.role, str) or not item.role:
        raise InvalidContent(f"messages[{i}].role must be a non-empty string, not {item.role!r}")
    text(item.role, f"messages[{i}].role")
    text(item.content, f"messages[{i}].content")
    if item.name is not None:
        text(item.name, f"messages[{i}].name")
    if item.tool_call_id is not None:
        text(item.tool_call_id, f"messages[{i}].tool_call_id")
    if item.tool_calls:
        _tool_calls(item.tool_calls, i)
    return item


def _tool_calls(calls: object, i: int) -> tuple[Mapping[str, Any], ...]:
    """A message's tool calls: a list of mappings that can be stored as JSON."""
    if not calls:
        return ()
    if not isinstance(calls, (list, tuple)) or not all(isinstance(c, Mapping) for c in calls):
        raise InvalidContent(f"messages[{i}].tool_calls must be a list of mappings")
    copies = tuple(dict(c) for c in calls)
    json_value(copies, f"messages[{i}].tool_calls")
    return copies

"""The SDK's session items (Responses API input items) as memcore messages, and what kind of item each is."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import memcore

Kind = Literal["user", "system", "assistant", "call", "output", "other"]


def as_mapping(item: Any) -> Mapping[str, Any]:
    """An item as a mapping: the SDK hands sessions plain dicts; a pydantic item is dumped."""
    if isinstance(item, Mapping):
        return item
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        value = dump(exclude_unset=True)
        if isinstance(value, Mapping):
            return value
    return {}


def kind(item: Any) -> Kind:
    """``user``/``system``/``assistant`` for messages, ``call`` for a tool call (anything with a ``call_id`` that is
    not an output), ``output`` for a tool's output, ``other`` for the rest (reasoning, compaction...)."""
    data = as_mapping(item)
    type_ = data.get("type")
    if type_ in (None, "message"):
        role = data.get("role")
        if role == "user":
            return "user"
        if role in ("system", "developer"):
            return "system"
        if role == "assistant":
            return "assistant"
        return "other"
    if not isinstance(type_, str):
        return "other"
    if type_.endswith("_output"):
        return "output"
    if type_.endswith("_call") and "call_id" in data:
        return "call"
    return "other"


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text and refusal parts of a list, joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, Iterable):
        return ""
    parts: list[str] = []
    for part in content:
        data = as_mapping(part)
        for key in ("text", "refusal"):
            value = data.get(key)
            if isinstance(value, str) and value:
                parts.append(value)
    return "\n".join(parts)


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def message(item: Any) -> memcore.Message | None:
    """One item as a memcore message (OpenAI chat style), or None for what memory does not keep (reasoning...)."""
    data = as_mapping(item)
    k = kind(data)
    if k in ("user", "system", "assistant"):
        text = text_of(data.get("content"))
        return memcore.Message(role=k, content=text) if text else None
    if k == "call":
        type_ = str(data.get("type"))
        name = data.get("name") or type_
        arguments = data.get("arguments")
        if arguments is None:
            arguments = data.get("input", {key: v for key, v in data.items() if key not in ("id", "type", "call_id")})
        call = {
            "id": str(data.get("call_id")),
            "type": "function" if type_ == "function_call" else type_,
            "function": {"name": str(name), "arguments": _json(arguments)},
        }
        return memcore.Message(role="assistant", content="", tool_calls=(call,))
    if k == "output":
        output = data.get("output")
        text = output if isinstance(output, str) else text_of(output) or _json(output)
        call_id = data.get("call_id")
        return memcore.Message(role="tool", content=text, tool_call_id=str(call_id) if call_id else None)
    return None


def messages(items: Iterable[Any]) -> list[memcore.Message]:
    return [m for m in (message(i) for i in items) if m is not None]


def turn_texts(turn: Sequence[memcore.Message]) -> tuple[str, str]:
    """The user's text and the last assistant text of a turn (``sync_turn``'s two positional texts)."""
    user = "\n".join(m.content for m in turn if m.role == "user" and m.content)
    assistant = next((m.content for m in reversed(turn) if m.role == "assistant" and m.content), "")
    return user, assistant


def finished(items: Sequence[Any]) -> bool:
    """Whether a run's items make a finished turn: they end in an assistant message and every tool call in them
    has its output (the SDK ends a run on a model answer without tool calls)."""
    if not items or kind(items[-1]) != "assistant":
        return False
    calls: set[Any] = set()
    outputs: set[Any] = set()
    for item in items:
        data = as_mapping(item)
        k = kind(data)
        if k == "call":
            calls.add(data.get("call_id"))
        elif k == "output":
            outputs.add(data.get("call_id"))
    return calls <= outputs

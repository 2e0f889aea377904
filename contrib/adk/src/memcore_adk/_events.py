"""ADK events as memcore turns: which events are written, under which key they are deduplicated, and the
OpenAI-style messages each becomes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import memcore
from google.adk.events.event import Event
from google.genai import types


def event_key(event: Event) -> str:
    """The key an event is written once under: its id, which every ADK session service assigns. An event without
    one (built by hand) falls back to its invocation, author and timestamp, which ADK never changes once appended."""
    if event.id:
        return event.id
    return f"~{event.invocation_id}|{event.author}|{event.timestamp!r}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def event_messages(event: Event) -> list[memcore.Message]:
    """The messages an event holds: its text (thoughts left out), its function calls (an assistant message with
    ``tool_calls``) and its function responses (``tool`` messages). A partial (streamed) event, or one with nothing
    of these (state changes, transfers without text, inline data), holds none."""
    if event.partial or event.content is None or not event.content.parts:
        return []
    from_user = event.author == "user"
    role = "user" if from_user else "assistant"
    name = None if from_user else (event.author or None)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[memcore.Message] = []
    for i, part in enumerate(event.content.parts):
        if part.text and not part.thought:
            texts.append(part.text)
        if part.function_call is not None:
            call = part.function_call
            calls.append(
                {
                    "id": call.id or f"{event_key(event)}/{i}",
                    "type": "function",
                    "function": {"name": call.name or "", "arguments": _json(call.args or {})},
                }
            )
        if part.function_response is not None:
            response = part.function_response
            results.append(
                memcore.Message(
                    role="tool",
                    content=_json(response.response or {}),
                    name=response.name,
                    tool_call_id=response.id or None,
                )
            )
    out: list[memcore.Message] = []
    if texts or calls:
        out.append(memcore.Message(role=role, content="\n".join(texts), name=name, tool_calls=tuple(calls)))
    out.extend(results)
    return out


def is_user_text(event: Event) -> bool:
    """Whether the event is the user speaking: where a turn begins."""
    return (
        event.author == "user"
        and event.content is not None
        and any(p.text and not p.thought for p in event.content.parts or ())
    )


def turns(events: Iterable[Event]) -> list[list[Event]]:
    """``events`` cut into turns: a turn begins at each user message and runs to the next."""
    out: list[list[Event]] = []
    for event in events:
        if not out or is_user_text(event):
            out.append([])
        out[-1].append(event)
    return out


def turn_texts(messages: Sequence[memcore.Message]) -> tuple[str, str]:
    """The user's text and the last assistant text of a turn (``sync_turn``'s two positional texts)."""
    user = "\n".join(m.content for m in messages if m.role == "user" and m.content)
    assistant = next((m.content for m in reversed(messages) if m.role == "assistant" and m.content), "")
    return user, assistant


def memory_text(entry: Any) -> str:
    """The text of an ADK ``MemoryEntry`` (its text parts, joined)."""
    content: types.Content | None = entry.content
    if content is None or not content.parts:
        return ""
    return "\n".join(p.text for p in content.parts if p.text and not p.thought)

"""What the agent gets: dynamic instructions that carry the turn's recollections, and tools to recall and remember.
They find the run's :class:`MemorySession` through the run context, so one ``Agent`` serves every conversation."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import memcore
from agents import Agent, RunContextWrapper, function_tool

from ._session import MemorySession

Instructions = Callable[[RunContextWrapper[Any], Agent[Any]], Awaitable[str] | str]

HEADER = "What you remember about the user from earlier conversations (use it if it helps; it may be outdated):"
NO_MEMORY = "Long-term memory is not available in this run."


def memory_session_of(context: Any) -> MemorySession | None:
    """The run's memory: the context itself if it is a :class:`MemorySession`, else its ``memory_session``."""
    if isinstance(context, MemorySession):
        return context
    found = getattr(context, "memory_session", None)
    return found if isinstance(found, MemorySession) else None


def format_recollections(recollections: Sequence[memcore.Recollection], header: str = HEADER) -> str:
    """Recollections as a block of the system prompt (empty when there are none)."""
    if not recollections:
        return ""
    return "\n".join([header, *(f"- {r.text}" for r in recollections)])


def memory_instructions(
    base: str | Instructions | None = None, *, header: str = HEADER
) -> Callable[[RunContextWrapper[Any], Agent[Any]], Awaitable[str]]:
    """``Agent(instructions=memory_instructions("You are ..."))``: ``base`` (a string, or the SDK's instructions
    function) followed by what memory holds about the user's message of this run: one search per run, done when the
    model is first called (the SDK has saved the user's input to the session by then), reused by the run's later
    model calls. Without a :class:`MemorySession` in the run's context, ``base`` alone."""

    async def instructions(ctx: RunContextWrapper[Any], agent: Agent[Any]) -> str:
        if base is None:
            text = ""
        elif isinstance(base, str):
            text = base
        else:
            value = base(ctx, agent)
            text = await value if inspect.isawaitable(value) else value
        session = memory_session_of(ctx.context)
        block = format_recollections(await session.turn_recollections(), header) if session is not None else ""
        return f"{text}\n\n{block}" if text and block else text or block

    return instructions


@function_tool(name_override="recall_memory")
async def recall_memory(ctx: RunContextWrapper[Any], query: str) -> str:
    """Search the user's long-term memory: earlier conversations and the facts and preferences noted in them.

    Args:
        query: What to look for, in a few words.
    """
    session = memory_session_of(ctx.context)
    if session is None:
        return NO_MEMORY
    try:
        found = await session.recall(query)
    except memcore.MemcoreError as exc:
        return f"memory unavailable: {exc}"
    return json.dumps([{"text": r.text, "session": r.session_id} for r in found], ensure_ascii=False)


@function_tool(name_override="remember_memory")
def remember_memory(ctx: RunContextWrapper[Any], text: str, kind: str = "note") -> str:
    """Note a lasting fact or preference about the user in long-term memory.

    Args:
        text: The fact or preference, as a short sentence.
        kind: What it is: note, preference, fact or event.
    """
    session = memory_session_of(ctx.context)
    if session is None:
        return NO_MEMORY
    try:
        session.lifecycle.remember(text, kind=kind)
    except memcore.MemcoreError as exc:
        return f"not remembered: {exc}"
    return "remembered"

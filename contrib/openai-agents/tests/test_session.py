"""MemorySession's own rules, called as the SDK calls them: turns, bounds, undo, the wrapper hand-through, items."""

from __future__ import annotations

import asyncio
from typing import Any

import memcore
from agents import SQLiteSession
from agents.memory import SessionSettings
from conftest import stored
from liststore import ListStore

from memcore_openai_agents import MemorySession, finished, message


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def answer(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "lookup", "arguments": '{"q": "x"}'}


def output(call_id: str, text: str = "found") -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def test_a_turn_is_written_when_it_has_finished(memory: memcore.Memory, backend: object) -> None:
    session = MemorySession(SQLiteSession("c1"), memory, user_id="alice")

    async def main() -> None:
        await session.add_items([user("look it up")])
        await session.add_items([answer("let me look"), call("c1")])  # an answer that also calls a tool
        await session.add_items([output("c1")])
        memory.flush(10.0)
        assert stored(backend, "alice", "c1") == []
        await session.add_items([answer("here it is")])
        memory.flush(10.0)
        roles = [m.role for m in stored(backend, "alice", "c1")]
        assert roles == ["user", "assistant", "assistant", "tool", "assistant"]

    asyncio.run(main())


def test_a_long_run_is_written_in_parts(memory: memcore.Memory, backend: object) -> None:
    session = MemorySession(SQLiteSession("c1"), memory, user_id="alice", max_turn_items=3)

    async def main() -> None:
        await session.add_items([user("go")])
        for i in range(4):
            await session.add_items([call(f"k{i}"), output(f"k{i}")])
        memory.flush(10.0)
        assert len(stored(backend, "alice", "c1")) == 9  # the whole run was written early, in bounded parts
        assert session._run == []

    asyncio.run(main())


def test_undoing_the_run_still_gathering_rewinds_nothing(home: object) -> None:
    store = ListStore()
    memory = memcore.Memory(backends=[store])
    session = MemorySession(SQLiteSession("c1"), memory, user_id="alice")

    async def main() -> None:
        await session.add_items([user("one"), answer("1")])
        await session.add_items([user("two"), call("k")])  # unfinished: a tool call without output
        assert (await session.pop_item()) == call("k")
        await session.pop_item()
        memory.flush(10.0)
        assert store.rewinds == []
        await session.pop_item()  # now into the written turn: rewound once, for both of its items
        await session.pop_item()
        memory.flush(10.0)
        assert store.rewinds == [1]
        assert store.messages("alice", "c1") == []
        assert await session.pop_item() is None

    try:
        asyncio.run(main())
    finally:
        memory.close(10.0)


def test_undoing_history_from_before_this_process_only_drops_recall(home: object) -> None:
    store = ListStore()
    memory = memcore.Memory(backends=[store])
    inner = SQLiteSession("c1")

    async def main() -> None:
        await inner.add_items([user("old"), answer("old answer")])
        session = MemorySession(inner, memory, user_id="alice")
        before = session.lifecycle.generation
        await session.pop_item()
        assert session.lifecycle.generation == before + 1  # a rewind: any prefetch is stale
        memory.flush(10.0)
        assert store.rewinds == []  # no count of turns to undo

    try:
        asyncio.run(main())
    finally:
        memory.close(10.0)


class Recording:
    """An inner session whose methods take the SDK's ``wrapper`` (the run context), recording it."""

    session_id = "rec"
    session_settings: SessionSettings | None = SessionSettings(limit=7)

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.wrappers: list[Any] = []

    async def get_items(self, limit: int | None = None, *, wrapper: Any = None) -> list[Any]:
        self.wrappers.append(wrapper)
        return list(self.items)

    async def add_items(self, items: list[Any], *, wrapper: Any = None) -> None:
        self.wrappers.append(wrapper)
        self.items += items

    async def pop_item(self, *, wrapper: Any = None) -> Any:
        self.wrappers.append(wrapper)
        return self.items.pop() if self.items else None

    async def clear_session(self, *, wrapper: Any = None) -> None:
        self.wrappers.append(wrapper)
        self.items.clear()


def test_the_run_context_and_settings_reach_the_inner_session(memory: memcore.Memory) -> None:
    inner = Recording()
    session = MemorySession(inner, memory, user_id="alice")  # type: ignore[arg-type]
    context = object()

    async def main() -> None:
        await session.add_items([user("hi")], wrapper=context)
        await session.get_items(wrapper=context)
        await session.pop_item(wrapper=context)
        await session.clear_session(wrapper=context)

    asyncio.run(main())
    assert inner.wrappers == [context] * 4
    assert session.session_settings == SessionSettings(limit=7)
    session.session_settings = SessionSettings(limit=3)
    assert inner.session_settings == SessionSettings(limit=3)
    # an inner session without the parameter gets none
    plain = MemorySession(SQLiteSession("p"), memory)
    asyncio.run(plain.add_items([user("hi")], wrapper=context))


def test_what_an_item_becomes() -> None:
    assert message({"type": "reasoning", "id": "r", "summary": []}) is None
    assert message({"type": "web_search_call", "id": "w", "status": "completed"}) is None  # hosted: no output item
    developer = message({"role": "developer", "content": "be terse"})
    assert developer is not None and (developer.role, developer.content) == ("system", "be terse")
    parts = message({"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_image"}]})
    assert parts is not None and parts.content == "a"
    refusal = message({"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]})
    assert refusal is not None and refusal.content == "no"
    custom = message({"type": "custom_tool_call", "call_id": "z", "name": "grep", "input": "needle"})
    assert custom is not None and custom.tool_calls[0]["function"] == {"name": "grep", "arguments": "needle"}
    out = message({"type": "function_call_output", "call_id": "z", "output": [{"type": "input_text", "text": "hit"}]})
    assert out is not None and (out.role, out.content, out.tool_call_id) == ("tool", "hit", "z")
    assert finished([user("q"), answer("a")])
    assert not finished([user("q"), answer("a"), call("k")])
    assert not finished([user("q"), call("k"), answer("a")])  # the call has no output yet
    assert not finished([])

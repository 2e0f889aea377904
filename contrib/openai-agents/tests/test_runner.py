"""The SDK's own Runner, SQLiteSession and function tools, with MemorySession on memcore and a scripted model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import memcore
import pytest
from agents import Agent, Runner, SQLiteSession
from agents.exceptions import MaxTurnsExceeded
from conftest import Harness, stored
from liststore import ListStore

from memcore_openai_agents import HEADER, MemorySession, memory_instructions, recall_memory


def test_a_later_conversation_is_told_what_memory_holds(harness: Harness, memory: memcore.Memory) -> None:
    async def main() -> None:
        first = harness.conversation("alice", "c1")
        assert await harness.reply(first, "I take my espresso at seven") == "noted: I take my espresso at seven"
        first.end()  # the conversation is over: commit it
        memory.flush(10.0)
        second = harness.conversation("alice", "c2")
        await harness.reply(second, "when is my espresso")
        assert HEADER in harness.instructions[-1]
        assert "- I take my espresso at seven" in harness.instructions[-1]
        assert harness.instructions[-1].startswith("Answer briefly.\n\n")

    asyncio.run(main())


def test_the_recall_tool(harness: Harness, memory: memcore.Memory) -> None:
    async def main() -> None:
        first = harness.conversation("alice", "c1")
        await harness.reply(first, "my cat is called Miso")
        first.end()
        memory.flush(10.0)
        answer = await harness.reply(harness.conversation("alice", "c2"), "recall cat")
        assert answer.startswith("tool said: ")
        found = json.loads(answer[len("tool said: ") :])
        assert {"text": "my cat is called Miso", "session": "c1"} in found

    asyncio.run(main())


def test_two_users_never_see_each_other(harness: Harness, memory: memcore.Memory) -> None:
    secrets = {"alice": "alice keeps her espresso beans in the freezer", "bob": "bob keeps his espresso cups warm"}

    async def main() -> None:
        for user, secret in secrets.items():
            session = harness.conversation(user, f"{user}-1")
            await harness.reply(session, secret)
            session.end()
        memory.flush(10.0)
        for user, secret in secrets.items():
            other = next(s for u, s in secrets.items() if u != user)
            harness.model.calls.clear()
            answer = await harness.reply(harness.conversation(user, f"{user}-2"), "recall espresso keeps")
            shown = "\n".join(harness.instructions) + answer
            assert secret in shown
            assert other not in shown

    asyncio.run(main())


def test_one_search_per_run_however_many_model_calls(
    harness: Harness, memory: memcore.Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    searches: list[str] = []
    recall = MemorySession.recall

    async def counted(self: MemorySession, query: str, *args: Any, **kwargs: Any) -> list[memcore.Recollection]:
        searches.append(query)
        return await recall(self, query, *args, **kwargs)

    monkeypatch.setattr(MemorySession, "recall", counted)

    async def main() -> None:
        session = harness.conversation("alice", "c1")
        await harness.reply(session, "hello there")
        await harness.reply(session, "remember oat milk in lattes")  # two model calls: the tool call, the answer

    asyncio.run(main())
    assert len(harness.model.calls) == 3
    assert searches == ["hello there", "remember oat milk in lattes"]


def test_each_finished_turn_is_written_once_with_its_tool_calls(
    harness: Harness, memory: memcore.Memory, backend: object
) -> None:
    async def main() -> None:
        session = harness.conversation("alice", "c1")
        await harness.reply(session, "hello")
        await harness.reply(session, "remember oat milk in lattes")
        session.end()
        memory.flush(10.0)
        got = stored(backend, "alice", "c1")
        assert [(m.role, m.content) for m in got if not m.tool_calls] == [
            ("user", "hello"),
            ("assistant", "noted: hello"),
            ("user", "remember oat milk in lattes"),
            ("tool", "remembered"),
            ("assistant", "tool said: remembered"),
        ]
        (call,) = [m for m in got if m.tool_calls]
        assert call.tool_calls[0]["function"]["name"] == "remember_memory"
        assert json.loads(call.tool_calls[0]["function"]["arguments"])["text"] == "oat milk in lattes"
        assert got[4].role == "tool" and got[4].tool_call_id == call.tool_calls[0]["id"]
        # the note the tool took is the user's, at once
        found = memory.recall("oat milk", user_id="alice")
        assert any(r.text == "oat milk in lattes" for r in found)
        assert memory.recall("oat milk", user_id="bob") == []

    asyncio.run(main())


def test_the_history_is_the_inner_sessions(harness: Harness) -> None:
    async def main() -> None:
        inner = SQLiteSession("c1")
        session = MemorySession(inner, harness.memory, user_id="alice")
        await harness.reply(session, "first question")
        await harness.reply(session, "second question")
        assert await session.get_items() == await inner.get_items()
        assert len(await inner.get_items()) == 4
        # the SDK gave the model the history it read through the wrapper
        _, seen = harness.model.calls[-1]
        assert [i.get("content") for i in seen if i.get("role") == "user"] == ["first question", "second question"]
        assert session.session_id == "c1"

    asyncio.run(main())


def test_a_streamed_run_is_written_too(harness: Harness, memory: memcore.Memory, backend: object) -> None:
    async def main() -> None:
        session = harness.conversation("alice", "c1")
        result = Runner.run_streamed(harness.agent, "stream me a flat white", session=session, context=session)
        async for _ in result.stream_events():
            pass
        assert result.final_output == "noted: stream me a flat white"
        memory.flush(10.0)
        assert [m.content for m in stored(backend, "alice", "c1")] == [
            "stream me a flat white",
            "noted: stream me a flat white",
        ]

    asyncio.run(main())


def test_a_run_that_never_finished_is_written_at_the_next_message(
    harness: Harness, memory: memcore.Memory, backend: object
) -> None:
    async def main() -> None:
        session = harness.conversation("alice", "c1")
        with pytest.raises(MaxTurnsExceeded):  # the tool call used the only turn: no answer
            await harness.reply(session, "remember decaf after noon", max_turns=1)
        memory.flush(10.0)
        assert stored(backend, "alice", "c1") == []  # still gathering
        await harness.reply(session, "thanks")
        memory.flush(10.0)
        roles = [m.role for m in stored(backend, "alice", "c1")]
        assert roles == ["user", "assistant", "tool", "user", "assistant"]

    asyncio.run(main())


def test_an_undo_rewinds_the_turn_in_memory(harness: Harness, memory: memcore.Memory, backend: object) -> None:
    async def main() -> None:
        session = harness.conversation("alice", "c1")
        await harness.reply(session, "I like cortados")
        await harness.reply(session, "actually I hate coffee")
        memory.flush(10.0)  # both turns delivered: the backend's memcore_rewind takes the second one out
        await session.pop_item()  # the answer
        await session.pop_item()  # the question: one turn undone, one rewind
        memory.flush(10.0)
        if isinstance(backend, ListStore):
            assert backend.rewinds == [1]
        assert [m.content for m in stored(backend, "alice", "c1")] == ["I like cortados", "noted: I like cortados"]
        assert len(await session.get_items()) == 2

    asyncio.run(main())


def test_clear_session_empties_the_history_and_commits(harness: Harness, memory: memcore.Memory) -> None:
    async def main() -> None:
        session = harness.conversation("alice", "c1")
        await harness.reply(session, "my birthday is in May")
        await session.clear_session()
        memory.flush(10.0)
        assert await session.get_items() == []
        found = memory.recall("birthday", user_id="alice")  # committed: recallable in any backend
        assert any(r.text == "my birthday is in May" for r in found)

    asyncio.run(main())


def test_without_a_memory_session_in_the_context(memory: memcore.Memory) -> None:
    model = Harness(memory).model
    agent = Agent(name="plain", instructions=memory_instructions("Be kind."), model=model, tools=[recall_memory])

    async def main() -> None:
        result = await Runner.run(agent, "recall anything")
        assert result.final_output == "tool said: Long-term memory is not available in this run."
        assert model.calls[0][0] == "Be kind."

    asyncio.run(main())


def test_a_context_with_a_memory_session_attribute(harness: Harness, memory: memcore.Memory) -> None:
    class AppContext:
        def __init__(self, memory_session: MemorySession):
            self.memory_session = memory_session

    async def main() -> None:
        first = harness.conversation("alice", "c1")
        await harness.reply(first, "my dog is Pixel")
        first.end()
        memory.flush(10.0)
        second = harness.conversation("alice", "c2")
        await Runner.run(harness.agent, "how is my dog", session=second, context=AppContext(second))
        assert "- my dog is Pixel" in harness.instructions[-1]

    asyncio.run(main())


def test_memory_failures_never_reach_the_run(harness: Harness, memory: memcore.Memory) -> None:
    async def main() -> None:
        session = harness.conversation("alice", "c1")
        memory.close(10.0)  # every write and recall now raises MemoryClosed inside memcore
        with pytest.raises(memcore.MemoryClosed):
            await session.recall("anything")
        assert await harness.reply(session, "hello") == "noted: hello"  # recall for the prompt failed quietly
        assert len(await session.get_items()) == 2

    asyncio.run(main())

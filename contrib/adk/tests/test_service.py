"""The service's own rules: event deltas, the bounded record of written events, ids, users, notes, refusals."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import memcore
import pytest
from conftest import APP, stored
from google.adk.events.event import Event
from google.adk.memory.memory_entry import MemoryEntry
from google.adk.sessions.session import Session
from google.genai import types

from memcore_adk import EVENTS_SESSION, MEMORIES_SESSION, MemcoreMemoryService, default_user_id, event_messages


def said(author: str, text: str, *, invocation: str = "inv", **fields: Any) -> Event:
    return Event(
        id=Event.new_id(),
        invocation_id=invocation,
        author=author,
        content=types.Content(role="user" if author == "user" else "model", parts=[types.Part(text=text)]),
        **fields,
    )


def conversation(n: int) -> list[Event]:
    events = []
    for i in range(n):
        events += [said("user", f"question {i} about tea"), said("barista", f"answer {i} about tea")]
    return events


def contents(backend: object, service: MemcoreMemoryService, user: str, session_id: str) -> list[str]:
    return [m.content for m in stored(backend, service.user_id(APP, user), session_id)]


def test_event_deltas_overlapping_are_written_once(
    service: MemcoreMemoryService, memory: memcore.Memory, backend: object
) -> None:
    events = conversation(3)

    async def main() -> None:
        await service.add_events_to_memory(app_name=APP, user_id="alice", session_id="s1", events=events[:3])
        await service.add_events_to_memory(app_name=APP, user_id="alice", session_id="s1", events=events[2:])
        await service.add_events_to_memory(app_name=APP, user_id="alice", events=events[:2])  # no session id

    asyncio.run(main())
    memory.flush(10.0)
    assert contents(backend, service, "alice", "s1") == [e.content.parts[0].text for e in events if e.content]
    assert contents(backend, service, "alice", EVENTS_SESSION) == ["question 0 about tea", "answer 0 about tea"]


def test_the_record_of_written_events_is_bounded(memory: memcore.Memory, backend: object) -> None:
    """The documented limit: an event handed over again after ``max_seen_events`` others is written again."""
    service = MemcoreMemoryService(memory, max_seen_events=4)
    events = conversation(3)  # six events
    session = Session(id="s1", app_name=APP, user_id="alice", events=events)

    async def main() -> None:
        await service.add_session_to_memory(session)
        await service.add_session_to_memory(session)  # the first two fell out of the record of four

    asyncio.run(main())
    memory.flush(10.0)
    texts = contents(backend, service, "alice", "s1")
    assert len(service._seen) == 4
    assert texts.count("question 0 about tea") == 2 and texts.count("answer 2 about tea") == 1


def test_concurrent_hand_overs_write_each_event_once(
    service: MemcoreMemoryService, memory: memcore.Memory, backend: object
) -> None:
    session = Session(id="s1", app_name=APP, user_id="alice", events=conversation(20))
    start = threading.Barrier(4)

    def hand_over() -> None:
        start.wait()
        asyncio.run(service.add_session_to_memory(session))

    threads = [threading.Thread(target=hand_over) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    memory.flush(10.0)
    assert len(contents(backend, service, "alice", "s1")) == 40


def test_app_and_user_never_run_together(service: MemcoreMemoryService, memory: memcore.Memory) -> None:
    assert default_user_id("coffee-app", "alice") == "coffee-app/alice"
    assert service.user_id("a/b", "c") != service.user_id("a", "b/c")
    one = Session(id="s", app_name="a/b", user_id="c", events=[said("user", "the pass phrase is mango")])
    two = Session(id="s", app_name="a", user_id="b/c", events=[said("user", "the pass phrase is kiwi")])

    async def main() -> None:
        await service.add_session_to_memory(one)
        await service.add_session_to_memory(two)
        memory.flush(10.0)
        found = await service.search_memory(app_name="a/b", user_id="c", query="pass phrase")
        assert [m.content.parts[0].text for m in found.memories if m.content.parts] == ["the pass phrase is mango"]
        other = await service.search_memory(app_name="other", user_id="c", query="pass phrase")
        assert other.memories == []

    asyncio.run(main())


def test_ids_memcore_refuses_are_refused_with_both_names(service: MemcoreMemoryService) -> None:
    with pytest.raises(memcore.InvalidSessionId, match="256"):
        service.user_id(APP, "u" * 300)
    with pytest.raises(memcore.InvalidSessionId):
        service.user_id("", "alice")


def test_a_memory_whose_backends_mix_users_is_refused(home: object) -> None:
    class Mixing:
        name = "mixing"

        @memcore.hookimpl
        def memcore_write(self, session: memcore.Session, messages: Any) -> None:
            pass

    with pytest.raises(memcore.UsersNotSeparated):
        MemcoreMemoryService(backends=[Mixing()], journal=False)
    memory = memcore.Memory(backends=[Mixing()], journal=False)
    try:
        with pytest.raises(memcore.UsersNotSeparated):
            MemcoreMemoryService(memory)
    finally:
        memory.close(5.0)


def test_a_memory_or_its_arguments_not_both(memory: memcore.Memory) -> None:
    with pytest.raises(TypeError, match="not both"):
        MemcoreMemoryService(memory, journal=False)


def test_add_memory_keeps_notes_once_per_id(memory: memcore.Memory, backend: object) -> None:
    service = MemcoreMemoryService(memory)
    entry = MemoryEntry(
        id="m1", author="barista", content=types.Content(parts=[types.Part(text="prefers oat milk in lattes")])
    )

    async def main() -> None:
        await service.add_memory(app_name=APP, user_id="alice", memories=[entry], custom_metadata={"ttl": 30})
        await service.add_memory(app_name=APP, user_id="alice", memories=[entry])
        memory.flush(10.0)
        found = await service.search_memory(app_name=APP, user_id="alice", query="oat milk")
        assert [m.content.parts[0].text for m in found.memories if m.content.parts] == ["prefers oat milk in lattes"]
        assert found.memories[0].custom_metadata["session_id"] == MEMORIES_SESSION
        assert (await service.search_memory(app_name=APP, user_id="bob", query="oat milk")).memories == []

    asyncio.run(main())


def test_delete_needs_a_memory_id(service: MemcoreMemoryService) -> None:
    with pytest.raises(ValueError, match="forget"):
        asyncio.run(service.delete_memory(app_name=APP, user_id="alice", memory_id=None))


def test_what_an_event_becomes() -> None:
    thought = Event(
        id="e1",
        author="barista",
        content=types.Content(role="model", parts=[types.Part(text="hmm", thought=True), types.Part(text="Hello")]),
    )
    assert [(m.role, m.content, m.name) for m in event_messages(thought)] == [("assistant", "Hello", "barista")]
    assert event_messages(said("barista", "Hel", partial=True)) == []
    assert event_messages(Event(id="e2", author="barista")) == []  # a state change, no content
    call = Event(
        id="e3",
        author="barista",
        content=types.Content(role="model", parts=[types.Part.from_function_call(name="note", args={"a": 1})]),
    )
    (message,) = event_messages(call)
    assert message.tool_calls[0]["id"] == "e3/0"  # the call had no id: one made from the event's
    assert message.tool_calls[0]["function"] == {"name": "note", "arguments": '{"a": 1}'}

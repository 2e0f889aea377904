"""ADK's own Runner, InMemorySessionService, load_memory and preload_memory, on memcore, with a scripted model."""

from __future__ import annotations

import asyncio

import memcore
from conftest import APP, Harness, stored

from memcore_adk import MemcoreMemoryService


def test_a_later_session_recalls_through_load_memory(harness: Harness, memory: memcore.Memory) -> None:
    async def main() -> None:
        first = await harness.new_session("alice")
        answer = await harness.reply("alice", first, "I take my espresso at seven")
        assert answer == "noted: I take my espresso at seven"
        memory.flush(10.0)  # the commit after the turn runs in the background
        second = await harness.new_session("alice")
        answer = await harness.reply("alice", second, "recall espresso")
        assert answer.startswith("recalled: ")
        assert "I take my espresso at seven" in answer

    asyncio.run(main())


def test_preload_memory_shows_the_model_what_it_knows(harness: Harness, memory: memcore.Memory) -> None:
    async def main() -> None:
        first = await harness.new_session("alice")
        await harness.reply("alice", first, "my cat is called Miso")
        memory.flush(10.0)
        second = await harness.new_session("alice")
        await harness.reply("alice", second, "what is my cat called")
        shown = harness.model.seen[-1]
        assert "<PAST_CONVERSATIONS>" in shown
        assert "user: my cat is called Miso" in shown

    asyncio.run(main())


def test_two_users_never_see_each_other(harness: Harness, memory: memcore.Memory) -> None:
    secrets = {"alice": "alice keeps her espresso beans in the freezer", "bob": "bob keeps his espresso cups warm"}

    async def main() -> None:
        for user, secret in secrets.items():
            await harness.reply(user, await harness.new_session(user), secret)
        memory.flush(10.0)
        for user, secret in secrets.items():
            other = next(s for u, s in secrets.items() if u != user)
            harness.model.seen.clear()
            session = await harness.new_session(user)
            answer = await harness.reply(user, session, "recall espresso")
            shown = "\n".join(harness.model.seen)  # what preload_memory injected and what load_memory returned
            assert secret in answer and secret in shown
            assert other not in answer and other not in shown
            found = await harness.service.search_memory(app_name=APP, user_id=user, query="espresso keeps")
            texts = [m.content.parts[0].text for m in found.memories if m.content.parts]
            assert secret in texts and other not in texts

    asyncio.run(main())


def test_every_event_is_written_once_however_often_adk_hands_it_over(
    harness: Harness, memory: memcore.Memory, backend: object
) -> None:
    async def main() -> None:
        session = await harness.new_session("alice")
        for text in ("one espresso", "two cortados", "three flat whites"):
            await harness.reply("alice", session, text)  # the callback hands the whole session over every turn
        adk_session = await harness.session("alice", session)
        await harness.service.add_session_to_memory(adk_session)  # and once more
        memory.flush(10.0)
        user = harness.service.user_id(APP, "alice")
        got = [(m.role, m.content) for m in stored(backend, user, session)]
        assert got == [
            ("user", "one espresso"),
            ("assistant", "noted: one espresso"),
            ("user", "two cortados"),
            ("assistant", "noted: two cortados"),
            ("user", "three flat whites"),
            ("assistant", "noted: three flat whites"),
        ]

    asyncio.run(main())


def test_tool_calls_and_responses_are_kept(harness: Harness, memory: memcore.Memory, backend: object) -> None:
    async def main() -> None:
        session = await harness.new_session("alice")
        assert await harness.reply("alice", session, "tool buy more beans") == "done"
        memory.flush(10.0)
        messages = stored(backend, harness.service.user_id(APP, "alice"), session)
        assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
        call = messages[1].tool_calls[0]
        assert call["function"]["name"] == "note"
        assert '"text": "buy more beans"' in call["function"]["arguments"]
        assert messages[1].name == "barista"
        assert messages[2].name == "note" and messages[2].tool_call_id == call["id"]
        assert '"status": "noted"' in messages[2].content

    asyncio.run(main())


def test_deleting_a_recalled_memory_erases_its_session(harness: Harness, memory: memcore.Memory) -> None:
    async def main() -> None:
        mine = await harness.new_session("alice")
        await harness.reply("alice", mine, "my door code is 4711")
        bobs = await harness.new_session("bob")
        await harness.reply("bob", bobs, "my door code is 1234")
        memory.flush(10.0)
        service = harness.service
        found = await service.search_memory(app_name=APP, user_id="alice", query="door code")
        assert found.memories and all(m.id for m in found.memories)
        await service.delete_memory(app_name=APP, user_id="alice", memory_id=found.memories[0].id)
        assert (await service.search_memory(app_name=APP, user_id="alice", query="door code")).memories == []
        # ADK's session still holds the events: handing it over again does not bring them back
        await service.add_session_to_memory(await harness.session("alice", mine))
        memory.flush(10.0)
        assert (await service.search_memory(app_name=APP, user_id="alice", query="door code")).memories == []
        # bob's memory is untouched, and alice's new turns are remembered again
        assert (await service.search_memory(app_name=APP, user_id="bob", query="door code")).memories
        await harness.reply("alice", mine, "my bike lock code is 9")
        memory.flush(10.0)
        texts = [
            m.content.parts[0].text
            for m in (await service.search_memory(app_name=APP, user_id="alice", query="code")).memories
            if m.content.parts
        ]
        assert "my bike lock code is 9" in texts and "my door code is 4711" not in texts

    asyncio.run(main())


def test_forgetting_a_user(harness: Harness, memory: memcore.Memory) -> None:
    async def main() -> None:
        for user in ("alice", "bob"):
            await harness.reply(user, await harness.new_session(user), f"{user} drinks ristretto")
        memory.flush(10.0)
        handle = harness.service.forget(APP, "alice")
        assert handle.wait(10.0) and handle.ok
        service = harness.service
        assert (await service.search_memory(app_name=APP, user_id="alice", query="ristretto")).memories == []
        assert (await service.search_memory(app_name=APP, user_id="bob", query="ristretto")).memories

    asyncio.run(main())


def test_the_service_can_make_its_own_memory(backend: object) -> None:
    service = MemcoreMemoryService(backends=[backend], journal=False)
    harness = Harness(service)

    async def main() -> None:
        await harness.reply("alice", await harness.new_session("alice"), "decaf after noon")
        service.flush(10.0)
        assert (await service.search_memory(app_name=APP, user_id="alice", query="decaf")).memories

    asyncio.run(main())
    report = service.close(10.0)
    assert report.pending == 0 and report.failed == 0
    assert service.close(10.0) == report  # closed: memcore returns its first report

"""Fixtures: an isolated MEMCORE_HOME per test, each test on both backends (memcore's SQLite store and the tests'
list store), the SDK's own Runner and SQLiteSession around MemorySession, a scripted model, tracing off (no
network)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import memcore
import pytest
from agents import Agent, Runner, SQLiteSession, set_tracing_disabled
from liststore import ListStore
from scripted import ScriptedModel

from memcore_openai_agents import MemorySession, memory_instructions, recall_memory, remember_memory

set_tracing_disabled(True)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "memcore-home"
    path.mkdir()
    monkeypatch.setenv("MEMCORE_HOME", str(path))
    return path


@pytest.fixture(params=["sqlite", "liststore"])
def backend(request: pytest.FixtureRequest, home: Path) -> Any:
    if request.param == "sqlite":
        return memcore.SQLiteBackend()
    return ListStore()


@pytest.fixture
def memory(backend: Any) -> Iterator[memcore.Memory]:
    m = memcore.Memory(backends=[backend])
    yield m
    m.close(timeout=10.0)


def stored(backend: Any, user: str | None, session_id: str) -> list[memcore.Message]:
    """What the backend holds for one memcore (user, session)."""
    if isinstance(backend, ListStore):
        return backend.messages(user, session_id)
    return list(backend.memcore_history(memcore.Session(id=session_id, user_id=user)))


class Harness:
    """One Agent (the scripted model, memory instructions, recall and remember tools) for every conversation."""

    def __init__(self, memory: memcore.Memory):
        self.memory = memory
        self.model = ScriptedModel()
        self.agent = Agent(
            name="barista",
            instructions=memory_instructions("Answer briefly."),
            model=self.model,
            tools=[recall_memory, remember_memory],
        )

    def conversation(self, user: str | None, conversation_id: str, **options: Any) -> MemorySession:
        return MemorySession(SQLiteSession(conversation_id), self.memory, user_id=user, **options)

    async def reply(self, session: MemorySession, text: str, **options: Any) -> str:
        result = await Runner.run(self.agent, text, session=session, context=session, **options)
        return str(result.final_output)

    @property
    def instructions(self) -> list[str]:
        """The system instructions of every model call so far."""
        return [system or "" for system, _ in self.model.calls]


@pytest.fixture
def harness(memory: memcore.Memory) -> Harness:
    return Harness(memory)

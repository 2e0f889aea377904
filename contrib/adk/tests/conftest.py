"""Fixtures: an isolated MEMCORE_HOME per test, each test on both backends (memcore's SQLite store and the tests'
list store), ADK's own Runner and InMemorySessionService around the service, and a scripted model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import memcore
import pytest
from google.adk.agents import LlmAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.events.event import Event
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.adk.tools import load_memory, preload_memory
from google.genai import types
from liststore import ListStore
from scripted import ScriptedLlm

from memcore_adk import MemcoreMemoryService

APP = "coffee-app"


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


@pytest.fixture
def service(memory: memcore.Memory) -> MemcoreMemoryService:
    return MemcoreMemoryService(memory)


def stored(backend: Any, user: str, session_id: str) -> list[memcore.Message]:
    """What the backend holds for one memcore (user, session)."""
    if isinstance(backend, ListStore):
        return backend.messages(user, session_id)
    return list(backend.memcore_history(memcore.Session(id=session_id, user_id=user)))


async def save_session(callback_context: CallbackContext) -> None:
    """The documented way to feed ADK memory: the whole session after every agent turn."""
    await callback_context.add_session_to_memory()


def note(text: str) -> dict[str, str]:
    """Writes a note down (the scripted model's tool)."""
    return {"status": "noted", "text": text}


class Harness:
    """ADK's Runner with an LlmAgent on the scripted model, load_memory and preload_memory, saving to memory after
    every turn."""

    def __init__(self, service: MemcoreMemoryService, *, preload: bool = True, save: bool = True):
        self.model = ScriptedLlm()
        tools: list[Any] = [load_memory, note]
        if preload:
            tools.append(preload_memory)
        self.agent = LlmAgent(
            name="barista",
            model=self.model,
            instruction="Answer briefly.",
            tools=tools,
            after_agent_callback=save_session if save else None,
        )
        self.sessions = InMemorySessionService()
        self.service = service
        self.runner = Runner(app_name=APP, agent=self.agent, session_service=self.sessions, memory_service=service)

    async def new_session(self, user: str, session_id: str | None = None) -> str:
        session = await self.sessions.create_session(app_name=APP, user_id=user, session_id=session_id)
        return session.id

    async def say(self, user: str, session_id: str, text: str) -> list[Event]:
        message = types.Content(role="user", parts=[types.Part(text=text)])
        return [e async for e in self.runner.run_async(user_id=user, session_id=session_id, new_message=message)]

    async def reply(self, user: str, session_id: str, text: str) -> str:
        events = await self.say(user, session_id, text)
        final = [e for e in events if e.content and e.content.parts and e.content.parts[0].text]
        return final[-1].content.parts[0].text if final and final[-1].content and final[-1].content.parts else ""

    async def session(self, user: str, session_id: str) -> Any:
        return await self.sessions.get_session(app_name=APP, user_id=user, session_id=session_id)


@pytest.fixture
def harness(service: MemcoreMemoryService) -> Harness:
    return Harness(service)

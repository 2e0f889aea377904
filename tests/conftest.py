from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from recording import RecordingBackend

import memcore


@pytest.fixture(autouse=True)
def memcore_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MEMCORE_HOME, so nothing leaks between tests or runs."""
    home = tmp_path / "memcore-home"
    monkeypatch.setenv("MEMCORE_HOME", str(home))
    monkeypatch.delenv("MEMCORE_STRICT", raising=False)
    return home


@pytest.fixture
def make_memory() -> Iterator[Callable[..., memcore.Memory]]:
    """Build Memory objects that are closed (quickly) when the test ends."""
    made: list[memcore.Memory] = []

    def make(*backends: Any, **kwargs: Any) -> memcore.Memory:
        kwargs.setdefault("plugins", [])
        memory = memcore.Memory(backends=list(backends) or None, **kwargs)
        made.append(memory)
        return memory

    yield make
    for memory in made:
        memory.close(timeout=2.0)


@pytest.fixture
def backend() -> Iterator[RecordingBackend]:
    recording = RecordingBackend()
    yield recording
    for gate in recording.gates:  # let held workers go before the Memory closes
        gate.release()


@pytest.fixture
def memory(make_memory: Callable[..., memcore.Memory], backend: RecordingBackend) -> memcore.Memory:
    return make_memory(backend)

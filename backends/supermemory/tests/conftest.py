"""Test support: the fake Supermemory server (``support/fake_supermemory.py``) on loopback, once per test session,
and a namespace of its own per test (the backend's users get ``<namespace>:<user>``)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.fake_supermemory import FakeSupermemory


@pytest.fixture(scope="session")
def fake_supermemory() -> Iterator[FakeSupermemory]:
    with FakeSupermemory() as fake:
        yield fake


@pytest.fixture
def namespace(fake_supermemory: FakeSupermemory) -> Iterator[str]:
    """A namespace setting of its own per test; its namespaces (and its users') are dropped afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    with fake_supermemory.lock:
        for found in [n for n in fake_supermemory.namespaces if n == name or n.startswith(name + ":")]:
            del fake_supermemory.namespaces[found]

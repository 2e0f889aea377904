"""Test support: the fake Honcho server (``support/fake_honcho.py``) on loopback, once per test session, and a
workspace name of its own per test (the backend's users get ``<workspace>--<user>``)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.fake_honcho import FakeHoncho


@pytest.fixture(scope="session")
def fake_honcho() -> Iterator[FakeHoncho]:
    with FakeHoncho() as fake:
        yield fake


@pytest.fixture
def workspace(fake_honcho: FakeHoncho) -> Iterator[str]:
    """A workspace name of its own per test; its workspaces (and its users') are dropped afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    with fake_honcho.lock:
        for found in [w for w in fake_honcho.workspaces if w == name or w.startswith(name + "--")]:
            del fake_honcho.workspaces[found]

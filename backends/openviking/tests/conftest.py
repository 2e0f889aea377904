"""Test support: a real OpenViking server (and its fake OpenAI endpoint) on loopback, once per session.

With ``MEMCORE_REQUIRE_OPENVIKING=1`` (the tox env sets it) a server that is not installed or does not start fails the
run; otherwise the tests that need it are skipped with the reason."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.stack import Stack, find_server, start

REQUIRED = os.environ.get("MEMCORE_REQUIRE_OPENVIKING") == "1"

# Tests that commit hundreds of sessions get a server of their own, stopped when they end: draining the shared
# server's extraction of G8's 250 commits took longer than the test timeout on a loaded machine (CI, stop 22), and
# without the drain the next tests' commits queue behind them past their ``index_deadline``.
OWN_SERVER = frozenset({"test_g8_threads_stay_within_the_pool"})


def _start(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    server = find_server()
    if server is None:
        reason = "openviking-server is not installed (pip install openviking)"
        if REQUIRED:
            pytest.fail(f"MEMCORE_REQUIRE_OPENVIKING=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        stack = start(tmp_path_factory.mktemp("openviking"), server, deadline=60.0)
    except RuntimeError as exc:
        if REQUIRED:
            pytest.fail(f"MEMCORE_REQUIRE_OPENVIKING=1 but the server did not start: {exc}", pytrace=False)
        pytest.skip(f"the OpenViking server did not start: {exc}")
    return stack


@pytest.fixture(scope="session")
def shared_openviking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = _start(tmp_path_factory)
    yield stack
    stack.stop()


@pytest.fixture
def openviking(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session's shared server, or for a test in ``OWN_SERVER`` a server of its own."""
    if request.node.originalname not in OWN_SERVER:
        yield request.getfixturevalue("shared_openviking")
        return
    stack = _start(tmp_path_factory)
    yield stack
    stack.stop(grace=2.0)  # its queued extractions are thrown away with it


@pytest.fixture
def tenant(request: pytest.FixtureRequest, openviking: Stack) -> Iterator[dict[str, str]]:
    """A fresh account and user: trusted mode creates them on the fly, so each test sees an empty store.

    The user's directories are created here, by one throwaway session: OpenViking 0.5.2 answers 500 (a lock timeout
    in ``initialize_user_directories``) when a new user's first sessions are created concurrently. memcore retries
    that, correctly, but the suite counts each ``open_session`` call and expects exactly one per session.

    When the test is over, the tenant's commits are left to finish extracting (and the server's queues to drain):
    a test that commits hundreds of sessions (G8) would otherwise hold up the extraction of the next tests' commits
    behind its own, past their ``index_deadline``."""
    tag = uuid.uuid4().hex[:10]
    ids = {"account": f"acct-{tag}", "user": f"user-{tag}"}
    headers = {"X-API-Key": openviking.api_key, "X-OpenViking-Account": ids["account"]}
    headers["X-OpenViking-User"] = ids["user"]
    url = openviking.url + "/api/v1/sessions"
    answer = httpx.post(url, json={"session_id": "warm-up"}, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    yield ids
    if request.node.originalname not in OWN_SERVER:
        drain(openviking, headers)


def drain(stack: Stack, headers: dict[str, str], deadline: float = 600.0) -> None:
    """Wait until the user of ``headers`` has no commit still being extracted, then for the server's queues."""
    until = time.monotonic() + deadline
    with httpx.Client(base_url=stack.url + "/api/v1", headers=headers, timeout=60) as client:
        while time.monotonic() < until:
            tasks = client.get("/tasks", params={"task_type": "session_commit", "limit": 200}).json()["result"] or []
            if not any(t.get("status") in ("pending", "running") for t in tasks):
                break
            time.sleep(0.5)
        client.post("/system/wait", json={})

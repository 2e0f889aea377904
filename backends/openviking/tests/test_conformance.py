"""The shared conformance suite against a real OpenViking server, plus commit -> background extraction -> recall."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import memcore
import pytest
from memcore.testing import BackendSuite, closed_port
from support.stack import Stack

from memcore_openviking import OpenVikingBackend


def make_backend(
    stack: Stack, tenant: dict[str, str], transport: httpx.BaseTransport | None = None
) -> OpenVikingBackend:
    return OpenVikingBackend(url=stack.url, api_key=stack.api_key, auth_mode="trusted", transport=transport, **tenant)


def _ok(response: httpx.Response) -> dict:
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok", (response.status_code, body)
    return body["result"]


def test_commit_extracts_a_memory_that_recall_finds(openviking: Stack, tenant: dict[str, str]) -> None:
    """Turns -> commit (returns at once with a task id) -> background extraction -> recall through memcore."""
    backend = make_backend(openviking, tenant)
    session = memcore.Session(id="trip/2026 ✈")  # a "/" in the id too
    word = f"zq{time.time_ns() % 10**9}"
    backend.memcore_open_session(session)
    backend.memcore_write(
        session,
        [
            memcore.Message(role="user", content=f"I keep my climbing shoes {word} in the blue locker."),
            memcore.Message(role="assistant", content="Noted."),
        ],
        key="k1",
        attempt=1,
    )
    started = time.monotonic()
    task_id = backend.memcore_commit(session, attempt=1)
    assert task_id and time.monotonic() - started < 5
    with httpx.Client(
        base_url=openviking.url,
        headers={
            "X-API-Key": openviking.api_key,
            "X-OpenViking-Account": tenant["account"],
            "X-OpenViking-User": tenant["user"],
        },
        timeout=30,
    ) as client:
        deadline = time.monotonic() + 180  # the extraction queue is shared with the suite's commits
        while (task := _ok(client.get(f"/api/v1/tasks/{task_id}")))["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, task
            time.sleep(0.1)
        assert task["status"] == "completed", task
        assert task["result"]["memories_extracted"], task
        _ok(client.post("/api/v1/system/wait", json={}))
    with memcore.Memory(backends=[backend], plugins=[], journal=False) as memory:
        found = memory.recall(f"where are the climbing shoes {word}", limit=5, timeout=10)
        in_session = memory.lifecycle(session.id).recall(f"climbing shoes {word}", limit=5, timeout=10)
    for got in (found, in_session):
        hits = [r for r in got if word in r.text]
        assert hits, [r.text for r in got]
        assert hits[0].metadata["uri"].startswith(f"viking://user/{tenant['user']}/memories/")
        assert hits[0].score is not None and hits[0].source == "openviking"


class TestOpenViking(BackendSuite):
    # Memories are extracted per user, not per session: search with session_id only adds the session's context to
    # the query, it does not filter (checked: a later session recalls an earlier one's memories).
    scoped_recall = False
    # Recall returns extracted memories (abstracts of events), not the stored turns.
    recall_is_verbatim = False
    # commit -> extraction -> searchable takes ~1.5 s on the fake LLM; notes are embedded in the background.
    index_deadline = 30.0

    @pytest.fixture
    def backend(self, openviking: Stack, tenant: dict[str, str]) -> Iterator[OpenVikingBackend]:
        yield make_backend(openviking, tenant)

    @pytest.fixture
    def http_backend(
        self, openviking: Stack, tenant: dict[str, str]
    ) -> Callable[[httpx.BaseTransport], OpenVikingBackend]:
        return lambda transport: make_backend(openviking, tenant, transport)

    @pytest.fixture
    def down_backend(self, openviking: Stack, tenant: dict[str, str]) -> Iterator[OpenVikingBackend]:
        with closed_port() as port:  # the same backend, its server down: nothing listens there
            yield OpenVikingBackend(
                url=f"http://127.0.0.1:{port}", api_key=openviking.api_key, auth_mode="trusted", **tenant
            )

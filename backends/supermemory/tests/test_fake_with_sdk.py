"""The fake Supermemory server driven by Supermemory's own SDK (``supermemory`` 5.0.1, generated from the v5 OpenAPI
description): every call below is the SDK's, so a route, a method or a body the fake does not take, or an answer the
SDK cannot read, fails here. The SDK reads answers leniently (``construct_type``), so every answer the fake gave is
then validated strictly against the SDK's own response models (``model_validate``: required fields, types, enums)."""

from __future__ import annotations

import typing
import uuid
from typing import Any

import httpx
import pydantic
import pytest

# supermemory 5.0.1 (the test extra): without it this module fails to import, a failure, never a skip
import supermemory
from memcore.http import FaultInjector, FaultTransport
from supermemory import Supermemory
from supermemory import types as sm
from support.fake_supermemory import FakeSupermemory

KEY = "sm_test_key"


@pytest.fixture(scope="module")
def authed() -> typing.Iterator[FakeSupermemory]:
    with FakeSupermemory(api_key=KEY, processing_delay=30.0) as fake:  # processed on settle()
        yield fake


def _client(fake: FakeSupermemory, transport: httpx.BaseTransport | None = None, **kw: Any) -> Supermemory:
    http = httpx.Client(transport=transport or httpx.HTTPTransport(), timeout=10)
    return Supermemory(api_key=kw.pop("api_key", KEY), base_url=fake.url, http_client=http, **kw)


def test_the_sdk_round_trip(authed: FakeSupermemory) -> None:
    client, ns = _client(authed), f"t{uuid.uuid4().hex[:10]}"
    added = client.add(ns, content="Alex prefers morning meetings.", id="pref-1", metadata={"source": "chat"})
    assert added.id == "pref-1" and added.status == "queued"
    client.add(ns, content="Release notes: the launch moved to May.", id="notes", task_type="superrag")
    batch = client.documents.batch_add(ns, documents=[{"content": "Alex drinks tea", "metadata": {"n": 1}}])
    assert batch.count == 1 and batch.failed == 0 and batch.results[0].status == "queued"

    assert client.documents.get(ns, "pref-1").system.status == "queued"  # processed in the background
    authed.settle()
    doc = client.documents.get(ns, "pref-1", include=["chunks", "memories"])
    assert doc.system.status == "done" and doc.content == "Alex prefers morning meetings."
    assert doc.metadata == {"source": "chat"}
    assert [c.content for c in doc.chunks or []] == ["Alex prefers morning meetings."]
    assert [m.memory for m in doc.memories or []] == ["Alex prefers morning meetings."]
    assert client.documents.get(ns, "notes", include="memories").memories == []  # superrag learns nothing

    found = client.search(ns, query="when does alex like meetings?", limit=5)
    assert found.results and found.results[0].similarity > 0
    assert {r.memory or r.chunk for r in found.results} >= {"Alex prefers morning meetings."}
    only = client.search(ns, query="launch", search_mode="chunks", limit=1)
    assert [r.chunk for r in only.results] == ["Release notes: the launch moved to May."]
    assert all(r.memory for r in client.search(ns, query="alex", search_mode="memories").results)
    filtered = client.search(ns, query="alex", filter={"field": "source", "operator": "eq", "value": "chat"})
    assert {r.metadata.get("source") for r in filtered.results} == {"chat"}
    both = client.search(
        ns,
        query="alex",
        filter={  # type: ignore[arg-type]
            "operator": "or",
            "operands": [
                {"field": "n", "operator": "gte", "value": 1},
                {"field": "source", "operator": "eq", "value": "CHAT", "caseSensitive": False},
            ],
        },
    )
    assert len({r.metadata.get("source", r.metadata.get("n")) for r in both.results}) == 2
    assert client.search(ns, query="zebra quantum", threshold=0.5).results == []

    page = client.list(ns, "documents", page=1, limit=2, sort="createdAt", order="asc", include={"content": True})
    assert [d.id for d in page.documents] == ["pref-1", "notes"] and page.chunks == [] and page.memories == []
    assert page.pagination.total_items == 3 and page.pagination.total_pages == 2
    assert page.documents[0].content == "Alex prefers morning meetings."
    chunks = client.list(ns, "chunks", limit=10, filter={"field": "source", "operator": "eq", "value": "chat"})
    assert [c.document_id for c in chunks.chunks] == ["pref-1"]
    memories = client.list(ns, "memories", limit=10)
    assert {m.memory for m in memories.memories} == {"Alex prefers morning meetings.", "Alex drinks tea"}

    updated = client.documents.update(ns, "pref-1", content="Alex prefers afternoon meetings now.")
    assert updated.status == "queued"
    authed.settle()
    again = client.documents.get(ns, "pref-1", include="memories")
    assert [m.memory for m in again.memories or []] == ["Alex prefers afternoon meetings now."]
    # re-adding under a known id: the same content is an unchanged duplicate, more content is processed as new
    assert client.add(ns, content="Alex prefers afternoon meetings now.", id="pref-1").status == "done"
    grown = "Alex prefers afternoon meetings now.\n\nAlex moved to Lisbon."
    assert client.add(ns, content=grown, id="pref-1").status == "queued"
    authed.settle()
    learned = {m.memory for m in client.documents.get(ns, "pref-1", include="memories").memories or []}
    assert learned == {"Alex prefers afternoon meetings now.", "Alex moved to Lisbon."}

    profile = client.profile(ns)
    assert {f.memory for f in profile.profile.dynamic} >= learned
    one = next(iter(client.list(ns, "memories", limit=1).memories))
    assert client.memories.get(ns, one.id).memory == one.memory
    forgot = client.memories.forget(ns, ids=[one.id, "no-such-memory"])
    assert forgot.count == 1 and [e.id for e in forgot.errors] == ["no-such-memory"]
    assert one.id not in {r.id for r in client.search(ns, query=one.memory, search_mode="memories").results}

    listed = client.namespaces.list(q=ns)
    assert [n.namespace for n in listed.namespaces] == [ns] and listed.namespaces[0].document_count == 3
    client.namespaces.update(ns, supporting_context="A test user")
    assert client.namespaces.get(ns).supporting_context == "A test user"

    removed = client.documents.delete(ns, ids=["notes", "missing"])
    assert removed.count == 1 and [e.id for e in removed.errors] == ["missing"]
    gone = client.namespaces.delete(ns)
    assert gone.status == "deleted" and gone.deleted_documents_count == 2
    assert ns not in authed.namespaces


def test_documented_errors_reach_the_sdk(authed: FakeSupermemory) -> None:
    client, ns = _client(authed, max_retries=0), f"t{uuid.uuid4().hex[:10]}"
    with pytest.raises(supermemory.AuthenticationError):
        _client(authed, api_key="wrong", max_retries=0).add(ns, content="x")
    with pytest.raises(supermemory.BadRequestError) as bad:
        client.add("not a namespace!", content="x")
    assert bad.value.status_code == 400
    with pytest.raises(supermemory.BadRequestError) as empty:
        client.add(ns, content="")
    assert empty.value.body["error"][0]["path"] == ["body", "content"]  # type: ignore[index]
    with pytest.raises(supermemory.BadRequestError):
        client.add(ns, content="x", metadata={"nested": {"no": 1}})  # type: ignore[dict-item]
    with pytest.raises(supermemory.BadRequestError):
        client.search(ns, query="x", limit=0)
    with pytest.raises(supermemory.BadRequestError):
        client.list(ns, "documents", limit=101)
    with pytest.raises(supermemory.BadRequestError):
        client.search(ns, query="x", filter={"field": "a", "operator": "near", "value": "b"})
    with pytest.raises(supermemory.NotFoundError):
        client.documents.get(ns, "no-such-document")
    with pytest.raises(supermemory.NotFoundError):
        client.namespaces.delete(f"{ns}-never-made")
    authed.throttle(1, retry_after=3)
    with pytest.raises(supermemory.RateLimitError) as limited:
        client.search(ns, query="x")
    assert limited.value.headers is not None and limited.value.headers.get("retry-after") == "3"


def test_faults_under_the_sdk(authed: FakeSupermemory) -> None:
    """memcore.http's fault transport under the SDK's own client: it retries 503s (and 429s) itself, and without
    retries the error is the SDK's InternalServerError."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    faults = FaultInjector()
    faults.add("status", status=503, times=2, retry_after=0)
    client = _client(authed, FaultTransport(httpx.HTTPTransport(), faults))
    client.add(ns, content="after two 503s", id="d")
    assert faults.faulted["status"] == 2
    assert client.documents.get(ns, "d").id == "d"
    authed.throttle(1, retry_after=0)
    assert client.search(ns, query="anything").results == []  # queued, not yet searchable; the 429 was retried
    strict = _client(authed, FaultTransport(httpx.HTTPTransport(), faults), max_retries=0)
    faults.add("status", status=503, times=1)
    with pytest.raises(supermemory.InternalServerError):
        strict.documents.get(ns, "d")


# -- the fake's answers against the SDK's models --------------------------------------------------------------------

#: (method, route shape) -> the SDK's model of a 2xx answer
MODELS: dict[tuple[str, str], Any] = {
    ("POST", "/ns/{namespace}/document"): sm.DocumentRef,
    ("POST", "/ns/{namespace}/document/batch"): sm.BatchAddResult,
    ("GET", "/ns/{namespace}/document/{id}"): sm.Document,
    ("PATCH", "/ns/{namespace}/document/{id}"): sm.DocumentRef,
    ("DELETE", "/ns/{namespace}/document"): sm.DeleteDocumentsResult,
    ("POST", "/ns/{namespace}/search"): sm.SearchResponse,
    ("POST", "/ns/{namespace}/list/documents"): sm.ListResponse,
    ("POST", "/ns/{namespace}/list/chunks"): sm.ListResponse,
    ("POST", "/ns/{namespace}/list/memories"): sm.ListResponse,
    ("POST", "/ns/{namespace}/profile"): sm.ProfileResponse,
    ("DELETE", "/ns/{namespace}/memories"): sm.ForgetResult,
    ("GET", "/ns/{namespace}/memories/{id}"): sm.MemoryDetails,
    ("GET", "/ns"): sm.NamespaceList,
    ("GET", "/ns/{namespace}"): sm.NamespaceDetails,
    ("PATCH", "/ns/{namespace}"): sm.NamespaceDetails,
    ("DELETE", "/ns/{namespace}"): sm.NamespaceDeleted_Deleted,
}


def test_every_answer_the_fake_gave_fits_the_sdk_models(
    authed: FakeSupermemory, fake_supermemory: FakeSupermemory
) -> None:
    """Every answer the fakes gave in this test session (the SDK's calls above and, run with the others,
    memcore-supermemory's): a 2xx on a known route validates against the SDK's model of it, an error against
    ErrorResponse (401, 404, 429) or ValidationErrorResponse (400)."""
    client = _client(authed)
    ns = f"t{uuid.uuid4().hex[:8]}"
    client.add(ns, content="hello")
    client.search(ns, query="hello")
    problems: list[str] = []
    for method, route, status, body in [*authed.responses, *fake_supermemory.responses]:
        if 200 <= status < 300:
            model = MODELS.get((method, route))
            if model is None:
                problems.append(f"{method} {route}: not a route the SDK's models describe")
                continue
        else:
            model = sm.ValidationErrorResponse if status == 400 else sm.ErrorResponse
        try:
            model.model_validate(body)
        except pydantic.ValidationError as exc:
            problems.append(f"{method} {route} {status}: {exc.errors()[:3]}")
    assert not problems, "\n".join(problems[:20])

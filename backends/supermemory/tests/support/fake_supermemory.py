"""A fake Supermemory server (the v5 API, ``/ns/{namespace}/...``) on loopback, served in the test process, written
from the routes, request bodies and response models of the vendor's SDK (``supermemory`` 5.0.1, generated from the
v5 OpenAPI description) and the v5 reference pages, for the endpoints that SDK and memcore-supermemory use.

- Documents: add (``POST /ns/{ns}/document``: a new id creates, a known id appends or diffs, an unchanged one is a
  duplicate), batch add, get (``include=chunks,memories``), update (``PATCH``: content replaced and reprocessed),
  delete by ids (with their chunks and memories).
- Search (``POST /ns/{ns}/search``: hybrid, memories or chunks; filter, threshold, limit), list
  (``POST /ns/{ns}/list/{documents|chunks|memories}``, paged, sorted, filtered), profile, forget memories by id.
- Namespaces: list (``GET /ns``, ``GET /namespaces``), get, update, delete (counts of what went).

Documents are processed after ``processing_delay`` seconds (checked lazily on every request, no threads):
``queued`` until then, then ``done`` with chunks (paragraphs, grouped up to 2000 characters) and, for
``taskType: memory``, memories (one per paragraph of what was new, a ``user:``/``note:`` prefix dropped, paragraphs of
the assistant and tools skipped: the fake learns about the user only). Search ranks by a similarity from 0 to 1: the
share of the query's words the text holds, or the cosine of hashed bags of words if higher. Errors are the
description's: ``400`` with ``{"success": false, "error": [{"message", "path"}]}`` for input that does not validate,
``{"error", "details"}`` for 401, 404 and 429 (``throttle``). What the fake had to guess is listed in the README.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NAMESPACE = re.compile(r"[a-zA-Z0-9_:-]{1,100}")
STATUSES = ("unknown", "queued", "extracting", "chunking", "embedding", "indexing", "done", "failed")
CHUNK_SIZE = 2000
LIST_MAX = 100  #: documented: list limit at most 100, ids per delete 1 to 100
SEARCH_MAX = 100  #: guessed: the reference gives no maximum for the search's limit
BATCH_MAX = 600  #: documented: a batch add takes up to 600 documents
STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it", "of", "on", "or"}
    | {"that", "the", "to", "was", "were", "will", "with", "user", "assistant", "note"}
)
ROLE_PREFIX = re.compile(r"^(user|note|assistant|tool|system|developer): ", re.IGNORECASE)


class HTTPError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status, self.body, self.headers = status, body, headers or {}


def invalid(path: list[Any], message: str, data: Any = None) -> HTTPError:
    return HTTPError(400, {"success": False, "error": [{"message": message, "path": path}], "data": data})


def not_found(what: str) -> HTTPError:
    return HTTPError(404, {"error": f"{what} not found"})


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def lexemes(text: str) -> list[str]:
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS]
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def similarity(query: str, text: str) -> float:
    q, t = lexemes(query), lexemes(text)
    if not q or not t:
        return 0.0
    share = len(set(q) & set(t)) / len(set(q))
    a, b = Counter(hash_word(w) for w in q), Counter(hash_word(w) for w in t)
    dot = sum(a[k] * b[k] for k in a)
    cos = dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))
    return round(max(share, cos), 6)


def hash_word(word: str, dim: int = 512) -> int:
    return int(hashlib.sha256(word.encode()).hexdigest(), 16) % dim


def check_metadata(value: Any, path: list[Any]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(path, "Expected object")
    for key, item in value.items():
        ok = isinstance(item, (str, bool, int, float)) or (
            isinstance(item, list) and all(isinstance(x, str) for x in item)
        )
        if not ok:
            raise invalid([*path, key], "Metadata values must be strings, numbers, booleans or arrays of strings")
    return dict(value)


def check_str(body: dict[str, Any], key: str, path: list[Any], required: bool = False, most: int = 0) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise invalid([*path, key], "Required")
        return None
    if not isinstance(value, str):
        raise invalid([*path, key], "Expected string")
    if required and not value:
        raise invalid([*path, key], "String must contain at least 1 character(s)")
    if most and len(value) > most:
        raise invalid([*path, key], f"String must contain at most {most} character(s)")
    return value


def check_enum(body: dict[str, Any], key: str, allowed: tuple[str, ...], path: list[Any]) -> str | None:
    value = body.get(key)
    if value is not None and value not in allowed:
        raise invalid([*path, key], f"Invalid enum value. Expected {' | '.join(map(repr, allowed))}")
    return value


def matches(metadata: dict[str, Any], expr: Any, path: list[Any]) -> bool:
    """The v5 filter expression on one record's metadata."""
    if expr is None:
        return True
    if not isinstance(expr, dict):
        raise invalid(path, "Expected object")
    op = expr.get("operator")
    if op in ("and", "or"):
        operands = expr.get("operands")
        if not isinstance(operands, list) or not operands:
            raise invalid([*path, "operands"], "Array must contain at least 1 element(s)")
        parts = [matches(metadata, o, [*path, "operands", i]) for i, o in enumerate(operands)]
        return all(parts) if op == "and" else any(parts)
    field, want = expr.get("field"), expr.get("value")
    if not isinstance(field, str) or not field:
        raise invalid([*path, "field"], "Required")
    have = metadata.get(field)
    case = expr.get("caseSensitive", True)
    if op in ("eq", "neq"):
        if isinstance(want, str):
            same = isinstance(have, str) and (have == want if case else have.lower() == want.lower())
        elif isinstance(want, (bool, int, float)):
            same = type(have) is type(want) or (
                isinstance(have, (int, float)) and isinstance(want, (int, float)) and not isinstance(have, bool)
            )
            same = same and have == want
        else:
            raise invalid([*path, "value"], "Expected string, number or boolean")
        return same if op == "eq" else not same
    if op in ("gt", "gte", "lt", "lte"):
        if not isinstance(want, (int, float)) or isinstance(want, bool):
            raise invalid([*path, "value"], "Expected number")
        if not isinstance(have, (int, float)) or isinstance(have, bool):
            return False
        return {"gt": have > want, "gte": have >= want, "lt": have < want, "lte": have <= want}[op]
    if op in ("contains", "notContains"):
        if not isinstance(want, str):
            raise invalid([*path, "value"], "Expected string")
        inside = isinstance(have, str) and (want in have if case else want.lower() in have.lower())
        return inside if op == "contains" else not inside
    if op in ("arrayContains", "arrayNotContains"):
        if not isinstance(want, str):
            raise invalid([*path, "value"], "Expected string")
        inside = isinstance(have, list) and want in have
        return inside if op == "arrayContains" else not inside
    raise invalid([*path, "operator"], f"Invalid filter operator: {op!r}")


def chunks_of(text: str) -> list[str]:
    out: list[str] = []
    for para in (p for p in text.split("\n\n") if p.strip()):
        if out and len(out[-1]) + 2 + len(para) <= CHUNK_SIZE:
            out[-1] += "\n\n" + para
        else:
            out.append(para)
    return out or [text]


def learned(text: str) -> list[str]:
    """What the fake "learns" from new content: one memory per paragraph the user (or a note) said."""
    out = []
    for para in (p.strip() for p in text.split("\n\n")):
        if not para or re.match(r"^(assistant|tool|system|developer): ", para, re.IGNORECASE):
            continue
        out.append(ROLE_PREFIX.sub("", para, count=1))
    return out


class FakeSupermemory:
    """``with FakeSupermemory() as fake: fake.url``; ``fake.namespaces`` (the state), ``fake.calls`` (per route),
    ``fake.responses`` (method, route, status, body of every answer, for the model checks). ``api_key``: require
    ``Authorization: Bearer <key>`` (401 otherwise). ``processing_delay``: seconds before an added document is
    chunked and learned from. ``throttle(n)``: the next n requests get 429 with Retry-After."""

    def __init__(self, api_key: str | None = None, processing_delay: float = 0.02) -> None:
        self.api_key, self.processing_delay = api_key, processing_delay
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.responses: list[tuple[str, str, int, Any]] = []
        self.lock = threading.RLock()
        self._throttled = 0
        self._queued: list[tuple[dict[str, Any], dict[str, Any]]] = []  #: (namespace, document) not yet processed
        self._retry_after = "0"
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-supermemory", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeSupermemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def throttle(self, times: int, retry_after: float = 0) -> None:
        with self.lock:
            self._throttled, self._retry_after = times, str(int(retry_after))

    def settle(self) -> None:
        """Finish processing every document now."""
        with self.lock:
            for ns in self.namespaces.values():
                for doc in ns["documents"].values():
                    doc["ready_at"] = min(doc["ready_at"], time.monotonic())
            self._process()

    # -- state -------------------------------------------------------------------------------------------------------

    def ns(self, name: str, create: bool = False) -> dict[str, Any] | None:
        found = self.namespaces.get(name)
        if found is None and create:
            stamp = now()
            found = self.namespaces[name] = {
                "id": uuid.uuid4().hex,
                "documents": {},
                "memories": {},
                "supportingContext": None,
                "createdAt": stamp,
                "updatedAt": stamp,
                "seq": 0,
            }
        return found

    def _process(self) -> None:
        """Documents whose time has come: chunked, then (``taskType: memory``) learned from."""
        clock = time.monotonic()
        due, self._queued = (
            [q for q in self._queued if q[1]["ready_at"] <= clock],
            [q for q in self._queued if q[1]["ready_at"] > clock],
        )
        for ns, doc in due:
            if doc["status"] == "done" or ns["documents"].get(doc["id"]) is not doc:
                continue
            doc["chunks"] = [
                {"id": uuid.uuid4().hex, "position": i, "content": text, "createdAt": now()}
                for i, text in enumerate(chunks_of(doc["content"]))
            ]
            if doc["taskType"] == "memory":
                known = {m["memory"] for m in ns["memories"].values() if m["documentId"] == doc["id"]}
                for text in learned(doc.pop("pending", doc["content"])):
                    if text in known:
                        continue
                    known.add(text)
                    memory_id, stamp = uuid.uuid4().hex, now()
                    ns["memories"][memory_id] = {
                        "id": memory_id,
                        "memory": text,
                        "documentId": doc["id"],
                        "isForgotten": False,
                        "createdAt": stamp,
                        "updatedAt": stamp,
                    }
            doc.pop("pending", None)
            doc["status"] = "done"
            doc["published"] = doc["content"]
            doc["updatedAt"] = now()

    def add(self, name: str, body: dict[str, Any], path: list[Any]) -> dict[str, Any]:
        content = check_str(body, "content", path, required=True)
        doc_id = check_str(body, "id", path, most=255)
        if doc_id is not None and not doc_id:
            raise invalid([*path, "id"], "String must contain at least 1 character(s)")
        check_str(body, "supportingContext", path, most=1500)
        check_str(body, "date", path)
        metadata = check_metadata(body.get("metadata"), [*path, "metadata"])
        group = check_metadata(body.get("group"), [*path, "group"])
        task = check_enum(body, "taskType", ("memory", "superrag"), path) or "memory"
        check_enum(body, "dreaming", ("dynamic", "instant"), path)
        assert content is not None
        ns = self.ns(name, create=True)
        assert ns is not None
        doc = ns["documents"].get(doc_id) if doc_id else None
        if doc is None:
            ns["seq"] += 1
            stamp = now()
            doc = {
                "id": doc_id or uuid.uuid4().hex,
                "content": content,
                "metadata": metadata or {},
                "group": group or {},
                "taskType": task,
                "status": "queued",
                "createdAt": stamp,
                "updatedAt": stamp,
                "seq": ns["seq"],
                "chunks": [],
                "published": None,
                "ready_at": time.monotonic() + self.processing_delay,
            }
            ns["documents"][doc["id"]] = doc
            self._queued.append((ns, doc))
            ns["updatedAt"] = stamp
            return {"id": doc["id"], "status": "queued"}
        if metadata is not None:
            doc["metadata"] = metadata
        if content == doc["content"] or content in doc["content"]:
            return {"id": doc["id"], "status": doc["status"]}  # an unchanged duplicate
        new = content[len(doc["content"]) :] if content.startswith(doc["content"]) else content
        doc["content"] = content if content.startswith(doc["content"]) else doc["content"] + "\n\n" + content
        doc["pending"] = doc.get("pending", "") + "\n\n" + new
        self._requeue(ns, doc)
        return {"id": doc["id"], "status": "queued"}

    def _requeue(self, ns: dict[str, Any], doc: dict[str, Any]) -> None:
        doc["status"], doc["updatedAt"] = "queued", now()
        doc["ready_at"] = time.monotonic() + self.processing_delay
        self._queued.append((ns, doc))

    def update(self, name: str, doc_id: str, body: dict[str, Any]) -> dict[str, Any]:
        content = check_str(body, "content", ["body"])
        if content is not None and not content:
            raise invalid(["body", "content"], "String must contain at least 1 character(s)")
        check_str(body, "supportingContext", ["body"], most=1500)
        metadata = check_metadata(body.get("metadata"), ["body", "metadata"])
        group = check_metadata(body.get("group"), ["body", "group"])
        task = check_enum(body, "taskType", ("memory", "superrag"), ["body"])
        check_enum(body, "dreaming", ("dynamic", "instant"), ["body"])
        doc = self.document(name, doc_id)
        if metadata is not None:
            doc["metadata"] = metadata
        if group is not None:
            doc["group"] = group
        if task is not None:
            doc["taskType"] = task
        if content is None:
            return {"id": doc["id"], "status": doc["status"]}
        ns = self.namespaces[name]
        for memory_id in [k for k, m in ns["memories"].items() if m["documentId"] == doc["id"]]:
            del ns["memories"][memory_id]
        doc["content"], doc["pending"] = content, content
        self._requeue(ns, doc)
        return {"id": doc["id"], "status": "queued"}

    def document(self, name: str, doc_id: str) -> dict[str, Any]:
        ns = self.ns(name)
        doc: dict[str, Any] | None = ns["documents"].get(doc_id) if ns else None
        if doc is None:
            raise not_found("Document")
        return doc

    def delete_documents(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= LIST_MAX:
            raise invalid(["body", "ids"], "Array must contain between 1 and 100 element(s)")
        for i, doc_id in enumerate(ids):
            if not isinstance(doc_id, str) or not 1 <= len(doc_id) <= 255:
                raise invalid(["body", "ids", i], "String must contain between 1 and 255 character(s)")
        ns = self.ns(name)
        count, errors = 0, []
        for doc_id in ids:
            if ns is None or doc_id not in ns["documents"]:
                errors.append({"id": doc_id, "error": "Document not found"})
                continue
            del ns["documents"][doc_id]
            for memory_id in [k for k, m in ns["memories"].items() if m["documentId"] == doc_id]:
                del ns["memories"][memory_id]
            count += 1
        return {"count": count, "errors": errors}

    def search(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        query = check_str(body, "query", ["body"], required=True)
        mode = check_enum(body, "searchMode", ("hybrid", "memories", "chunks"), ["body"]) or "hybrid"
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= SEARCH_MAX:
            raise invalid(["body", "limit"], f"Number must be between 1 and {SEARCH_MAX}")
        threshold = body.get("threshold", 0.0)
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
            raise invalid(["body", "threshold"], "Number must be between 0 and 1")
        check_enum(body, "rerank", ("none", "order", "aggregate"), ["body"])
        flt, include = body.get("filter"), body.get("include") or {}
        matches({}, flt, ["body", "filter"])  # refused even when nothing is there to filter
        assert query is not None
        ns = self.ns(name)
        scored: list[tuple[float, int, dict[str, Any]]] = []
        for doc in (ns or {}).get("documents", {}).values():
            if doc["status"] != "done" or not matches(doc["metadata"], flt, ["body", "filter"]):
                continue
            if mode in ("hybrid", "chunks"):
                for chunk in doc["chunks"]:
                    score = similarity(query, chunk["content"])
                    result = {"id": chunk["id"], "chunk": chunk["content"], "metadata": dict(doc["metadata"])}
                    result.update(isLatest=True, isInference=False, system={"updatedAt": doc["updatedAt"]})
                    scored.append((score, doc["seq"], result))
            if mode in ("hybrid", "memories"):
                for memory in (ns or {}).get("memories", {}).values():
                    if memory["documentId"] != doc["id"] or (memory["isForgotten"] and not include.get("forgotten")):
                        continue
                    score = similarity(query, memory["memory"])
                    result = {"id": memory["id"], "memory": memory["memory"], "metadata": dict(doc["metadata"])}
                    result.update(isLatest=not memory["isForgotten"], isInference=False)
                    result["system"] = {"updatedAt": memory["updatedAt"], "createdAt": memory["createdAt"]}
                    scored.append((score, doc["seq"], result))
        scored.sort(key=lambda s: (-s[0], -s[1]))
        results = []
        for score, _, result in scored:
            if score < threshold:
                continue
            result["similarity"] = score
            results.append(result)
            if len(results) == limit:
                break
        return {"results": results, "searchTime": round((time.perf_counter() - started) * 1000, 3)}

    def listing(self, name: str, kind: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if kind not in ("documents", "chunks", "memories"):
            raise invalid(["type"], "Invalid enum value. Expected 'documents' | 'chunks' | 'memories'")
        try:
            page, limit = int(query.get("page", 1)), int(query.get("limit", 10))
        except ValueError:
            raise invalid(["query", "page"], "Expected number, received nan") from None
        if page < 1 or not 1 <= limit <= LIST_MAX:
            raise invalid(["query", "limit"], "Number must be between 1 and 100")
        sort, order = query.get("sort", "createdAt"), query.get("order", "desc")
        if sort not in ("createdAt", "updatedAt", "position") or order not in ("asc", "desc"):
            raise invalid(["query", "sort"], "Invalid enum value")
        flt, include = body.get("filter"), body.get("include") or {}
        matches({}, flt, ["body", "filter"])
        ns = self.ns(name) or {"documents": {}, "memories": {}}
        docs = [d for d in ns["documents"].values() if matches(d["metadata"], flt, ["body", "filter"])]
        items: list[tuple[Any, dict[str, Any]]] = []
        if kind == "documents":
            for d in docs:
                item = public_document(d, list_item=True)
                if include.get("content"):
                    item["content"] = d["published"]
                if include.get("memoryCount"):
                    item["system"]["memoryCount"] = sum(
                        1 for m in ns["memories"].values() if m["documentId"] == d["id"]
                    )
                items.append(((d[sort] if sort != "position" else d["seq"], d["seq"]), item))
        elif kind == "chunks":
            for d in docs:
                for c in d["chunks"]:
                    item = public_chunk(d, c)
                    item["documentId"] = d["id"]
                    items.append(((c["createdAt"] if sort != "position" else c["position"], d["seq"]), item))
        else:
            by_doc = {d["id"]: d for d in docs}
            for m in ns["memories"].values():
                if m["documentId"] in by_doc and (include.get("forgotten") or not m["isForgotten"]):
                    items.append(
                        ((m.get(sort, m["createdAt"]), by_doc[m["documentId"]]["seq"]), public_memory(m, by_doc))
                    )
        items.sort(key=lambda i: i[0], reverse=order == "desc")
        chosen = [item for _, item in items[(page - 1) * limit : page * limit]]
        return {
            "documents": chosen if kind == "documents" else [],
            "chunks": chosen if kind == "chunks" else [],
            "memories": chosen if kind == "memories" else [],
            "pagination": {
                "currentPage": page,
                "limit": limit,
                "totalItems": len(items),
                "totalPages": -(-len(items) // limit),
            },
        }

    def forget(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= LIST_MAX:
            raise invalid(["body", "ids"], "Array must contain between 1 and 100 element(s)")
        ns = self.ns(name)
        count, errors, found = 0, [], []
        for memory_id in ids:
            memory = (ns or {}).get("memories", {}).get(memory_id)
            if memory is None or memory["isForgotten"]:
                errors.append({"id": str(memory_id), "error": "Memory not found"})
                continue
            memory["isForgotten"], memory["updatedAt"] = True, now()
            found.append({"id": memory["id"], "memory": memory["memory"]})
            count += 1
        return {"count": count, "errors": errors, "matches": found}

    def delete_namespace(self, name: str, query: dict[str, str]) -> dict[str, Any]:
        ns = self.ns(name)
        if ns is None:
            raise not_found("Namespace")
        move_to = query.get("moveTo")
        if move_to:
            if not NAMESPACE.fullmatch(move_to):
                raise invalid(["query", "moveTo"], "Invalid namespace")
            target = self.ns(move_to, create=True)
            assert target is not None
            target["documents"].update(ns["documents"])
            target["memories"].update(ns["memories"])
            del self.namespaces[name]
            return {"status": "queued", "operationId": uuid.uuid4().hex, "namespace": name, "moveTo": move_to}
        del self.namespaces[name]
        live = sum(1 for m in ns["memories"].values() if not m["isForgotten"])
        return {
            "status": "deleted",
            "namespace": name,
            "deletedDocumentsCount": len(ns["documents"]),
            "deletedMemoriesCount": live,
        }


def public_document(doc: dict[str, Any], list_item: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": doc["id"],
        "title": None,
        "type": "text",
        "summary": None,
        "metadata": dict(doc["metadata"]),
        "system": {
            "status": doc["status"],
            "dreamingStatus": "done" if doc["status"] == "done" else "dreaming",
            "createdAt": doc["createdAt"],
            "updatedAt": doc["updatedAt"],
        },
    }
    if list_item:
        out["url"] = None
    else:
        out["content"] = doc["published"]
    return out


def public_chunk(doc: dict[str, Any], chunk: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": chunk["id"],
        "position": chunk["position"],
        "content": chunk["content"],
        "type": "text",
        "metadata": dict(doc["metadata"]),
        "system": {"createdAt": chunk["createdAt"]},
    }


def public_memory(memory: dict[str, Any], docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    doc = docs.get(memory["documentId"])
    return {
        "id": memory["id"],
        "memory": memory["memory"],
        "metadata": dict(doc["metadata"]) if doc else {},
        "isStatic": False,
        "isInference": False,
        "isLatest": not memory["isForgotten"],
        "isForgotten": memory["isForgotten"],
        "version": 1,
        "system": {"createdAt": memory["createdAt"], "updatedAt": memory["updatedAt"]},
    }


def _handler(fake: FakeSupermemory) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall between

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, method: str, route: str, code: int, body: Any, headers: dict[str, str]) -> None:
            raw = json.dumps(body, ensure_ascii=False).encode()
            with fake.lock:
                fake.responses.append((method, route, code, body))
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(raw)

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            seg = [unquote(s) for s in split.path.strip("/").split("/")] if split.path.strip("/") else []
            parsed = parse_qs(split.query)
            query = {k: ",".join(v) if k == "include" else v[-1] for k, v in parsed.items()}  # repeated or a,b
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            route = "/" + "/".join(seg)
            try:
                if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    raise HTTPError(401, {"error": "Unauthorized", "details": "Invalid or missing API key"})
                with fake.lock:
                    if fake._throttled > 0:
                        fake._throttled -= 1
                        raise HTTPError(429, {"error": "Too many requests"}, {"Retry-After": fake._retry_after})
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    raise invalid([], "Malformed JSON in request body") from None
                if not isinstance(body, dict):
                    raise invalid([], "Expected object")
                with fake.lock:
                    fake._process()
                    code, answer, route = self._route(method, seg, body, query)
                    fake.calls[f"{method} {route}"] += 1
                self._send(method, route, code, answer, {})
            except HTTPError as exc:
                self._send(method, route, exc.status, exc.body, exc.headers)

        def _route(self, method: str, seg: list[str], body: dict[str, Any], query: dict[str, str]) -> Any:
            if seg in (["ns"], ["namespaces"]) and method == "GET":
                return 200, self._namespaces(query), "/ns"
            if len(seg) < 2 or seg[0] != "ns":
                raise HTTPError(404, {"error": "Not found"})
            name, rest = seg[1], seg[2:]
            if not NAMESPACE.fullmatch(name):
                raise invalid(["namespace"], "String must match ^[a-zA-Z0-9_:-]+$ and contain at most 100 characters")
            shape = "/ns/{namespace}" + "".join(f"/{r}" for r in rest)
            if len(rest) == 2 and rest[0] in ("document", "memories") and rest[1] not in ("batch", "file", "semantic"):
                shape = f"/ns/{{namespace}}/{rest[0]}/{{id}}"
            if rest == [] and method == "GET":
                ns = fake.ns(name)
                if ns is None:
                    raise not_found("Namespace")
                system = {"createdAt": ns["createdAt"], "updatedAt": ns["updatedAt"]}
                return 200, {"namespace": name, "supportingContext": ns["supportingContext"], "system": system}, shape
            if rest == [] and method == "PATCH":
                ns = fake.ns(name)
                if ns is None:
                    raise not_found("Namespace")
                ns["supportingContext"] = check_str(body, "supportingContext", ["body"], most=1500)
                ns["updatedAt"] = now()
                system = {"createdAt": ns["createdAt"], "updatedAt": ns["updatedAt"]}
                return 200, {"namespace": name, "supportingContext": ns["supportingContext"], "system": system}, shape
            if rest == [] and method == "DELETE":
                return 200, fake.delete_namespace(name, query), shape
            if rest == ["document"] and method == "POST":
                return 200, fake.add(name, body, ["body"]), shape
            if rest == ["document"] and method == "DELETE":
                return 200, fake.delete_documents(name, body), shape
            if rest == ["document", "batch"] and method == "POST":
                return 200, self._batch(name, body), shape
            if len(rest) == 2 and rest[0] == "document" and method == "GET":
                doc = fake.document(name, rest[1])
                out = public_document(doc)
                include = set(filter(None, query.get("include", "").split(",")))
                ns = fake.namespaces[name]
                if "chunks" in include:
                    out["chunks"] = [public_chunk(doc, c) for c in doc["chunks"]]
                if "memories" in include:
                    mine = [m for m in ns["memories"].values() if m["documentId"] == doc["id"] and not m["isForgotten"]]
                    out["memories"] = [public_memory(m, {doc["id"]: doc}) for m in mine]
                return 200, out, shape
            if len(rest) == 2 and rest[0] == "document" and method == "PATCH":
                return 200, fake.update(name, rest[1], body), shape
            if rest == ["search"] and method == "POST":
                return 200, fake.search(name, body), shape
            if len(rest) == 2 and rest[0] == "list" and method == "POST":
                return 200, fake.listing(name, rest[1], query, body), "/ns/{namespace}/list/" + rest[1]
            if rest == ["profile"] and method == "POST":
                ns = fake.ns(name) or {"memories": {}}
                facts = [
                    {"id": m["id"], "memory": m["memory"]} for m in ns["memories"].values() if not m["isForgotten"]
                ]
                return 200, {"profile": {"static": [], "dynamic": facts[-20:], "buckets": {}}}, shape
            if rest == ["memories"] and method == "DELETE":
                return 200, fake.forget(name, body), shape
            if len(rest) == 2 and rest[0] == "memories" and method == "GET":
                ns = fake.ns(name)
                memory = (ns or {}).get("memories", {}).get(rest[1])
                if memory is None:
                    raise not_found("Memory")
                assert ns is not None
                return 200, public_memory(memory, ns["documents"]), shape
            raise HTTPError(404, {"error": "Not found"})

        @staticmethod
        def _batch(name: str, body: dict[str, Any]) -> dict[str, Any]:
            documents = body.get("documents")
            if not isinstance(documents, list) or not 1 <= len(documents) <= BATCH_MAX:
                raise invalid(["body", "documents"], f"Array must contain between 1 and {BATCH_MAX} element(s)")
            results = []
            for i, one in enumerate(documents):
                if not isinstance(one, dict):
                    raise invalid(["body", "documents", i], "Expected object")
                extra = {"taskType": body.get("taskType"), "dreaming": body.get("dreaming")}
                results.append(fake.add(name, {**one, **extra}, ["body", "documents", i]))
            return {"results": results, "count": len(results), "failed": 0}

        @staticmethod
        def _namespaces(query: dict[str, str]) -> dict[str, Any]:
            page, limit = int(query.get("page", 1)), int(query.get("limit", 10))
            q = query.get("q", "")
            names = sorted((n for n in fake.namespaces if q in n), key=lambda n: fake.namespaces[n]["createdAt"])
            names.reverse()  # newest first
            rows = [
                {
                    "id": fake.namespaces[n]["id"],
                    "namespace": n,
                    "documentCount": len(fake.namespaces[n]["documents"]),
                    "memoryCount": sum(1 for m in fake.namespaces[n]["memories"].values() if not m["isForgotten"]),
                    "description": fake.namespaces[n]["supportingContext"],
                    "system": {
                        "createdAt": fake.namespaces[n]["createdAt"],
                        "updatedAt": fake.namespaces[n]["updatedAt"],
                    },
                }
                for n in names[(page - 1) * limit : page * limit]
            ]
            pagination = {
                "currentPage": page,
                "limit": limit,
                "totalItems": len(names),
                "totalPages": -(-len(names) // limit),
            }
            return {"namespaces": rows, "pagination": pagination}

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler

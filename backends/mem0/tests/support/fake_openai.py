"""A deterministic OpenAI-compatible endpoint on loopback, served in the test process (no model, no network).

``POST /v1/embeddings``: a hashed bag of words (``DIM`` floats, L2-normalised): texts that share words are near.
``POST /v1/chat/completions``: mem0's extraction prompt (the one with a ``## New Messages`` section) gets
``{"memory": [{"text": "Remembered: <line>"}]}``, one fact per first-person ``user: I ...`` line of the new messages
(the suite's turns are not first-person, so its recall sees the stored turns alone); anything else gets
``{"memory": []}``. Every request is counted by path in ``FakeOpenAI.calls``; the new messages of each extraction
prompt are kept in ``FakeOpenAI.extractions``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIM = 2048  # wide: a word rarely shares a place with another, so a one-word query ranks its own text first
HASHES = 4
MODEL = "fake-model"
FACT_PREFIX = "Remembered: "


def embed(text: str) -> list[float]:
    """A hashed bag of words: each word adds +-1 in ``HASHES`` of ``DIM`` places, so two different words rarely
    share more than one place, and a text holding the query's word outranks any that merely collide with it."""
    vec = [0.0] * DIM
    for token in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(token.encode(), digest_size=4 * HASHES).digest()
        for k in range(HASHES):
            part = digest[4 * k : 4 * k + 4]
            vec[int.from_bytes(part[:3], "little") % DIM] += 1.0 if part[3] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0:
        return [1.0] + [0.0] * (DIM - 1)
    return [v / norm for v in vec]


def new_messages(prompt: str) -> list[str] | None:
    """The lines of the ``## New Messages`` section of mem0's extraction prompt (``None``: not that prompt)."""
    start = prompt.rfind("## New Messages\n")  # the last one: the system prompt names the section too
    if start < 0:
        return None
    section = prompt[start + len("## New Messages\n") :].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.strip()]


def extract(lines: list[str]) -> list[str]:
    """The facts the fake LLM extracts: one per first-person user line."""
    return [FACT_PREFIX + line[len("user: ") :].strip() for line in lines if line.startswith("user: I ")]


class FakeOpenAI:
    """``with FakeOpenAI() as fake: fake.url`` is the base URL (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.extractions: list[list[str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall between

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = json.loads(raw or b"{}")
            path = self.path.split("?")[0].rstrip("/")
            fake.calls[path.rsplit("/", 1)[-1]] += 1
            if path.endswith("/embeddings"):
                given = request.get("input", "")
                texts = given if isinstance(given, list) else [given]
                data = [{"object": "embedding", "index": i, "embedding": embed(str(t))} for i, t in enumerate(texts)]
                usage = {"prompt_tokens": 1, "total_tokens": 1}
                return self._send(200, {"object": "list", "data": data, "model": MODEL, "usage": usage})
            if path.endswith("/chat/completions"):
                prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages") or ())
                lines = new_messages(prompt)
                if lines is not None:
                    fake.extractions.append(lines)
                content = json.dumps({"memory": [{"text": fact} for fact in extract(lines or [])]})
                choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": MODEL}
                return self._send(200, {**body, "choices": [choice], "usage": usage})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    return Handler

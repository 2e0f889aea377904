"""A tiny deterministic OpenAI-compatible endpoint for offline Hindsight tests.

    python fake_openai.py PORT [LOGFILE]

POST /v1/embeddings        hashed bag-of-words vectors (DIM floats, L2-normalised)
POST /v1/chat/completions  a deterministic JSON answer for Hindsight's prompts (see ``answer``)
GET  /v1/models            one model

With LOGFILE, every request body is appended to it as one JSON line (to see what Hindsight sends).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIM = 64
MODEL = "fake-model"
LOG: str | None = None


def embed(text: str) -> list[float]:
    vec = [0.0] * DIM
    for token in re.findall(r"\w+", (text or "").lower()):
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        vec[int.from_bytes(digest[:4], "little") % DIM] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0:
        vec[0], norm = 1.0, 1.0
    return [v / norm for v in vec]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _said(prompt: str) -> list[str]:
    """What a retain prompt's chunk says: the user messages of a JSON conversation, else the whole text (a note)."""
    chunk = prompt.partition("\nContent:\n")[2].strip()
    try:
        turns = json.loads(chunk)
    except ValueError:
        return [chunk] if chunk else []
    if isinstance(turns, list) and all(isinstance(t, dict) for t in turns):
        return [str(t["content"]) for t in turns if t.get("role") == "user" and t.get("content")]
    return [chunk]


def answer(messages: list[dict[str, Any]]) -> str:
    """Fact extraction (its system prompt asks for ``facts``): one fact per user message of the chunk, its text
    verbatim. Consolidation: one observation per new fact. Anything else: an empty JSON object."""
    system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    if '"facts"' in system:
        chunk = _text(next((m.get("content") for m in messages if m.get("role") == "user"), ""))
        facts = [
            {
                "what": said,
                "when": "N/A",
                "where": "N/A",
                "who": "N/A",
                "why": "N/A",
                "fact_kind": "conversation",
                "fact_type": "world",
                "entities": [],
            }
            for said in _said(chunk)
        ]
        return json.dumps({"facts": facts}, ensure_ascii=False)
    if "memory consolidation system" in system:  # one observation per new fact: "Observed: <fact>"
        prompt = _text(messages[-1].get("content")).partition("### New facts")[2].partition("### Existing")[0]
        new = re.findall(r"^\[([0-9a-f-]{36})\] (.*?)(?: \(mentioned_at=[^)]*\))?$", prompt, re.M)
        creates = [{"text": f"Observed: {text}", "source_fact_ids": [fact]} for fact, text in new]
        return json.dumps({"creates": creates, "updates": [], "deletes": []}, ensure_ascii=False)
    return "{}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            return self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._send(400, {"error": {"message": "bad json"}})
        if LOG:
            with open(LOG, "a") as log:
                log.write(json.dumps({"t": time.time(), "path": self.path, "body": request}) + "\n")
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/embeddings"):
            given = request.get("input", "")
            items = given if isinstance(given, list) else [given]
            data = [{"object": "embedding", "index": i, "embedding": embed(str(t))} for i, t in enumerate(items)]
            usage = {"prompt_tokens": 1, "total_tokens": 1}
            return self._send(200, {"object": "list", "data": data, "model": MODEL, "usage": usage})
        if path.endswith("/chat/completions"):
            content = answer(request.get("messages") or [])
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
            usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": MODEL}
            return self._send(200, {**body, "choices": [choice], "usage": usage})
        self._send(404, {"error": {"message": f"no route {self.path}"}})


def main() -> None:
    global LOG
    LOG = sys.argv[2] if len(sys.argv) > 2 else None
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()


if __name__ == "__main__":
    main()

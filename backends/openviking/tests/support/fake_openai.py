"""Tiny deterministic OpenAI-compatible server for offline OpenViking tests.

    python fake_openai.py PORT [LOGFILE]

POST /v1/embeddings        -> hashed bag-of-words vectors (DIM floats, L2-normalised)
POST /v1/chat/completions  -> deterministic JSON answer (see _answer)
GET  /v1/models            -> one model

Every request body is appended (one JSON line) to LOGFILE if given, so you can
see exactly what OpenViking sends.
"""

import hashlib
import json
import math
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIM = 256  # wide enough that two words rarely share a dimension: a token query finds its own note first
MODEL = "fake-model"
LOG = None


def embed(text: str) -> list:
    vec = [0.0] * DIM
    for tok in re.findall(r"\w+", (text or "").lower()):
        h = hashlib.blake2b(tok.encode(), digest_size=8).digest()
        idx = int.from_bytes(h[:4], "little") % DIM
        sign = 1.0 if h[4] & 1 else -1.0
        vec[idx] += sign
    n = math.sqrt(sum(v * v for v in vec))
    if n == 0:
        vec[0] = 1.0
        n = 1.0
    return [v / n for v in vec]


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _answer(messages: list) -> str:
    """Return a deterministic answer. Dispatch on the prompt text."""
    prompt = "\n".join(_text_of(m.get("content")) for m in messages)
    from fake_answers import answer  # beside this file; kept separate so it can be tuned

    return answer(prompt, messages)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, code: int, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            return self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return self._send(400, {"error": {"message": "bad json"}})
        if LOG:
            with open(LOG, "a") as f:
                f.write(json.dumps({"t": time.time(), "path": self.path, "body": req}) + "\n")
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/embeddings"):
            inp = req.get("input", "")
            items = inp if isinstance(inp, list) else [inp]
            data = [
                {"object": "embedding", "index": i, "embedding": embed(t if isinstance(t, str) else str(t))}
                for i, t in enumerate(items)
            ]
            return self._send(
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": req.get("model", MODEL),
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                },
            )
        if path.endswith("/chat/completions"):
            if req.get("stream"):
                return self._send(400, {"error": {"message": "streaming not supported by fake"}})
            content = _answer(req.get("messages") or [])
            return self._send(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": req.get("model", MODEL),
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )
        self._send(404, {"error": {"message": f"no route {self.path}"}})


def main():
    global LOG
    port = int(sys.argv[1])
    LOG = sys.argv[2] if len(sys.argv) > 2 else None
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()

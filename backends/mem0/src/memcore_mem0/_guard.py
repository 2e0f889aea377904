"""The one lock of this package, a stopgap: Qdrant's local mode is not thread-safe, and memcore calls a backend from
several workers at once (different sessions' lanes, recall). Two upserts into a local collection at once race on its
numpy arrays (seen in the conformance suite: ``operands could not be broadcast together with shapes (77,) (78,)``).

So every call on the local Qdrant client goes through :class:`SerialClient`: one at a time, each one short (in-memory
arrays and a SQLite file; the model requests, the slow part, stay outside it). mem0's entity store shares the same
client object, so it is covered too. It goes once memcore can run a backend's store calls one at a time itself (see
the README, "Threads")."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["SerialClient"]


class SerialClient:
    """A proxy over a ``QdrantClient`` whose every method call holds one lock."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute
        lock = self._lock

        def serial(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return attribute(*args, **kwargs)

        serial.__name__ = name
        return serial

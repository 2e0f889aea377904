"""Threads with many concurrent conversations in one process (a gateway): memcore's pool does not grow with them.

The census is taken at one deterministic point: every conversation is inside its third turn's ``prefetch`` (held
there on hermes' own prefetch thread), after two turns each that started every pool memcore starts lazily. Run as a
script for the figures in the README: ``python tests/test_threads.py 4 16``.
"""

from __future__ import annotations

import collections
import re
import threading
from dataclasses import dataclass
from typing import Any

from test_conversation import FLUSH, Agent

from memcore_hermes import MemcoreMemoryProvider


@dataclass(frozen=True)
class Census:
    conversations: int
    total: int  # threading.active_count()
    memcore: int  # memcore-worker-*, memcore-recall-*, memcore-journal*, memcore-handoff
    hermes: int  # hermes' own: a mem-sync worker per MemoryManager, a memory-prefetch thread per prefetch call
    drivers: int  # the test's: one per conversation, standing in for the gateway's executor threads, plus main
    by_name: dict[str, int]


def _family(name: str) -> str:
    """memcore-worker-3 -> memcore-worker, mem-sync_0 -> mem-sync."""
    return re.sub(r"[-_]\d+$", "", name)


def census(conversations: int, **config: Any) -> Census:
    """``conversations`` hermes conversations (one MemoryManager and provider each, users u0, u1...) on the default
    embedded store, all in one turn at once; the threads alive at that moment."""
    providers = [MemcoreMemoryProvider(dict(config)) for _ in range(conversations)]
    agents = [Agent(p, f"chat-{i}", platform="telegram", user_id=f"u{i}") for i, p in enumerate(providers)]
    for n in range(2):
        for i, agent in enumerate(agents):
            agent.turn(f"question {n} of {i}", f"answer {n}")
    for agent in agents:
        agent.settle()
    inside = threading.Barrier(conversations + 1, timeout=FLUSH)
    leave = threading.Barrier(conversations + 1, timeout=FLUSH)
    for provider in providers:
        original = provider.prefetch

        def held(query: str, *, session_id: str = "", _original: Any = original) -> str:
            inside.wait()
            leave.wait()
            return str(_original(query, session_id=session_id))

        provider.prefetch = held  # type: ignore[method-assign]
    drivers = [
        threading.Thread(target=agent.turn, args=(f"question 2 of {i}", "answer 2"), name=f"driver-{i}")
        for i, agent in enumerate(agents)
    ]
    for driver in drivers:
        driver.start()
    inside.wait()
    alive = threading.enumerate()
    total = threading.active_count()
    leave.wait()
    for driver in drivers:
        driver.join(FLUSH)
    for agent in agents:
        agent.settle()
    for agent in agents:
        agent.exit()
    names = collections.Counter(_family(t.name) for t in alive)
    memcore = sum(v for k, v in names.items() if k.startswith("memcore"))
    hermes = sum(v for k, v in names.items() if k.startswith(("mem-sync", "memory-prefetch")))
    driving = names["driver"] + names["MainThread"]
    return Census(conversations, total, memcore, hermes, driving, dict(names))


if __name__ == "__main__":
    import os
    import sys
    import tempfile

    home = tempfile.mkdtemp(prefix="memcore-threads-")
    os.environ["MEMCORE_HOME"] = os.environ["HERMES_HOME"] = home
    for arg in sys.argv[1:] or ["4", "16"]:
        c = census(int(arg))
        print(
            f"{c.conversations} conversations: {c.total} threads = {c.memcore} memcore + {c.hermes} hermes "
            f"+ {c.drivers} driving; {c.by_name}"
        )

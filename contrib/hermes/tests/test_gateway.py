"""Many conversations and many users in one process, as hermes' gateway runs them: one MemoryManager and provider per
chat (``gateway/run.py`` caches an AIAgent per session key), each initialized with the sender's ``user_id``. They
share one memcore Memory; each user recalls only their own memory; a conversation that ends leaves the others alone."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import memcore
import pytest
from test_conversation import FLUSH, Agent, contents, store
from test_threads import census

from memcore_hermes import MemcoreMemoryProvider
from memcore_hermes._provider import DEFAULTS, memcore_user, resolve_config
from memcore_hermes._shared import registry


def gateway_chat(session_id: str, user_id: str | None, **config: object) -> Agent:
    """One gateway conversation: its own MemoryManager and provider, initialized as agent_init.py does for a chat."""
    init: dict[str, object] = {"platform": "telegram", "chat_id": session_id, "gateway_session_key": session_id}
    if user_id is not None:
        init["user_id"] = user_id
    return Agent(MemcoreMemoryProvider(dict(config)), session_id, **init)


def memory_of(agent: Agent) -> memcore.Memory:
    provider = agent.mm.providers[0]
    assert isinstance(provider, MemcoreMemoryProvider) and provider.memory is not None
    return provider.memory


def recalled(agent: Agent, query: str) -> list[str]:
    answer = json.loads(agent.mm.handle_tool_call("memcore_recall", {"query": query, "limit": 20}))
    return [r["text"] for r in answer["results"]]


def pool(memory: memcore.Memory) -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("memcore-")}


def test_conversations_share_one_memory(homes: dict[str, Path]) -> None:
    a = gateway_chat("chat-a", "alice")
    b = gateway_chat("chat-b", "bob")
    c = gateway_chat("chat-c", None)
    memory = memory_of(a)
    assert memory_of(b) is memory and memory_of(c) is memory
    assert registry.memories() == [memory] and registry.leases(memory) == 3
    for n, agent in enumerate((a, b, c)):
        agent.turn(f"hello {n}", "hi")
    for agent in (a, b, c):
        agent.settle()
    assert memory.flush(timeout=FLUSH).pending == 0
    # One pool: the lane workers of one Memory (memcore names them), not one set per conversation.
    workers = {n for n in pool(memory) if n.startswith("memcore-worker-")}
    assert 0 < len(workers) <= DEFAULTS["workers"]
    assert len([n for n in pool(memory) if n == "memcore-journal"]) == 1
    for agent in (a, b, c):
        agent.exit()
    assert registry.memories() == []


def test_another_configuration_gets_its_own_memory(homes: dict[str, Path]) -> None:
    a = gateway_chat("chat-a", "alice")
    elsewhere = {"settings": {"sqlite": {"path": str(homes["memcore"] / "other.sqlite3")}}}
    b = gateway_chat("chat-b", "alice", **elsewhere)
    c = gateway_chat("chat-c", "bob", recall_limit=2, prefetch_timeout=1.0)  # the provider's own settings: shared
    assert memory_of(a) is not memory_of(b)
    assert memory_of(c) is memory_of(a)
    for agent in (a, b, c):
        agent.exit()
    assert registry.memories() == []
    d = gateway_chat("chat-d", "alice")  # the last one closed it: the next conversation opens a fresh one
    assert memory_of(d) is not memory_of(a) and registry.memories() == [memory_of(d)]
    d.exit()


def test_users_never_see_each_other(homes: dict[str, Path]) -> None:
    alice = gateway_chat("chat-1", "alice")
    bob = gateway_chat("chat-2", "bob")
    nobody = gateway_chat("chat-3", None)  # a chat without a sender id: the default user
    alice.turn("I drink espresso every morning", "Noted, espresso.")
    bob.turn("I drink matcha every morning", "Noted, matcha.")
    nobody.turn("I drink rooibos every morning", "Noted, rooibos.")
    alice.mm.on_memory_write("add", "user", "Alice's cat is called Miso", metadata={"session_id": "chat-1"})
    for agent in (alice, bob, nobody):
        agent.settle()
        agent.mm.on_session_end(agent.history)  # the sqlite store indexes turns for recall when they are committed
    memory = memory_of(alice)
    assert memory.flush(timeout=FLUSH).pending == 0

    found = recalled(alice, "morning drink cat")
    assert found and all("matcha" not in t and "rooibos" not in t for t in found)
    assert any("espresso" in t for t in recalled(alice, "drink")) and any("Miso" in t for t in recalled(alice, "cat"))
    assert [t for t in recalled(bob, "drink morning cat espresso rooibos Miso") if "matcha" not in t] == []
    assert [t for t in recalled(nobody, "drink morning cat espresso matcha Miso") if "rooibos" not in t] == []
    # The turn's own recall (hermes' prefetch) as well, in a second conversation of the same user, which sees hers.
    alice_again = gateway_chat("chat-4", "alice")
    context = alice_again.turn("what do I drink in the morning", "Espresso.")
    assert "espresso" in context and "matcha" not in context and "rooibos" not in context
    bob_again = gateway_chat("chat-5", "bob")
    context = bob_again.turn("what do I drink in the morning, and my cat?", "Matcha.")
    assert "matcha" in context and "espresso" not in context and "Miso" not in context

    for agent in (alice, bob, nobody, alice_again, bob_again):
        agent.exit()
    db = store(homes["memcore"])
    owners = dict(db.execute("SELECT id, user_id FROM sessions"))
    assert owners == {"chat-1": "alice", "chat-2": "bob", "chat-3": "", "chat-4": "alice", "chat-5": "bob"}


def test_one_conversation_ending_leaves_the_others_working(homes: dict[str, Path]) -> None:
    a = gateway_chat("chat-a", "alice")
    b = gateway_chat("chat-b", "bob")
    provider_a = a.mm.providers[0]
    provider_b = b.mm.providers[0]
    assert isinstance(provider_a, MemcoreMemoryProvider) and isinstance(provider_b, MemcoreMemoryProvider)
    memory = memory_of(a)
    a.turn("alice's last words", "bye")
    b.turn("bob's first words", "hello")
    a.settle()
    a.exit()  # gateway session expiry: on_session_end, shutdown_all
    assert provider_a.report is None  # it did not close the shared Memory: bob's conversation holds it
    assert registry.memories() == [memory] and registry.leases(memory) == 1
    assert memory.flush(timeout=FLUSH).pending == 0  # alice's commit was delivered by the shared workers

    b.turn("bob's second words", "these")  # bob's conversation goes on: writes, notes, recall
    b.mm.on_memory_write("add", "user", "Bob's words are sailing words", metadata={"session_id": "chat-b"})
    b.settle()
    assert memory.flush(timeout=FLUSH).pending == 0
    assert recalled(b, "words") == ["Bob's words are sailing words"]  # turns are indexed at commit, notes at once
    db = store(homes["memcore"])
    assert [c for _, c in contents(db, "chat-b")] == ["bob's first words", "hello", "bob's second words", "these"]
    assert dict(db.execute("SELECT id, commits FROM sessions")) == {"chat-a": 1, "chat-b": 0}
    b.exit()
    assert provider_b.report is not None and provider_b.report.ok, provider_b.report  # the last one closed it
    assert registry.memories() == []
    assert dict(db.execute("SELECT id, commits FROM sessions")) == {"chat-a": 1, "chat-b": 1}
    assert db.execute("SELECT count(*) FROM messages WHERE committed = 0").fetchone()[0] == 0
    with pytest.raises(memcore.MemoryClosed):
        memory.recall("anything")


def test_concurrent_starts_and_ends_open_and_close_once(homes: dict[str, Path]) -> None:
    """hermes' gateway builds and tears agents down on executor threads: 16 at once open one Memory, and of their
    16 shutdowns exactly one closes it."""
    n = 16
    providers = [MemcoreMemoryProvider() for _ in range(n)]
    start = threading.Barrier(n, timeout=FLUSH)

    def begin(i: int) -> None:
        start.wait()
        providers[i].initialize(f"chat-{i}", platform="telegram", user_id=f"u{i}", agent_context="primary")
        providers[i].sync_turn(f"turn of {i}", "ok", session_id=f"chat-{i}")

    def end(i: int) -> None:
        start.wait()
        providers[i].shutdown()

    for target in (begin, end):
        threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(FLUSH)
        if target is begin:
            (memory,) = registry.memories()
            assert all(p.memory is memory for p in providers) and registry.leases(memory) == n
    reports = [p.report for p in providers if p.report is not None]
    assert len(reports) == 1 and reports[0].ok and reports[0].committed == n
    assert registry.memories() == []


def test_user_scope() -> None:
    init = {"platform": "discord", "user_id": " 1234 "}
    assert memcore_user(resolve_config({}), init) == "1234"
    assert memcore_user(resolve_config({"user_scope": "platform"}), init) == "discord:1234"
    assert memcore_user(resolve_config({"user_scope": "none"}), init) is None
    assert memcore_user(resolve_config({}), {"platform": "cli"}) is None
    assert memcore_user(resolve_config({}), {"user_id": ""}) is None
    with pytest.raises(ValueError, match="user_scope"):
        resolve_config({"user_scope": "chat"})


class Mixing:
    """A backend written before users: it does not declare separates_users."""

    name = "mixing"

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: object) -> None:
        pass


def test_a_backend_that_mixes_users_disables_named_users(caplog: pytest.LogCaptureFixture) -> None:
    memory = memcore.Memory(backends=[Mixing()], journal=False)
    provider = MemcoreMemoryProvider(memory=memory)
    provider.initialize("chat-1", platform="telegram", user_id="alice")
    assert provider.lifecycle is None and "user_scope: none" in caplog.text
    assert registry.leases(memory) == 0  # nothing held: the lease was given back
    everyone = MemcoreMemoryProvider({"user_scope": "none"}, memory=memory)
    everyone.initialize("chat-1", platform="telegram", user_id="alice")
    assert everyone.lifecycle is not None and everyone.user_id is None
    everyone.shutdown()
    assert everyone.report is not None and everyone.report.ok


EXITING = """
import sys
sys.path.insert(0, {tests!r})
import memcore
from test_conversation import Agent
from memcore_hermes import MemcoreMemoryProvider

closes = []
close = memcore.Memory.close
def counted(self, timeout=10.0):
    closes.append(timeout)
    return close(self, timeout)
memcore.Memory.close = counted

import atexit
atexit.register(lambda: print("closes", closes, flush=True))  # registered first: runs after every other exit hook

agents = [Agent(MemcoreMemoryProvider({{"shutdown_timeout": 7.0}}), f"chat-{{i}}", platform="telegram",
                user_id=f"u{{i}}") for i in range(3)]
for n in range(3):
    for i, agent in enumerate(agents):
        agent.turn(f"turn {{n}} of {{i}}", "ok")
for agent in agents:
    agent.settle()
agents[0].exit()  # one conversation ends; the gateway process then exits with two still open
print("exiting", flush=True)
"""


def test_the_shared_memory_closes_once_at_exit(homes: dict[str, Path]) -> None:
    script = EXITING.format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["exiting", "closes [7.0]"], done.stdout + done.stderr
    journal = sqlite3.connect(homes["memcore"] / "journal.sqlite3")
    assert journal.execute("SELECT count(*) FROM ops").fetchone()[0] == 0  # every operation acknowledged
    assert journal.execute("SELECT count(*) FROM debts").fetchone()[0] == 0  # and every session committed
    db = store(homes["memcore"])
    assert dict(db.execute("SELECT id, commits FROM sessions")) == {"chat-0": 1, "chat-1": 1, "chat-2": 1}
    assert db.execute("SELECT count(*) FROM messages WHERE committed = 0").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 3 * 3 * 2


@pytest.mark.parametrize("conversations", [4, 16])
def test_threads_do_not_grow_with_conversations(homes: dict[str, Path], conversations: int) -> None:
    """memcore's threads are one Memory's: at most ``workers`` lane workers plus ``max_stalled`` (default
    ``workers``) stand-ins, ``max(recall_workers, backends)`` recall workers, the journal's writer (and its
    checkpointer); hermes adds its own per conversation (a mem-sync worker, a prefetch thread per turn)."""
    workers = DEFAULTS["workers"]
    bound = workers + workers + 2 + 2
    one = census(1)
    many = census(conversations)
    assert many.memcore == one.memcore <= bound, many
    assert many.hermes == 2 * conversations, many  # hermes' own, as with any provider
    assert many.total == many.memcore + many.hermes + many.drivers, many  # nothing else is started per conversation

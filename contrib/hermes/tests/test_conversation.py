"""hermes-agent's own MemoryManager drives the provider through a scripted conversation; the embedded store is then
checked: every turn in its session and in order, each dirty period committed once, recall in the prompt."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import memcore
import pytest
from agent.memory_manager import MemoryManager, build_memory_context_block

from memcore_hermes import MemcoreMemoryProvider

FLUSH = 10.0


class Agent:
    """The few lines of hermes-agent's run loop that talk to the MemoryManager (run_agent.py, turn_context.py,
    turn_finalizer.py, cli.py), with the transcript it keeps."""

    def __init__(self, provider: MemcoreMemoryProvider, session_id: str, **init: Any):
        self.mm = MemoryManager()
        self.mm.add_provider(provider)
        self.session_id = session_id
        self.history: list[dict[str, Any]] = []
        self.prompts: list[str] = []
        self.turns_here = 0  # hermes' _user_turn_count: reset_session_state sets it to 0 at /new
        # hermes' gateway adds user_id (and platform, chat_id...) here: agent_init.py passes AIAgent(user_id=...) on.
        self.mm.initialize_all(session_id=session_id, **{"platform": "cli", "agent_context": "primary", **init})

    def turn(self, user: str, assistant: str, *, tool: str | None = None) -> str:
        self.turns_here += 1
        self.mm.on_turn_start(self.turns_here, user)  # turn_context.py, inline, before prefetch_all
        context = build_memory_context_block(self.mm.prefetch_all(user))
        self.prompts.append(context)
        self.history.append({"role": "user", "content": user})
        if tool:
            call = {
                "id": f"call-{len(self.history)}",
                "type": "function",
                "function": {"name": tool, "arguments": "{}"},
            }
            self.history.append({"role": "assistant", "content": None, "tool_calls": [call]})
            self.history.append({"role": "tool", "content": f"{tool} says ok", "tool_call_id": call["id"]})
        self.history.append({"role": "assistant", "content": assistant})
        self.mm.sync_all(user, assistant, session_id=self.session_id, messages=list(self.history))
        self.mm.queue_prefetch_all(user, session_id=self.session_id)
        return context

    def settle(self) -> None:
        """The user reads the answer before typing the next command: hermes' background worker has run."""
        assert self.mm.flush_pending(timeout=FLUSH)

    def new(self, new_id: str) -> None:  # cli.py new_session with history
        old, snapshot = self.session_id, list(self.history)
        self.session_id, self.history, self.turns_here = new_id, [], 0
        self.mm.commit_session_boundary_async(
            snapshot, new_session_id=new_id, parent_session_id=old, reason="new_session"
        )

    def branch(self, new_id: str) -> None:  # cli_commands_mixin /branch (inline)
        old = self.session_id
        self.session_id = new_id
        self.mm.on_session_switch(new_id, parent_session_id=old, reset=False, reason="branch")

    def resume(self, target: str, history: list[dict[str, Any]]) -> None:  # /resume (inline)
        old = self.session_id
        self.session_id, self.history = target, list(history)
        self.mm.on_session_switch(target, parent_session_id=old, reset=False, reason="resume")

    def compress(self, new_id: str | None = None) -> None:  # conversation_compression.py, in place or rotating
        self.mm.on_pre_compress(list(self.history))
        old = self.session_id
        self.history = [{"role": "user", "content": "[summary of earlier turns]"}]
        if new_id is not None:
            self.session_id = new_id
        self.mm.on_session_switch(self.session_id, parent_session_id=old, reset=False, reason="compression")

    def undo(self) -> None:  # cli.py /undo
        self.history = self.history[:-2]
        self.mm.on_session_switch(self.session_id, parent_session_id="", reset=False, rewound=True)

    def exit(self) -> None:  # run_agent.py shutdown_memory_provider
        self.mm.on_session_end(self.history)
        self.mm.shutdown_all()


def store(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "memory.sqlite3")


def contents(db: sqlite3.Connection, session_id: str) -> list[tuple[str, str]]:
    return list(db.execute("SELECT role, content FROM messages WHERE session_id = ? ORDER BY id", (session_id,)))


def test_scripted_conversation(homes: dict[str, Path]) -> None:
    provider = MemcoreMemoryProvider({"prefetch_timeout": 5.0})
    agent = Agent(provider, "s1")
    assert "memcore_recall" in agent.mm.get_all_tool_names()
    assert "memcore" in agent.mm.build_system_prompt()

    agent.turn("I drink espresso every morning", "Noted: espresso.")
    agent.turn("My cat is called Miso", "Miso is a lovely name.", tool="web_search")
    s1_history = list(agent.history)
    agent.new("s2")  # end + switch queued behind the syncs on hermes' worker
    agent.settle()
    assert provider.memory is not None
    assert provider.memory.flush(timeout=FLUSH).pending == 0

    # Recall reaches the prompt: s1 was committed at /new, so the next turn's prefetch finds it.
    context = agent.turn("what coffee do I like", "Espresso.")
    assert "espresso every morning" in context and "<memory-context>" in context
    agent.mm.on_memory_write("add", "user", "User's name is Ada", metadata={"session_id": "s2"})
    agent.settle()  # the turn's sync runs on hermes' worker; a flush only covers what memcore accepted before it
    assert provider.memory.flush(timeout=FLUSH).pending == 0  # notes are written asynchronously too
    answer = agent.mm.handle_tool_call("memcore_recall", {"query": "name Ada"})
    assert "User's name is Ada" in answer

    agent.settle()
    agent.branch("s3")
    agent.turn("branch question", "branch answer")
    agent.settle()
    agent.resume("s1", s1_history)
    agent.turn("back in s1", "welcome back")
    agent.settle()
    agent.compress()  # in place: same id, commits what s1 got since /resume
    agent.turn("after in-place compression", "still s1")
    agent.settle()
    agent.compress("s4")  # rotating: s1 committed, s4 descends from it
    agent.turn("first in s4", "ok")
    agent.turn("oops", "undone soon")
    agent.settle()
    agent.undo()
    agent.turn("redo", "redone")
    agent.settle()
    agent.exit()

    report = provider.report
    assert report is not None and report.ok, report
    db = store(homes["memcore"])
    assert contents(db, "s1") == [
        ("user", "I drink espresso every morning"),
        ("assistant", "Noted: espresso."),
        ("user", "My cat is called Miso"),
        ("assistant", ""),
        ("tool", "web_search says ok"),
        ("assistant", "Miso is a lovely name."),
        ("user", "back in s1"),
        ("assistant", "welcome back"),
        ("user", "after in-place compression"),
        ("assistant", "still s1"),
    ]
    assert contents(db, "s2") == [("user", "what coffee do I like"), ("assistant", "Espresso.")]
    assert contents(db, "s3") == [("user", "branch question"), ("assistant", "branch answer")]
    # /undo invalidates recall; hermes 0.19.0 does not say how many turns it undid, and the undone turn's write may
    # still wait on its worker, so memcore-hermes does not take a turn out of the store (it could be the wrong one).
    assert contents(db, "s4") == [
        ("user", "first in s4"),
        ("assistant", "ok"),
        ("user", "oops"),
        ("assistant", "undone soon"),
        ("user", "redo"),
        ("assistant", "redone"),
    ]
    sessions = {
        sid: (parent, commits) for sid, parent, commits in db.execute("SELECT id, parent_id, commits FROM sessions")
    }
    # One commit per dirty period: s1 at /new, at the in-place compression, at the rotating one; the others once.
    assert sessions == {"s1": (None, 3), "s2": (None, 1), "s3": ("s2", 1), "s4": ("s1", 1)}
    assert db.execute("SELECT count(*) FROM messages WHERE committed = 0").fetchone()[0] == 0
    assert db.execute("SELECT session_id, kind FROM notes").fetchall() == [("s2", "user")]


class EchoRecall:
    """A backend whose recall says which query and session it was asked for, so staleness is visible."""

    name = "echo"

    def __init__(self) -> None:
        self.turns: list[tuple[str, str]] = []

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Any) -> None:
        self.turns.extend((session.id, m.content) for m in messages)

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: memcore.Session | None, limit: int) -> list[memcore.Recollection]:
        return [memcore.Recollection(text=f"{query} @ {session.id if session else None}")]


@pytest.mark.parametrize("command", ["new", "branch", "undo"])
def test_no_stale_recall_after_a_switch(command: str) -> None:
    provider = MemcoreMemoryProvider({"prefetch_timeout": 5.0}, memory=memcore.Memory(backends=[EchoRecall()]))
    agent = Agent(provider, "a")
    agent.turn("old topic", "answer")  # queues a prefetch of "old topic" for session a
    agent.settle()
    if command == "new":
        agent.new("b")
        agent.settle()
    elif command == "branch":
        agent.branch("b")
    else:
        agent.undo()
    context = agent.turn("fresh question", "answer")
    assert "old topic" not in context
    assert f"fresh question @ {agent.session_id}" in context
    agent.exit()


def test_a_turn_right_after_new_gets_fresh_recall_before_hermes_worker_switches() -> None:
    """/new runs the switch on hermes' background worker; the next turn's prefetch comes before the worker got there,
    and hermes' run loop names no session in it (only on_turn_start's count, reset to 1, tells). The recall is asked
    now, for the user: not the old session's prefetch, not scoped to the old session, not empty."""
    provider = MemcoreMemoryProvider({"prefetch_timeout": 5.0}, memory=memcore.Memory(backends=[EchoRecall()]))
    agent = Agent(provider, "a")
    agent.turn("old topic", "answer")
    agent.settle()
    gate = threading.Event()
    agent.mm._submit_background(lambda: gate.wait(FLUSH))  # hold hermes' worker: the /new switch queues behind it
    agent.new("b")
    assert provider.lifecycle is not None and provider.lifecycle.session_id == "a"
    named = agent.mm.prefetch_all("named question", session_id="b")  # a caller that names the session
    context = agent.turn("fresh question", "answer")  # hermes' run loop: on_turn_start(1), prefetch_all(query)
    gate.set()
    assert "old topic" not in named + context
    assert "named question @ None" in named
    assert "fresh question @ None" in context
    agent.settle()
    assert provider.lifecycle is not None and provider.lifecycle.session_id == "b"
    # Once hermes switched, the prefetch queued after the first turn of b (for its query, scoped to b) is handed out.
    assert "fresh question @ b" in agent.turn("second question", "answer")
    agent.exit()


def test_a_turn_synced_after_the_switch_lands_in_its_own_session(homes: dict[str, Path]) -> None:
    """hermes runs sync_turn on its background worker while /branch switches inline: the turn is bound to the session
    hermes named when it finished (G1), not to the one current when the worker gets to it."""
    provider = MemcoreMemoryProvider()
    agent = Agent(provider, "a")
    agent.turn("one", "1")
    agent.settle()
    gate = threading.Event()
    agent.mm._submit_background(lambda: gate.wait(FLUSH))  # hermes' worker is busy (a slow provider, say)
    agent.turn("two", "2")  # queued behind it
    agent.branch("b")  # inline, overtakes the queued sync
    gate.set()
    agent.turn("three", "3")
    agent.settle()
    agent.exit()
    db = store(homes["memcore"])
    assert contents(db, "a") == [("user", "one"), ("assistant", "1"), ("user", "two"), ("assistant", "2")]
    assert contents(db, "b") == [("user", "three"), ("assistant", "3")]
    # "two" arrived after /branch committed a, so a was dirty again and committed again at exit (memcore's G4).
    commits = dict(db.execute("SELECT id, commits FROM sessions"))
    assert commits == {"a": 2, "b": 1}
    assert db.execute("SELECT count(*) FROM messages WHERE committed = 0").fetchone()[0] == 0

"""The agent side of ``vs_hermes.py``: one contender in its own process, so that its exit is a real process exit
(daemon threads die with it, atexit handlers run) and a second process is a real next start.

``python benchmarks/_vs_hermes_agent.py CONFIG.json`` reads what to run and where to write its record. The driver
(:class:`Agent`) is the part of hermes-agent's run loop that talks to the ``MemoryManager`` (run_agent.py,
turn_context.py, turn_finalizer.py, cli.py), with the transcript it keeps; every command's agent-thread latency and
every provider hook's latency on whatever thread hermes calls it are recorded, as is each recall handed out (for the
stale-recall count) and each change of session id, with ``time.monotonic()`` times the proxy's log can be set against.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _fault_proxy import PROBE

HOOKS = (
    "sync_turn",
    "on_session_switch",
    "on_session_end",
    "on_pre_compress",
    "on_memory_write",
    "prefetch",
    "shutdown",
)
COMMANDS = ("prefetch", "turn", "new", "branch", "resume", "compress", "undo", "note", "exit")
SAMPLE_EVERY = 0.002  # seconds between thread-count samples


@dataclass
class Record:
    """What one agent process reports (times are ``time.monotonic()``)."""

    contender: str
    restart: bool
    t_start: float = 0.0
    t_shutdown_return: float = 0.0
    peak_threads: int = 0
    baseline_threads: int = 0
    hooks: dict[str, list[int]] = field(default_factory=lambda: {h: [] for h in HOOKS})  # ns
    commands: dict[str, list[int]] = field(default_factory=lambda: {c: [] for c in COMMANDS})  # ns
    turns: dict[str, list[str]] = field(default_factory=dict)  # session -> "s03 t02" markers, in order
    notes: int = 0
    switches: list[tuple[float, str]] = field(default_factory=list)  # (time, session id now current)
    recalls: list[dict[str, Any]] = field(default_factory=list)  # {t0, t1, session, probes}
    report: dict[str, Any] = field(default_factory=dict)  # memcore's close Report, if any


class Agent:
    def __init__(self, mm: Any, session_id: str, rec: Record):
        self.mm, self.session_id, self.rec = mm, session_id, rec
        self.history: list[dict[str, Any]] = []
        self.turns_here = 0  # hermes' _user_turn_count: reset_session_state sets 0 at /new, /branch, /resume
        rec.switches.append((time.monotonic(), session_id))
        self.mm.initialize_all(session_id=session_id, platform="cli", agent_context="primary")

    def _timed(self, command: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return fn()
        finally:
            self.rec.commands[command].append(time.perf_counter_ns() - t0)

    def _moved(self, session_id: str, *, reset: bool = True) -> None:
        if reset:
            self.turns_here = 0
        if session_id != self.session_id:
            self.rec.switches.append((time.monotonic(), session_id))
        self.session_id = session_id

    def turn(self, user: str, assistant: str) -> None:
        sid = self.session_id
        t0 = time.monotonic()
        self.turns_here += 1
        self.mm.on_turn_start(self.turns_here, user)  # turn_context.py: inline, before prefetch_all
        context = self._timed("prefetch", lambda: self.mm.prefetch_all(user))  # turn_context.py: no session id
        probes = [int(p) for p in PROBE.findall(context or "")]
        self.rec.recalls.append({"t0": t0, "t1": time.monotonic(), "session": sid, "probes": probes})
        self.history += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        msgs = list(self.history)
        self._timed("turn", lambda: self.mm.sync_all(user, assistant, session_id=sid, messages=msgs))
        self.mm.queue_prefetch_all(user, session_id=sid)

    def note(self, text: str) -> None:  # the built-in memory tool's mirror
        meta = {"session_id": self.session_id}
        self._timed("note", lambda: self.mm.on_memory_write("add", "memory", text, metadata=meta))

    def new(self, new_id: str) -> None:  # cli.py new_session with history: end + switch on hermes' worker
        old, snapshot = self.session_id, list(self.history)
        self._moved(new_id)
        self.history = []
        self._timed(
            "new",
            lambda: self.mm.commit_session_boundary_async(
                snapshot, new_session_id=new_id, parent_session_id=old, reason="new_session"
            ),
        )

    def branch(self, new_id: str) -> None:  # cli_commands_mixin /branch (inline)
        old = self.session_id
        self._moved(new_id)
        self._timed(
            "branch", lambda: self.mm.on_session_switch(new_id, parent_session_id=old, reset=False, reason="branch")
        )

    def resume(self, target: str, history: list[dict[str, Any]]) -> None:  # /resume (inline)
        old = self.session_id
        self._moved(target)
        self.history = list(history)
        self._timed(
            "resume", lambda: self.mm.on_session_switch(target, parent_session_id=old, reset=False, reason="resume")
        )

    def compress(self, new_id: str | None = None) -> None:  # conversation_compression.py, in place or rotating
        def run() -> None:
            self.mm.on_pre_compress(list(self.history))
            old = self.session_id
            self.history = [{"role": "user", "content": "[summary of earlier turns]"}]
            self._moved(new_id or old, reset=False)
            self.mm.on_session_switch(self.session_id, parent_session_id=old, reset=False, reason="compression")

        self._timed("compress", run)

    def undo(self) -> None:  # cli.py /undo
        self.history = self.history[:-2]
        sid = self.session_id
        self._timed("undo", lambda: self.mm.on_session_switch(sid, parent_session_id="", reset=False, rewound=True))

    def exit(self) -> None:  # run_agent.py shutdown_memory_provider
        def run() -> None:
            self.mm.on_session_end(self.history)
            self.mm.shutdown_all()

        self._timed("exit", run)


def run_script(agent: Agent, rec: Record, sessions: int, turns: int, think: float) -> None:
    """N sessions x T turns with a note in each; between sessions, in rotation: /new; /branch; in-place compression,
    a turn, /undo, a turn, then a rotating compression; /resume of an earlier session, a turn there, then /new."""
    counter: dict[str, int] = {}
    transcripts: dict[str, list[dict[str, Any]]] = {}

    def turn() -> None:
        sid = agent.session_id
        n = counter.get(sid, 0)
        counter[sid] = n + 1
        agent.turn(f"[{sid} t{n:02d}] what did we decide about item {n} of {sid}?", f"[{sid} t{n:02d}] item {n} ships.")
        rec.turns.setdefault(sid, []).append(f"{sid} t{n:02d}")
        transcripts[sid] = list(agent.history)
        if think:
            time.sleep(think)

    for k in range(sessions):
        for t in range(turns):
            turn()
            if t == min(1, turns - 1):
                agent.note(f"note from {agent.session_id}: the user prefers item {t} first")
                rec.notes += 1
        if k == sessions - 1:
            break
        nxt = f"s{k + 1:02d}"
        step = k % 4
        if step == 0:
            agent.new(nxt)
        elif step == 1:
            agent.branch(nxt)
        elif step == 2:
            agent.compress()  # in place
            turn()
            agent.undo()
            turn()
            agent.compress(nxt)  # rotating
        else:
            back = f"s{max(0, k - 2):02d}"
            agent.resume(back, transcripts.get(back, []))
            turn()
            agent.new(nxt)
    agent.exit()


def instrument(provider: Any, hooks: dict[str, list[int]]) -> None:
    """Time every hook of ``provider`` on whatever thread hermes calls it (``functools.wraps`` keeps the signature
    visible to hermes' introspection)."""
    for hook in HOOKS:
        original = getattr(provider, hook)

        @functools.wraps(original)
        def timed(*args: Any, __original: Any = original, __hook: str = hook, **kwargs: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return __original(*args, **kwargs)
            finally:
                hooks[__hook].append(time.perf_counter_ns() - t0)

        setattr(provider, hook, timed)


class ThreadSampler:
    def __init__(self) -> None:
        self.peak = self.baseline = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vs-hermes-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self.peak = max(self.peak, threading.active_count())

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_provider(cfg: dict[str, Any]) -> Any:
    """The contender, configured as its documentation says: hermes-agent's provider through the ``OPENVIKING_*``
    variables, memcore-hermes through its ``plugins.memcore`` section (here: the same mapping, passed directly)."""
    os.environ["HERMES_HOME"] = cfg["hermes_home"]
    os.environ["MEMCORE_HOME"] = cfg["memcore_home"]
    if cfg["contender"] == "hermes":
        os.environ.update(
            {
                "OPENVIKING_ENDPOINT": cfg["url"],
                "OPENVIKING_API_KEY": cfg["api_key"],
                "OPENVIKING_ACCOUNT": cfg["account"],
                "OPENVIKING_USER": cfg["user"],
            }
        )
        from plugins.memory.openviking import OpenVikingMemoryProvider

        return OpenVikingMemoryProvider()
    from memcore_hermes import MemcoreMemoryProvider

    settings = {"url": cfg["url"], "api_key": cfg["api_key"], "account": cfg["account"], "user": cfg["user"]}
    return MemcoreMemoryProvider({"backends": ["openviking"], "settings": {"openviking": settings}, **cfg["memcore"]})


def main(config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text())
    logging.basicConfig(level=logging.CRITICAL)
    from agent.memory_manager import MemoryManager

    rec = Record(cfg["contender"], cfg["restart"])
    provider = make_provider(cfg)
    instrument(provider, rec.hooks)
    mm = MemoryManager()
    mm.add_provider(provider)
    rec.t_start = time.monotonic()
    with ThreadSampler() as sampler:
        if cfg["restart"]:  # the next start: initialise (memcore replays its journal here), idle, shut down
            agent = Agent(mm, "next-start", rec)
            time.sleep(cfg.get("hold_s", 0.0))
            agent.exit()
        else:
            run_script(Agent(mm, "s00", rec), rec, cfg["sessions"], cfg["turns"], cfg["think_ms"] / 1000.0)
    rec.t_shutdown_return = time.monotonic()
    rec.peak_threads, rec.baseline_threads = sampler.peak, sampler.baseline
    report = getattr(provider, "report", None)
    if report is not None:
        rec.report = {k: getattr(report, k) for k in ("delivered", "committed", "pending", "journaled", "replayed")}
    Path(cfg["out"]).write_text(json.dumps(asdict(rec)))
    return 0  # the interpreter's own exit follows: atexit handlers run, daemon threads die


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

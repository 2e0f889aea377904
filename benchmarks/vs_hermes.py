"""Side by side with hermes-agent's own OpenViking provider: hermes-agent 0.19.0's ``OpenVikingMemoryProvider``
(``plugins/memory/openviking``) and memcore's OpenViking backend (through ``memcore_hermes.MemcoreMemoryProvider``),
driven by hermes-agent's own ``MemoryManager`` through the same scripted conversation, on one real
``openviking-server`` (0.5.x) started on loopback.

Both contenders are hermes ``MemoryProvider`` instances behind a real ``agent.memory_manager.MemoryManager``, so the
threads are hermes' own: ``sync_turn`` (and ``/new``'s end + switch) run on the manager's single background worker,
``/branch``, ``/resume``, compression and ``/undo`` call ``on_session_switch`` inline on the agent's thread, exit calls
``on_session_end`` then ``shutdown_all``. The driver (:class:`Agent`) is the one ``contrib/hermes/tests`` uses. The
agent does not wait for hermes' worker between commands (no think time unless ``--think``): a user who types the next
command at once, which is where the races are.

Every contender gets its own fresh account and user (``tenant()``), configured the way its documentation says:
hermes-agent's through ``OPENVIKING_ENDPOINT`` / ``OPENVIKING_API_KEY`` / ``OPENVIKING_ACCOUNT`` / ``OPENVIKING_USER``,
memcore's through ``plugins.memcore`` settings (``backends: [openviking]`` with url, api_key, account, user).

Measured from what the server holds afterwards (``settle()`` first, then every session read back through
``GET /api/v1/sessions/{id}/context`` and its archives, as ``memcore_history`` does): turns lost, turns in the wrong
session, turns out of order, duplicated turns, commits (completed archives) against the workload's dirty periods
(more: double commits; fewer: missed commits), sessions left with uncommitted messages. Measured on the client:
latency of every provider hook as hermes' threads see it (p50, p99, max), the agent thread's latency of each
command, and the peak ``threading.active_count()``.

Not measured here (yet): the fault-injecting proxy (latency spikes, 503s, resets), commits issued while a write of
the same session was in flight, and stale recall after a switch. See ``docs/benchmarks.md``.

Usage::

    python benchmarks/vs_hermes.py [--quick] [--json PATH] [--server PATH] [--think MS]

hermes-agent 0.19.0 pins ``PyJWT==2.13.0``, which openviking 0.5.x cannot share an environment with, so the server
binary may live in another environment: ``--server`` / ``OPENVIKING_SERVER``, else beside this interpreter or on
PATH, else ``.tox/openviking/bin/openviking-server``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import machine_info, percentile, print_table, write_json
from openviking import API, headers, openviking_version, settle, tenant  # benchmarks/openviking.py

import memcore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "backends" / "openviking" / "tests"))

from memcore_openviking import OpenVikingBackend  # noqa: E402
from support.stack import Stack, find_server, start  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "vs_hermes.json"
HOOKS = ("sync_turn", "on_session_switch", "on_session_end", "on_pre_compress", "on_memory_write", "shutdown")
COMMANDS = ("turn", "new", "branch", "resume", "compress", "undo", "note", "exit")
SAMPLE_EVERY = 0.002  # seconds between thread-count samples


# -- the driver: hermes-agent's run loop, as contrib/hermes/tests/test_conversation.py has it ------------------------


class Agent:
    """The lines of hermes-agent's run loop that talk to the MemoryManager (run_agent.py, turn_context.py,
    turn_finalizer.py, cli.py), with the transcript it keeps. Each command's agent-thread latency is recorded."""

    def __init__(self, mm: Any, session_id: str, timings: dict[str, list[int]]):
        self.mm = mm
        self.session_id = session_id
        self.history: list[dict[str, Any]] = []
        self.timings = timings
        self.mm.initialize_all(session_id=session_id, platform="cli", agent_context="primary")

    def _timed(self, command: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return fn()
        finally:
            self.timings[command].append(time.perf_counter_ns() - t0)

    def turn(self, user: str, assistant: str) -> None:
        self.history.append({"role": "user", "content": user})
        self.history.append({"role": "assistant", "content": assistant})
        sid, msgs = self.session_id, list(self.history)
        self._timed("turn", lambda: self.mm.sync_all(user, assistant, session_id=sid, messages=msgs))
        self.mm.queue_prefetch_all(user, session_id=sid)

    def note(self, text: str) -> None:  # the built-in memory tool's mirror
        self._timed(
            "note", lambda: self.mm.on_memory_write("add", "memory", text, metadata={"session_id": self.session_id})
        )

    def new(self, new_id: str) -> None:  # cli.py new_session with history
        old, snapshot = self.session_id, list(self.history)
        self.session_id, self.history = new_id, []
        self._timed(
            "new",
            lambda: self.mm.commit_session_boundary_async(
                snapshot, new_session_id=new_id, parent_session_id=old, reason="new_session"
            ),
        )

    def branch(self, new_id: str) -> None:  # cli_commands_mixin /branch (inline)
        old = self.session_id
        self.session_id = new_id
        self._timed(
            "branch", lambda: self.mm.on_session_switch(new_id, parent_session_id=old, reset=False, reason="branch")
        )

    def resume(self, target: str, history: list[dict[str, Any]]) -> None:  # /resume (inline)
        old = self.session_id
        self.session_id, self.history = target, list(history)
        self._timed(
            "resume", lambda: self.mm.on_session_switch(target, parent_session_id=old, reset=False, reason="resume")
        )

    def compress(self, new_id: str | None = None) -> None:  # conversation_compression.py, in place or rotating
        def run() -> None:
            self.mm.on_pre_compress(list(self.history))
            old = self.session_id
            self.history = [{"role": "user", "content": "[summary of earlier turns]"}]
            if new_id is not None:
                self.session_id = new_id
            self.mm.on_session_switch(self.session_id, parent_session_id=old, reset=False, reason="compression")

        self._timed("compress", run)

    def undo(self) -> None:  # cli.py /undo
        self.history = self.history[:-2]
        self._timed(
            "undo", lambda: self.mm.on_session_switch(self.session_id, parent_session_id="", reset=False, rewound=True)
        )

    def exit(self) -> None:  # run_agent.py shutdown_memory_provider
        def run() -> None:
            self.mm.on_session_end(self.history)
            self.mm.shutdown_all()

        self._timed("exit", run)


def instrument(provider: Any, timings: dict[str, list[int]]) -> None:
    """Time every hook of ``provider`` on whatever thread hermes calls it (the signature stays visible to hermes'
    introspection through ``functools.wraps``)."""
    for hook in HOOKS:
        original = getattr(provider, hook)

        @functools.wraps(original)
        def timed(*args: Any, __original: Any = original, __hook: str = hook, **kwargs: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return __original(*args, **kwargs)
            finally:
                timings[__hook].append(time.perf_counter_ns() - t0)

        setattr(provider, hook, timed)


class ThreadSampler:
    def __init__(self) -> None:
        self.peak = threading.active_count()
        self.baseline = self.peak
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


# -- the workload --------------------------------------------------------------------------------------------------


@dataclass
class Expected:
    """What the server should hold after the script: every turn in its session in order, and per session the number
    of dirty periods (a boundary reached with turns written since the last one): one commit each."""

    turns: dict[str, list[str]] = field(default_factory=dict)  # session -> user texts, in order
    periods: dict[str, int] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    notes: int = 0

    def turn(self, sid: str, text: str) -> None:
        self.turns.setdefault(sid, []).append(text)
        self.periods.setdefault(sid, 0)
        self.dirty.add(sid)

    def boundary(self, sid: str) -> None:
        if sid in self.dirty:
            self.dirty.discard(sid)
            self.periods[sid] = self.periods.get(sid, 0) + 1


def run_script(agent: Agent, sessions: int, turns: int, think: float) -> Expected:
    """N sessions x T turns with a note in each; between sessions, in rotation: /new; /branch; in-place compression,
    a turn, /undo, a turn, then a rotating compression; /resume of an earlier session, a turn there, then /new."""
    exp = Expected()
    counter: dict[str, int] = {}
    transcripts: dict[str, list[dict[str, Any]]] = {}

    def turn() -> None:
        sid = agent.session_id
        n = counter.get(sid, 0)
        counter[sid] = n + 1
        user = f"[{sid} t{n:02d}] what did we decide about item {n} of {sid}?"
        agent.turn(user, f"[{sid} t{n:02d}] we decided to ship item {n}.")
        exp.turn(sid, user)
        transcripts[sid] = list(agent.history)
        if think:
            time.sleep(think)

    def name(k: int) -> str:
        return f"s{k:02d}"

    for k in range(sessions):
        for t in range(turns):
            turn()
            if t == min(1, turns - 1):
                agent.note(f"note from {agent.session_id}: the user prefers item {t} first")
                exp.notes += 1
        if k == sessions - 1:
            break
        here, nxt = agent.session_id, name(k + 1)
        step = k % 4
        if step == 0:
            agent.new(nxt)
            exp.boundary(here)
        elif step == 1:
            agent.branch(nxt)
            exp.boundary(here)
        elif step == 2:
            agent.compress()  # in place
            exp.boundary(here)
            turn()
            agent.undo()
            turn()
            agent.compress(nxt)  # rotating
            exp.boundary(here)
        else:
            back = name(max(0, k - 2))
            agent.resume(back, transcripts.get(back, []))
            exp.boundary(here)
            turn()
            agent.new(nxt)
            exp.boundary(back)
    last = agent.session_id
    agent.exit()
    exp.boundary(last)
    return exp


# -- one contender ---------------------------------------------------------------------------------------------------


@dataclass
class Latency:
    name: str
    calls: int
    p50_us: float
    p99_us: float
    max_us: float


@dataclass
class SessionCheck:
    session: str
    expected_turns: int
    found_turns: int
    dirty_periods: int
    archives: int
    uncommitted_messages: int


@dataclass
class ContenderResult:
    contender: str
    account: str
    user: str
    wall_seconds: float = 0.0
    peak_threads: int = 0
    baseline_threads: int = 0
    hooks: list[Latency] = field(default_factory=list)
    commands: list[Latency] = field(default_factory=list)
    expected_turns: int = 0
    turns_present: int = 0
    turns_lost: int = 0
    turns_wrong_session: int = 0
    turns_out_of_order: int = 0
    turns_duplicated: int = 0
    dirty_periods: int = 0
    commits: int = 0  # completed archives, all sessions
    double_commits: int = 0  # archives beyond the dirty periods, summed over sessions
    missed_commits: int = 0  # dirty periods without an archive, summed over sessions
    sessions: int = 0
    sessions_uncommitted: int = 0  # sessions with messages in no archive after shutdown
    threads_left: int = 0  # threads still alive 1 s after shutdown returned, beyond the baseline
    notes_expected: int = 0
    per_session: list[SessionCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def latencies(timings: dict[str, list[int]], names: Sequence[str]) -> list[Latency]:
    out = []
    for n in names:
        samples = sorted(timings.get(n) or [])
        if samples:
            out.append(Latency(n, len(samples), percentile(samples, 50), percentile(samples, 99), samples[-1] / 1000.0))
    return out


def make_hermes(stack: Stack, ids: dict[str, str], hermes_home: Path) -> Any:
    """hermes-agent's provider, configured as its README says: the OPENVIKING_* variables in hermes' environment."""
    os.environ.update(
        {
            "HERMES_HOME": str(hermes_home),
            "OPENVIKING_ENDPOINT": stack.url,
            "OPENVIKING_API_KEY": stack.api_key,
            "OPENVIKING_ACCOUNT": ids["account"],
            "OPENVIKING_USER": ids["user"],
        }
    )
    from plugins.memory.openviking import OpenVikingMemoryProvider

    return OpenVikingMemoryProvider()


def make_memcore(stack: Stack, ids: dict[str, str], hermes_home: Path) -> Any:
    """memcore-hermes' provider with the openviking backend, configured as its plugins.memcore section would be."""
    for var in ("OPENVIKING_ENDPOINT", "OPENVIKING_API_KEY", "OPENVIKING_ACCOUNT", "OPENVIKING_USER"):
        os.environ.pop(var, None)
    os.environ["HERMES_HOME"] = str(hermes_home)
    os.environ["MEMCORE_HOME"] = str(hermes_home / "memcore-home")
    from memcore_hermes import MemcoreMemoryProvider

    settings = {"url": stack.url, "api_key": stack.api_key, "account": ids["account"], "user": ids["user"]}
    return MemcoreMemoryProvider({"backends": ["openviking"], "settings": {"openviking": settings}})


def read_back(stack: Stack, ids: dict[str, str], exp: Expected, res: ContenderResult) -> None:
    """What the server holds, per session of the workload: messages (archives, then the live context) and archives."""
    reader = OpenVikingBackend(url=stack.url, api_key=stack.api_key, account=ids["account"], user=ids["user"])
    hdrs = headers(stack, ids)
    where: dict[str, list[tuple[str, int]]] = {}  # user text -> [(session, position)]
    try:
        for sid in sorted(exp.turns):
            session = memcore.Session(id=sid)
            try:
                history = reader.memcore_history(session)
            except Exception as exc:
                res.errors.append(f"read {sid}: {exc!r}")
                history = []
            users = [m.content for m in history if m.role == "user"]
            for pos, text in enumerate(users):
                where.setdefault(text, []).append((sid, pos))
            answer = httpx.get(
                f"{stack.url}{API}/sessions/{sid}/context", params={"token_budget": 1 << 40}, headers=hdrs, timeout=30
            )
            ctx = (answer.json().get("result") or {}) if answer.status_code == 200 else {}
            total = int((ctx.get("stats") or {}).get("totalArchives") or 0)
            live = len(ctx.get("messages") or [])
            res.per_session.append(
                SessionCheck(sid, len(exp.turns[sid]), len(users), exp.periods.get(sid, 0), total, live)
            )
    finally:
        reader.memcore_close()
    for sid, texts in exp.turns.items():
        positions = []
        for text in texts:
            hits = where.get(text, [])
            if not hits:
                res.turns_lost += 1
                continue
            res.turns_duplicated += len(hits) - 1
            mine = [p for s, p in hits if s == sid]
            if not mine:
                res.turns_wrong_session += 1
                continue
            res.turns_present += 1
            positions.append(mine[0])
        res.turns_out_of_order += len(positions) - longest_increasing(positions)
    for s in res.per_session:
        res.commits += s.archives
        res.dirty_periods += s.dirty_periods
        res.double_commits += max(0, s.archives - s.dirty_periods)
        res.missed_commits += max(0, s.dirty_periods - s.archives)
        res.sessions_uncommitted += s.uncommitted_messages > 0
    res.sessions = len(res.per_session)
    res.expected_turns = sum(len(v) for v in exp.turns.values())
    res.notes_expected = exp.notes


def longest_increasing(xs: Sequence[int]) -> int:
    import bisect

    tails: list[int] = []
    for x in xs:
        i = bisect.bisect_left(tails, x)
        tails[i : i + 1] = [x]
    return len(tails)


def run_contender(
    stack: Stack, contender: str, sessions: int, turns: int, think: float, work: Path, progress: Callable[[str], None]
) -> ContenderResult:
    from agent.memory_manager import MemoryManager

    ids = tenant(stack, contender)
    res = ContenderResult(contender, ids["account"], ids["user"])
    home = work / f"hermes-home-{contender}"
    home.mkdir(parents=True, exist_ok=True)
    provider = (make_hermes if contender == "hermes" else make_memcore)(stack, ids, home)
    hook_t: dict[str, list[int]] = {h: [] for h in HOOKS}
    cmd_t: dict[str, list[int]] = {c: [] for c in COMMANDS}
    instrument(provider, hook_t)
    mm = MemoryManager()
    mm.add_provider(provider)
    begin = time.perf_counter()
    with ThreadSampler() as sampler:
        agent = Agent(mm, "s00", cmd_t)
        exp = run_script(agent, sessions, turns, think)
    res.wall_seconds = time.perf_counter() - begin
    res.peak_threads, res.baseline_threads = sampler.peak, sampler.baseline
    time.sleep(1.0)
    res.threads_left = max(0, threading.active_count() - sampler.baseline)
    progress(f"{contender}: script done in {res.wall_seconds:.2f} s, peak {res.peak_threads} threads; settling")
    settle(stack)
    read_back(stack, ids, exp, res)
    res.hooks = latencies(hook_t, HOOKS)
    res.commands = latencies(cmd_t, COMMANDS)
    return res


# -- report --------------------------------------------------------------------------------------------------------


@dataclass
class Results:
    benchmark: str = "vs_hermes"
    quick: bool = False
    started: str = ""
    total_seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    contenders: list[ContenderResult] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def ratio(h: float | None, m: float | None) -> str:
    if h is None or m is None:
        return "-"
    if m == 0:
        return "-" if h == 0 else "inf"
    return f"{h / m:.2f}x"


def build_table(h: ContenderResult, m: ContenderResult) -> list[list[str]]:
    rows: list[list[str]] = []

    def lat(kind: str, res: ContenderResult, name: str) -> Latency | None:
        return next((x for x in (res.hooks if kind == "hook" else res.commands) if x.name == name), None)

    for kind, names in (("hook", HOOKS), ("cmd", COMMANDS)):
        for name in names:
            a, b = lat(kind, h, name), lat(kind, m, name)
            if a is None and b is None:
                continue
            for stat in ("p50_us", "p99_us", "max_us"):
                va = getattr(a, stat) if a else None
                vb = getattr(b, stat) if b else None
                label = f"{kind} {name} {stat.replace('_us', '')} (us)"
                rows.append([label, fmt(va), fmt(vb), ratio(va, vb)])
    counts = [
        ("wall, script start to shutdown return (s)", "wall_seconds", ".2f"),
        (f"peak threads (baseline {h.baseline_threads})", "peak_threads", "d"),
        ("threads left 1 s after shutdown", "threads_left", "d"),
        ("turns expected", "expected_turns", "d"),
        ("turns present in their session", "turns_present", "d"),
        ("turns lost", "turns_lost", "d"),
        ("turns in the wrong session", "turns_wrong_session", "d"),
        ("turns out of order", "turns_out_of_order", "d"),
        ("turns duplicated", "turns_duplicated", "d"),
        ("dirty periods (commits expected)", "dirty_periods", "d"),
        ("commits (archives on the server)", "commits", "d"),
        ("double commits", "double_commits", "d"),
        ("missed commits", "missed_commits", "d"),
        ("sessions", "sessions", "d"),
        ("sessions left uncommitted", "sessions_uncommitted", "d"),
    ]
    for label, attr, spec in counts:
        va, vb = getattr(h, attr), getattr(m, attr)
        rows.append([label, format(va, spec), format(vb, spec), ratio(float(va), float(vb))])
    return rows


def report_text(res: Results) -> None:
    m, c = res.machine, res.config
    print(
        f"vs_hermes ({'quick' if res.quick else 'full'}): {m['cpu_count']} cpus ({m['cpus_usable']} usable), "
        f"python {m['python_version']}, memcore {m['memcore_version']}, "
        f"hermes-agent {res.versions.get('hermes-agent')}, "
        f"openviking-server {res.server.get('version', '?')}"
    )
    print(
        f"workload: {c['sessions']} sessions x {c['turns']} turns, a note per session, /new /branch compression /undo "
        f"/resume in rotation, exit; think time {c['think_ms']} ms; same server, one fresh tenant per contender"
    )
    print()
    print("side by side (ratio = hermes / memcore; hook = the provider method as hermes' threads call it,")
    print("cmd = the agent thread's call into MemoryManager)")
    print_table(["figure", "hermes openviking", "memcore openviking", "ratio"], res.table)
    for r in res.contenders:
        if r.errors:
            print(f"{r.contender} errors: {r.errors}")
    print(f"total {res.total_seconds:.1f} s")


def dist_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "?"


def locate_server(given: str | None) -> str | None:
    for cand in (
        given,
        os.environ.get("OPENVIKING_SERVER"),
        find_server(),
        str(ROOT / ".tox/openviking/bin/openviking-server"),
    ):
        if cand and Path(cand).exists():
            return cand
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="4 sessions x 3 turns")
    parser.add_argument("--sessions", type=int, default=None, help="default 12, quick 4")
    parser.add_argument("--turns", type=int, default=None, help="default 6, quick 3")
    parser.add_argument("--think", type=float, default=0.0, help="ms the user waits after each turn (default 0)")
    parser.add_argument("--server", default=None, help="openviking-server binary (default: see the module docstring)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    config = {
        "sessions": args.sessions or (4 if args.quick else 12),
        "turns": args.turns or (3 if args.quick else 6),
        "think_ms": args.think,
        "contenders": ["hermes", "memcore"],
        "hermes_timeouts_s": {"session_drain": 10.0, "deferred_commit": 65.0, "shutdown_join_per_thread": 5.0},
        "memcore_timeouts_s": {"prefetch": 2.0, "shutdown": 5.0},
        "manager_shutdown_drain_s": "hermes MemoryManager _SYNC_DRAIN_TIMEOUT_S (both)",
    }
    res = Results(quick=args.quick, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), machine=machine_info(), config=config)
    res.versions = {
        n: dist_version(n) for n in ("hermes-agent", "memcore", "memcore-openviking", "memcore-hermes", "httpx")
    }
    begin = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - begin:6.1f} s] {msg}", file=sys.stderr, flush=True)

    server = locate_server(args.server)
    if server is None:
        print("openviking-server not found (--server, OPENVIKING_SERVER, or tox -e openviking first)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="memcore-bench-vs-hermes-"))
    progress(f"starting openviking-server ({server})")
    stack = start(work / "server", server, deadline=90.0)
    res.server = {"url": stack.url, "startup_s": stack.startup_s, "version": server_version(server), "binary": server}
    progress(f"server ready at {stack.url} in {stack.startup_s} s")
    saved_env = dict(os.environ)
    try:
        for contender in config["contenders"]:
            settle(stack)
            progress(f"{contender}: {config['sessions']} sessions x {config['turns']} turns")
            res.contenders.append(
                run_contender(
                    stack, contender, config["sessions"], config["turns"], args.think / 1000.0, work, progress
                )
            )
    except Exception:
        print(stack.log_tail(), file=sys.stderr)
        raise
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        progress("stopping the server")
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    res.total_seconds = time.perf_counter() - begin
    res.table = build_table(res.contenders[0], res.contenders[1])
    report_text(res)
    write_json(res, args.json)
    return 0


def server_version(binary: str) -> str:
    """The openviking distribution beside the server binary (it may live in another environment)."""
    site = list(Path(binary).resolve().parent.parent.glob("lib/python*/site-packages/openviking-*.dist-info"))
    return site[0].name.split("-")[1] if site else openviking_version()


if __name__ == "__main__":
    sys.exit(main())

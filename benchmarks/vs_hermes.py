"""Side by side with hermes-agent's own OpenViking provider: hermes-agent 0.19.0's ``OpenVikingMemoryProvider``
(``plugins/memory/openviking``) and memcore's OpenViking backend (through ``memcore_hermes.MemcoreMemoryProvider``),
each behind hermes-agent's own ``MemoryManager``, through the same scripted conversation, on one real
``openviking-server`` (0.5.x) on loopback, reached through a logging, fault-injecting proxy (``_fault_proxy.py``).

Scenarios: ``clean`` (the proxy only logs) and ``faults`` (seeded 503s, connection resets before and after the server
applied the request, and latency spikes of 12 s on writes and commits: longer than hermes' 10 s session drain and
MemoryManager's 5 s shutdown drain). Each round runs each contender in its own process (``_vs_hermes_agent.py``): the
script, a real process exit, then a second process as the next start (memcore replays its journal there), each with a
fresh account and user. The same timeouts where both have them: 30 s per request, 4 s for a turn's recall.

Measured from what the server holds (read back after the server settled) and from the proxy's log, never from the
clients' own counters: turns lost (after the exit, and after the next start), in the wrong session, out of order,
duplicated; commits the server accepted; commits issued while a write of that session was still in flight (the write
arrived at the proxy before the commit and was not yet answered); double commits (a commit the server accepted with no
write of that session applied since its previous accepted commit); sessions left with uncommitted messages (after the
exit, after the next start); stale recall (a recall handed to the agent whose search was asked for another session,
or before the agent entered its current session: the proxy tags each search answer). Measured in the agent process:
latency of every provider hook on the thread hermes calls it on and of every agent-thread command (p50, p99, max),
peak threads; and by this process: the time from ``shutdown_all`` returning to the process being gone.

Usage::

    python benchmarks/vs_hermes.py [--quick] [--rounds N] [--think MS] [--scenarios clean,faults] [--json PATH]

hermes-agent 0.19.0 pins ``PyJWT==2.13.0``, which openviking 0.5.x cannot share an environment with, so the server
binary may live in another environment: ``--server`` / ``OPENVIKING_SERVER``, else beside this interpreter or on
PATH, else ``.tox/openviking/bin/openviking-server``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import BenchResults, fmt, json_path, percentile, print_table, progress_printer, write_json
from _fault_proxy import Exchange, FaultPlan, FaultProxy
from _vs_hermes_agent import COMMANDS, HOOKS
from _vs_hermes_figures import ServerState, commit_figures, marker, placement, stale_recall
from openviking import API, openviking_version, settle  # benchmarks/openviking.py

import memcore
from memcore.http import HTTPStatusError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "backends" / "openviking" / "tests"))

from memcore_openviking import OpenVikingBackend  # noqa: E402
from support.stack import Stack, find_server, start  # noqa: E402

DEFAULT_JSON = HERE / "results" / "vs_hermes.json"
CONTENDERS = ("hermes", "memcore")
SCENARIOS = {
    "clean": FaultPlan(),
    "faults": FaultPlan(seed=7, rates={"503": 0.08, "reset": 0.04, "reset_after": 0.03, "spike": 0.05}, spike_s=12.0),
}
# How long the next start lives before it exits (an idle session of the user's): long enough for memcore to deliver
# what it replays when 12 s spikes go on (hermes has nothing to replay; it gets the same time).
NEXT_START_S = {"clean": 0.0, "faults": 30.0}
TIMEOUTS = {  # the same where both have them (hermes-agent 0.19.0's constants; memcore-hermes' settings)
    "per_request_s": 30.0,  # hermes _TIMEOUT; memcore-openviking timeout (its default)
    "recall_s": 4.0,  # hermes recall timeout; memcore-hermes prefetch_timeout / recall_timeout
}
MEMCORE_SETTINGS = {"prefetch_timeout": TIMEOUTS["recall_s"], "recall_timeout": TIMEOUTS["recall_s"]}
QUIET_DEADLINE = 90.0  # seconds to wait for the proxy's held requests after an agent process is gone


# -- one round of one contender --------------------------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    contender: str
    round: int
    account: str
    user: str
    record: dict[str, Any] = field(default_factory=dict)  # the agent process' Record
    restart: dict[str, Any] = field(default_factory=dict)  # the next start's Record
    exit_s: float = 0.0  # shutdown_all returned -> process gone
    restart_exit_s: float = 0.0
    after_exit: ServerState = field(default_factory=ServerState)
    after_next: ServerState = field(default_factory=ServerState)
    exchanges: list[Exchange] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)


def tenant(stack: Stack, contender: str) -> dict[str, str]:
    """A fresh account with its first user and that user's key (``POST /api/v1/admin/accounts`` with the root key:
    the server runs in ``api_key`` mode, where the key names the tenant, as hermes-agent's README assumes when
    ``OPENVIKING_API_KEY`` is set), and one throwaway session: OpenViking 0.5.2 may answer 500 when a new user's
    first sessions are created concurrently."""
    key = uuid.uuid4().hex[:8]
    ids = {"account": f"bench-{contender}-{key}", "user": f"user-{key}"}
    answer = httpx.post(
        f"{stack.url}{API}/admin/accounts",
        json={"account_id": ids["account"], "admin_user_id": ids["user"]},
        headers={"X-API-Key": stack.api_key},
        timeout=30,
    )
    answer.raise_for_status()
    ids["key"] = answer.json()["result"]["user_key"]
    warm = httpx.post(
        f"{stack.url}{API}/sessions", json={"session_id": "warm-up"}, headers=user_headers(ids), timeout=30
    )
    warm.raise_for_status()
    return ids


def user_headers(ids: dict[str, str]) -> dict[str, str]:
    return {"X-API-Key": ids["key"]}


def run_agent(cfg: dict[str, Any], work: Path) -> tuple[dict[str, Any], float]:
    """One agent process; its record and the seconds from its shutdown_all returning to the process being gone."""
    path = work / f"agent-{cfg['tag']}.json"
    cfg = {**cfg, "out": str(path.with_suffix(".out.json"))}
    path.write_text(json.dumps(cfg))
    proc = subprocess.run(
        [sys.executable, str(HERE / "_vs_hermes_agent.py"), str(path)],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=900,
    )
    gone = time.monotonic()
    if proc.returncode != 0:
        raise RuntimeError(f"agent process {cfg['tag']} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    record = json.loads(Path(cfg["out"]).read_text())
    return record, gone - record["t_shutdown_return"]


def wait_quiet(proxy: FaultProxy, tag_prefix: str) -> None:
    """Until every request the proxy holds for these processes has been answered (or reset)."""
    deadline = time.monotonic() + QUIET_DEADLINE
    while time.monotonic() < deadline:
        if all(e.t_done is not None for e in proxy.exchanges if e.tag.startswith(tag_prefix)):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the proxy still holds requests of {tag_prefix} after {QUIET_DEADLINE} s")


def read_state(stack: Stack, ids: dict[str, str], sessions: Sequence[str]) -> ServerState:
    """Every session of the workload as the server holds it: archived messages then the live context."""
    reader = OpenVikingBackend(url=stack.url, api_key=ids["key"], account=ids["account"], user=ids["user"])
    state = ServerState()
    try:
        for sid in sessions:
            try:
                history = reader.memcore_history(memcore.Session(id=sid))
            except HTTPStatusError as exc:
                if exc.status_code != 404:
                    raise
                history = []  # no write of this session ever reached the server
            state.turns[sid] = [marker(m.content) for m in history if m.role == "user" and marker(m.content)]
            answer = httpx.get(
                f"{stack.url}{API}/sessions/{sid}/context",
                params={"token_budget": 1 << 40},
                headers=user_headers(ids),
                timeout=30,
            )
            ctx = (answer.json().get("result") or {}) if answer.status_code == 200 else {}
            state.archives[sid] = int((ctx.get("stats") or {}).get("totalArchives") or 0)
            state.live[sid] = len(ctx.get("messages") or [])
    finally:
        reader.memcore_close()
    return state


def run_round(
    stack: Stack, proxy: FaultProxy, scenario: str, contender: str, rnd: int, cfg: dict[str, Any], work: Path
) -> Run:
    ids = tenant(stack, contender)
    run = Run(scenario, contender, rnd, ids["account"], ids["user"])
    home = work / f"{scenario}-{contender}-{rnd}"
    agent_cfg = {
        "contender": contender,
        "url": proxy.url,
        "api_key": ids["key"],
        "account": ids["account"],
        "user": ids["user"],
        "hermes_home": str(home / "hermes-home"),
        "memcore_home": str(home / "memcore-home"),
        "memcore": {**MEMCORE_SETTINGS, **({"workers": cfg["memcore_workers"]} if cfg["memcore_workers"] else {})},
        "sessions": cfg["sessions"],
        "turns": cfg["turns"],
        "think_ms": cfg["think_ms"],
    }
    prefix = f"{scenario}/{contender}/{rnd}"
    settle(stack)
    proxy.reset(SCENARIOS[scenario], f"{prefix}/run")
    run.record, run.exit_s = run_agent(
        {**agent_cfg, "restart": False, "tag": f"{scenario}-{contender}-{rnd}-run"}, work
    )
    wait_quiet(proxy, prefix)
    settle(stack)
    sessions = sorted(run.record["turns"])
    run.after_exit = read_state(stack, ids, sessions)
    proxy.tag = f"{prefix}/next"  # the fault plan goes on where it was: the service is no better at the next start
    run.restart, run.restart_exit_s = run_agent(
        {**agent_cfg, "restart": True, "hold_s": NEXT_START_S[scenario], "tag": f"{scenario}-{contender}-{rnd}-next"},
        work,
    )
    wait_quiet(proxy, prefix)
    settle(stack)
    run.after_next = read_state(stack, ids, sessions)
    run.exchanges = [e for e in proxy.exchanges if e.tag.startswith(prefix)]
    run.figures = figures(run, {e.id: e for e in proxy.exchanges})
    return run


# -- figures ---------------------------------------------------------------------------------------------------------


def figures(run: Run, by_id: dict[int, Exchange]) -> dict[str, float]:
    expected = run.record["turns"]
    f: dict[str, float] = {"turns_expected": sum(len(v) for v in expected.values())}
    exit_p, next_p = placement(expected, run.after_exit), placement(expected, run.after_next)
    f["turns_lost_exit"] = exit_p["lost"]
    f.update({f"turns_{k}": v for k, v in next_p.items()})
    f["sessions"] = len(expected)
    f["sessions_uncommitted_exit"] = sum(1 for n in run.after_exit.live.values() if n)
    f["sessions_uncommitted_next"] = sum(1 for n in run.after_next.live.values() if n)
    f["messages_uncommitted_exit"] = sum(run.after_exit.live.values())
    f["archives"] = sum(run.after_next.archives.values())
    f["journaled_next"] = (run.restart.get("report") or {}).get("pending", 0)
    f.update(commit_figures(run.exchanges))
    f.update(stale_recall(run.record, by_id))
    f["requests"] = len(run.exchanges)
    for fault in ("503", "reset", "reset_after", "spike"):
        f[f"fault_{fault}"] = sum(1 for e in run.exchanges if e.fault == fault)
    f["peak_threads"] = run.record["peak_threads"]
    f["exit_s"] = run.exit_s
    f["wall_s"] = run.record["t_shutdown_return"] - run.record["t_start"]
    return f


# -- report ----------------------------------------------------------------------------------------------------------


COUNTS: list[tuple[str, str, str]] = [  # label, figure, how rounds combine
    ("wall, script start to shutdown_all return (s)", "wall_s", "median"),
    ("shutdown_all return -> process gone (s)", "exit_s", "max"),
    ("peak threads", "peak_threads", "max"),
    ("requests through the proxy", "requests", "sum"),
    ("faults injected: 503 / reset / reset after / spike", "faults", "sum"),
    ("turns expected", "turns_expected", "sum"),
    ("turns lost after the exit", "turns_lost_exit", "sum"),
    ("turns lost after the next start", "turns_lost", "sum"),
    ("operations still journaled after the next start", "journaled_next", "sum"),
    ("turns in the wrong session", "turns_wrong_session", "sum"),
    ("turns out of order", "turns_out_of_order", "sum"),
    ("turns duplicated", "turns_duplicated", "sum"),
    ("commits sent", "commits_sent", "sum"),
    ("commits accepted by the server", "commits_accepted", "sum"),
    ("archives on the server", "archives", "sum"),
    ("commits accepted while a write was in flight", "commits_in_flight", "sum"),
    ("double commits", "double_commits", "sum"),
    ("sessions", "sessions", "sum"),
    ("sessions left uncommitted after the exit", "sessions_uncommitted_exit", "sum"),
    ("sessions left uncommitted after the next start", "sessions_uncommitted_next", "sum"),
    ("recalls handed out", "recalls", "sum"),
    ("recalls with nothing from the server", "recalls_empty", "sum"),
    ("stale recalls handed out", "recalls_stale", "sum"),
]


def combine(values: Sequence[float], how: str) -> float:
    if how == "sum":
        return float(sum(values))
    if how == "max":
        return float(max(values))
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2])


def ratio(h: float | None, m: float | None) -> str:
    if h is None or m is None:
        return "-"
    if m == 0:
        return "-" if h == 0 else "inf"
    return f"{h / m:.2f}x"


def scenario_table(runs: Sequence[Run]) -> list[list[str]]:
    by: dict[str, list[Run]] = {c: [r for r in runs if r.contender == c] for c in CONTENDERS}
    rows: list[list[str]] = []

    def pooled(c: str, part: str, name: str) -> list[int]:
        return sorted(x for r in by[c] for x in r.record[part].get(name) or [])

    for part, names in (("hooks", HOOKS), ("commands", COMMANDS)):
        for name in names:
            samples = {c: pooled(c, part, name) for c in CONTENDERS}
            if not any(samples.values()):
                continue
            for q, label in ((50, "p50"), (99, "p99"), (100, "max")):
                vals = {c: (percentile(s, q) / 1000.0 if s else None) for c, s in samples.items()}
                kind = "hook" if part == "hooks" else "cmd"
                h, m = vals["hermes"], vals["memcore"]
                rows.append([f"{kind} {name} {label} (ms)", fmt(h, ".3f"), fmt(m, ".3f"), ratio(h, m)])
    for label, key, how in COUNTS:
        if key == "faults":
            cells = [
                " / ".join(
                    format(combine([r.figures[f"fault_{k}"] for r in by[c]], "sum"), ".0f")
                    for k in ("503", "reset", "reset_after", "spike")
                )
                for c in CONTENDERS
            ]
            rows.append([label, *cells, ""])
            continue
        vals = {c: combine([r.figures[key] for r in by[c]], how) for c in CONTENDERS}
        spec = ".2f" if key.endswith("_s") else ".0f"
        rows.append(
            [label, fmt(vals["hermes"], spec), fmt(vals["memcore"], spec), ratio(vals["hermes"], vals["memcore"])]
        )
    return rows


@dataclass
class Results(BenchResults):
    benchmark: str = "vs_hermes"
    server: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    tables: dict[str, list[list[str]]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)


def run_summary(run: Run) -> dict[str, Any]:
    """A run for the JSON: figures, per-session server state, and the proxy log (without the latency samples)."""
    return {
        "scenario": run.scenario,
        "contender": run.contender,
        "round": run.round,
        "account": run.account,
        "figures": run.figures,
        "report": run.record.get("report") or {},
        "next_start_report": run.restart.get("report") or {},
        "recalls": [
            {"t0": round(r["t0"] - run.record["t_start"], 4), "session": r["session"], "probes": r["probes"]}
            for r in run.record["recalls"]
        ],
        "switches": [[round(t - run.record["t_start"], 4), sid] for t, sid in run.record["switches"]],
        "after_exit": {"archives": run.after_exit.archives, "live": run.after_exit.live},
        "after_next": {"archives": run.after_next.archives, "live": run.after_next.live, "turns": run.after_next.turns},
        "proxy_log": [
            {
                k: getattr(e, k)
                for k in (
                    "id",
                    "cls",
                    "n",
                    "method",
                    "path",
                    "fault",
                    "status",
                    "upstream_status",
                    "turns",
                    "query",
                    "search_session",
                    "tag",
                )
            }
            | {k: round(getattr(e, k) - run.record["t_start"], 4) for k in ("t_arrive",) if getattr(e, k)}
            for e in run.exchanges
        ],
    }


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
        f"/resume in rotation, exit, next start; think time {c['think_ms']} ms; {c['rounds']} round(s); same server, "
        f"one fresh tenant per contender and round"
    )
    for scenario, rows in res.tables.items():
        plan = SCENARIOS[scenario]
        print()
        print(
            f"scenario {scenario}: {dict(plan.rates) or 'no faults'}"
            + (f", spikes {plan.spike_s} s" if plan.active else "")
        )
        print("(ratio = hermes / memcore; hook = the provider method on hermes' thread; cmd = the agent thread's call)")
        print_table(["figure", "hermes openviking", "memcore openviking", "ratio"], rows)
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


def server_version(binary: str) -> str:
    """The openviking distribution beside the server binary (it may live in another environment)."""
    site = list(Path(binary).resolve().parent.parent.glob("lib/python*/site-packages/openviking-*.dist-info"))
    return re.sub(r"\.dist$", "", site[0].name.split("-")[1]) if site else openviking_version()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="hermes-agent 0.19.0's OpenViking provider against memcore's, through hermes' MemoryManager, on "
        "one real openviking-server behind a logging, fault-injecting proxy; tables on stdout, JSON to --json.",
        epilog="Details: the module docstring and docs/benchmarks.md.",
    )
    parser.add_argument("--quick", action="store_true", help="4 sessions x 3 turns, 1 round")
    parser.add_argument("--sessions", type=int, default=None, help="default 12, quick 4")
    parser.add_argument("--turns", type=int, default=None, help="default 6, quick 3")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per scenario and contender (default 3, quick 1)"
    )
    parser.add_argument("--think", type=float, default=0.0, help="ms the user waits after each turn (default 0)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument(
        "--memcore-workers", type=int, default=None, help="memcore-hermes' workers setting (default: its default, 4)"
    )
    parser.add_argument("--server", default=None, help="openviking-server binary (default: see the module docstring)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help=f"default {DEFAULT_JSON}; a --quick run writes to results/quick/ and never to a tracked results file",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios.split(",") if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = {
        "sessions": args.sessions or (4 if args.quick else 12),
        "turns": args.turns or (3 if args.quick else 6),
        "rounds": args.rounds or (1 if args.quick else 3),
        "think_ms": args.think,
        "memcore_workers": args.memcore_workers,
        "next_start_s": NEXT_START_S,
        "scenarios": {
            s: {"rates": SCENARIOS[s].rates, "spike_s": SCENARIOS[s].spike_s} for s in args.scenarios.split(",")
        },
        "timeouts": TIMEOUTS,
        "memcore_hermes_settings": MEMCORE_SETTINGS,
        "hermes_constants_s": {"session_drain": 10.0, "deferred_commit": 65.0, "manager_shutdown_drain": 5.0},
    }
    res = Results(quick=args.quick, config=config)
    res.versions = {
        n: dist_version(n) for n in ("hermes-agent", "memcore", "memcore-openviking", "memcore-hermes", "httpx")
    }
    begin = time.perf_counter()

    progress = progress_printer(begin)

    server = locate_server(args.server)
    if server is None:
        print("openviking-server not found (--server, OPENVIKING_SERVER, or tox -e openviking first)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="memcore-bench-vs-hermes-"))
    progress(f"starting openviking-server ({server})")
    stack = start(work / "server", server, deadline=90.0, auth_mode="api_key")
    res.server = {"startup_s": stack.startup_s, "version": server_version(server), "binary": server}
    progress(f"server ready in {stack.startup_s} s")
    runs: list[Run] = []
    try:
        with FaultProxy(stack.url) as proxy:
            for scenario in config["scenarios"]:
                for rnd in range(config["rounds"]):
                    order = CONTENDERS if rnd % 2 == 0 else CONTENDERS[::-1]  # who goes first alternates
                    for contender in order:
                        progress(f"{scenario} round {rnd + 1}/{config['rounds']}: {contender}")
                        run = run_round(stack, proxy, scenario, contender, rnd, config, work)
                        progress(summary_line(run))
                        runs.append(run)
    except Exception:
        print(stack.log_tail(), file=sys.stderr)
        raise
    finally:
        progress("stopping the server")
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    res.total_seconds = time.perf_counter() - begin
    res.tables = {s: scenario_table([r for r in runs if r.scenario == s]) for s in config["scenarios"]}
    res.runs = [run_summary(r) for r in runs]
    report_text(res)
    write_json(res, json_path("vs_hermes", args.json, quick=args.quick))
    return 0


def summary_line(run: Run) -> str:
    f = run.figures
    return (
        f"  lost {f['turns_lost_exit']:.0f}->{f['turns_lost']:.0f}, out of order {f['turns_out_of_order']:.0f}, "
        f"dup {f['turns_duplicated']:.0f}, in-flight commits {f['commits_in_flight']:.0f}, "
        f"double {f['double_commits']:.0f}, "
        f"uncommitted {f['sessions_uncommitted_exit']:.0f}->{f['sessions_uncommitted_next']:.0f}, "
        f"stale {f['recalls_stale']:.0f}, wall {f['wall_s']:.1f} s, exit {f['exit_s']:.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())

"""A quick benchmark run never overwrites a tracked results file (benchmarks/results/*.json, a full run's figures).

Every script that writes JSON goes through ``_common.write_json``, which sends a quick run's JSON to
``benchmarks/results/quick/`` whenever the path it is given is a tracked results file; ``_common.json_path`` chooses
the default. No server is needed: the scripts that need OpenViking are read, not imported.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
from _common import BenchResults, is_tracked_result, json_path, write_json  # noqa: E402

#: Every benchmark script that writes JSON, and the name of its tracked results file.
SCRIPTS = {"lifecycle": "lifecycle", "reliability": "reliability", "openviking": "openviking", "vs_hermes": "vs_hermes"}
TRACKED = sorted(_common.RESULTS_DIR.glob("*.json"))


@dataclass
class Quick(BenchResults):
    benchmark: str = "test"
    figure: int = 1


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of benchmarks/results/ that _common takes for the real one (so a broken guard breaks only the copy)."""
    results = tmp_path / "results"
    results.mkdir()
    for path in TRACKED:
        shutil.copy(path, results / path.name)
    monkeypatch.setattr(_common, "RESULTS_DIR", results)
    monkeypatch.setattr(_common, "QUICK_DIR", results / "quick")
    yield results


def in_sandbox(path: Path, sandbox: Path) -> Path:
    """``path`` with the real results directory swapped for the sandbox's."""
    return sandbox / path.name if path.resolve().parent == TRACKED[0].resolve().parent else path


def default_json(script: str) -> Any:
    """The ``--json`` default of ``benchmarks/<script>.py``, read from its source: ``None`` or a Path."""
    path = BENCH / f"{script}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "--json"
        ):
            default = next(k.value for k in node.keywords if k.arg == "default")
            break
    else:
        raise AssertionError(f"{script}.py has no --json option")
    if isinstance(default, ast.Constant) and default.value is None:
        return None
    assert isinstance(default, ast.Name), ast.dump(default)
    scope: dict[str, Any] = {"Path": Path, "__file__": str(path), "json_path": json_path}
    for node in tree.body:  # the module-level names the default is built from (HERE, DEFAULT_JSON...)
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if names & {"HERE", "ROOT", default.id}:
                code = compile(ast.Expression(node.value), str(path), "eval")
                value = eval(code, scope)
                scope.update(dict.fromkeys(names, value))
    return scope[default.id]


def test_the_tracked_files_are_recognised() -> None:
    assert TRACKED, "benchmarks/results/ holds the full runs' JSON"
    for path in TRACKED:
        assert is_tracked_result(path)
        assert is_tracked_result(Path(os.path.relpath(path)))  # relative paths too
    assert not is_tracked_result(_common.QUICK_DIR / "lifecycle.json")


@pytest.mark.parametrize("name", sorted(SCRIPTS.values()))
def test_json_path_never_gives_a_quick_run_a_tracked_file(name: str, tmp_path: Path, sandbox: Path) -> None:
    full = json_path(name, None, quick=False)
    assert full == _common.RESULTS_DIR / f"{name}.json"
    quick = json_path(name, None, quick=True)
    assert quick == _common.QUICK_DIR / f"{name}.json"
    assert not is_tracked_result(quick)
    assert json_path(name, full, quick=True) == quick  # told to write the tracked file: still not
    elsewhere = tmp_path / "mine.json"
    assert json_path(name, elsewhere, quick=True) == elsewhere  # any other path is honoured
    assert json_path(name, full, quick=False) == full


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_script_writes_through_the_guard_and_its_quick_default_is_untracked(script: str, sandbox: Path) -> None:
    source = (BENCH / f"{script}.py").read_text(encoding="utf-8")
    assert "write_json(" in source, f"{script}.py must write its JSON with _common.write_json"
    assert not re.search(r"json\.dump\(|DEFAULT_JSON\.write|\.write_text\(json\.dumps\(asdict", source)
    default = default_json(script)
    if default is not None:
        assert default.resolve().parent == TRACKED[0].resolve().parent  # the full run's default: a tracked file
        default = in_sandbox(default, sandbox)
    # What the script hands write_json in a quick run, and what write_json does with it.
    requested = json_path(SCRIPTS[script], None, quick=True) if default is None else default
    tracked = sorted(sandbox.glob("*.json"))
    before = {p: p.read_bytes() for p in tracked}
    written = write_json(Quick(quick=True), requested)
    assert not is_tracked_result(written)
    assert written == sandbox / "quick" / f"{SCRIPTS[script]}.json"
    assert {p: p.read_bytes() for p in tracked} == before


@pytest.mark.parametrize("tracked", TRACKED, ids=[p.name for p in TRACKED])
def test_write_json_redirects_a_quick_run_from_every_tracked_file(
    tracked: Path, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracked = in_sandbox(tracked, sandbox)
    before = tracked.read_bytes()
    written = write_json(Quick(quick=True), tracked)
    assert written == sandbox / "quick" / tracked.name
    assert tracked.read_bytes() == before
    assert "never overwrites the tracked" in capsys.readouterr().out


def test_write_json_writes_a_full_run_where_asked(tmp_path: Path) -> None:
    target = tmp_path / "full.json"
    assert write_json(Quick(quick=False), target) == target
    assert '"figure": 1' in target.read_text(encoding="utf-8")


@pytest.mark.parametrize("given", [None, "tracked"])
def test_lifecycle_quick_run_leaves_the_tracked_json_alone(given: str | None, tmp_path: Path) -> None:
    """The real ``lifecycle.py --tiny`` (a quick run at the smallest size), by default and when told the tracked
    file: the JSON lands in results/quick/, the tracked file is byte for byte what it was."""
    tracked = _common.RESULTS_DIR / "lifecycle.json"
    before = tracked.read_bytes()
    cmd = [sys.executable, str(BENCH / "lifecycle.py"), "--tiny"]
    if given:
        cmd += ["--json", str(tracked)]
    env = {**os.environ, "MEMCORE_HOME": str(tmp_path / "home")}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=100, check=False)
        assert tracked.read_bytes() == before
    finally:
        if tracked.read_bytes() != before:  # a broken guard must not leave a quick run's figures in the repo
            tracked.write_bytes(before)
    assert done.returncode == 0, done.stderr[-3000:]
    written = re.findall(r"^JSON written to (.+)$", done.stdout, re.M)
    assert [Path(w) for w in written] == [_common.QUICK_DIR / "lifecycle.json"]
    assert "4. scale:" in done.stdout  # every phase ran

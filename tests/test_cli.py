"""The ``memcore`` command line, run in-process through ``main`` (and once as ``python -m memcore``)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from memcore import SQLiteBackend
from memcore import _plugins as registry
from memcore._cli import main

GOOD = [
    '{"op": "session", "id": "chat-1"}',
    '{"op": "turn", "user": "My cat is called Miso.", "assistant": "What a lovely name!"}',
    '{"op": "note", "text": "Has a ginger cat named Miso", "kind": "fact", "metadata": {"pet": "cat"}}',
    '{"op": "switch", "id": "chat-2", "reason": "new"}',
    '{"op": "turn", "user": "Plan my trip to Lisbon", "assistant": "Sure: trams, pasteis de nata and Alfama."}',
    '{"op": "end"}',
]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEMCORE_HOME", str(tmp_path))
    monkeypatch.delenv("MEMCORE_STRICT", raising=False)
    return tmp_path


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def stats(path: Path) -> dict[str, int]:
    backend = SQLiteBackend(path)
    try:
        return backend.stats()
    finally:
        backend.memcore_close()


def assert_clean_error(err: str) -> None:
    assert "Traceback" not in err
    assert "memcore: error: " in err


# -- demo ----------------------------------------------------------------------------------------------------------


def test_demo_shows_recollections_report_and_stats(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert str(home / "demo.sqlite3") in out
    assert re.search(r"QUERY\s+#\s+SCORE\s+SESSION\s+FROM\s+TEXT", out)
    assert re.search(r"espresso in the morning\s+1\s+\d+\.\d\d\s+mon-kickoff", out)
    assert "note/deadline" in out
    assert re.search(r"Report: delivered \d+, committed \d+, failed 0, pending 0, elapsed", out)
    assert "Store: sessions 5," in out
    assert stats(home / "demo.sqlite3")["notes"] == 6
    assert not (home / "memory.sqlite3").exists()  # the user's own store is untouched

    assert main(["demo", "--quiet"]) == 0  # a fresh database each run: the same output again
    again = capsys.readouterr().out
    elapsed = re.compile(r"elapsed [\d.]+ s")
    assert elapsed.sub("", again) == elapsed.sub("", out)


def test_demo_as_a_subprocess(home: Path) -> None:
    env = {**os.environ, "MEMCORE_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "memcore", "demo"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pending 0" in done.stdout and "failed 0" in done.stdout
    assert "Drinks a double espresso" in done.stdout
    # stderr is not a terminal: no bar, a single final line
    assert "\r" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("memcore: replayed 36 events")


def test_demo_does_not_replace_a_foreign_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = write(tmp_path / "mine.jsonl", GOOD)
    db = tmp_path / "real.sqlite3"
    assert main(["replay", str(mine), "--path", str(db), "-q"]) == 0
    capsys.readouterr()
    assert main(["demo", "--path", str(db)]) == 2
    assert_clean_error(capsys.readouterr().err)
    assert stats(db)["messages"] == 4


# -- replay and recall ---------------------------------------------------------------------------------------------


def test_replay_then_recall(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "chat.jsonl", ["# my chat", "", *GOOD, '{"op": "recall", "query": "cat", "limit": 2}'])
    assert main(["replay", str(log), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "Has a ginger cat named Miso" in out and "pending 0" in out
    assert stats(home / "memory.sqlite3") == {
        "sessions": 2,
        "messages": 4,
        "committed_messages": 4,
        "notes": 1,
        "commits": 2,
    }

    assert main(["recall", "Lisbon trip", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found[0]["text"] == "Plan my trip to Lisbon"
    assert found[0]["session_id"] == "chat-2"

    assert main(["recall", "Miso", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"1\s+\d+\.\d\d\s+chat-1\s+\S+\s+.*Miso", out)
    assert len(out.strip().splitlines()) == 2  # header and one row


def test_replay_from_stdin_with_session_option(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = '{"op": "note", "text": "Prefers tea after lunch", "kind": "preference"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    db = home / "team.sqlite3"
    assert main(["replay", "-", "--session", "support-42", "--path", str(db), "-q"]) == 0
    capsys.readouterr()
    assert main(["recall", "tea", "--path", str(db), "--json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["session_id"] == "support-42" and item["metadata"]["kind"] == "preference"


BAD_LINES = {
    "bad json": '{"op": "turn", "user": "hi" "assistant": "hello"}',
    "unknown op": '{"op": "dance"}',
    "bad session id": '{"op": "switch", "id": "  ", "reason": "new"}',
    "control char in id": '{"op": "switch", "id": "a\\u0007b", "reason": "new"}',
    "unknown reason": '{"op": "switch", "id": "s9", "reason": "sideways"}',
    "wrong type": '{"op": "note", "text": 42}',
    "unknown key": '{"op": "end", "now": true}',
    "missing key": '{"op": "recall"}',
    "rewind elsewhere": '{"op": "switch", "id": "elsewhere", "reason": "rewind"}',
    "late session": '{"op": "session", "id": "s2"}',
    "not an object": '["op", "end"]',
    "bad messages": '{"op": "turn", "messages": [{"content": "no role"}]}',
}


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_replay_rejects_a_bad_line_and_applies_nothing(
    bad: str, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(tmp_path / "chat.jsonl", [*GOOD[:2], bad, *GOOD[2:]])
    assert main(["replay", str(log)]) == 2
    out, err = capsys.readouterr()
    assert f"{log}:3: " in err
    assert_clean_error(err)
    assert "nothing was applied" in err
    assert out == ""
    assert stats(home / "memory.sqlite3") == dict.fromkeys(
        ("sessions", "messages", "committed_messages", "notes", "commits"), 0
    )


def test_replay_lists_every_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "chat.jsonl", [BAD_LINES["unknown op"], GOOD[1], BAD_LINES["wrong type"]])
    assert main(["replay", str(log)]) == 2
    err = capsys.readouterr().err
    assert f"{log}:1: unknown op 'dance'" in err
    assert f"{log}:3: note: 'text' must be a string, not an integer" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["replay", "missing.jsonl"], "cannot read missing.jsonl"),
        (["recall", "cat", "--backend", "nope"], "no backend named 'nope'"),
        (["replay", "{log}", "--backend", "nope"], "no backend named 'nope'"),
        (["replay", "{log}", "--session", ""], "--session is empty"),
        (["replay", "{log}", "--backend", "sqlite", "--backend", "sqlite"], "given more than once"),
        (["recall", "cat", "--path", "{tmp}/nowhere.sqlite3"], "no memory store"),
        (["retry", "--only-backend", " "], "--only-backend is empty"),
        (["retry", "--session", ""], "--session is empty"),
        (["retry", "--deliver", "--backend", "nope"], "no backend named 'nope'"),
    ],
)
def test_bad_input_gives_one_clear_error(
    argv: list[str], expected: str, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(tmp_path / "chat.jsonl", GOOD)
    argv = [a.format(log=log, tmp=tmp_path) for a in argv]
    assert main(argv) != 0
    out, err = capsys.readouterr()
    assert out == ""
    assert_clean_error(err)
    assert expected in err
    assert len(err.strip().splitlines()) == 1
    assert not (home / "memory.sqlite3").exists()
    assert not (tmp_path / "nowhere.sqlite3").exists()


FAILING_BACKEND = """
import memcore

class FailingBackend:
    @memcore.hookimpl
    def memcore_write(self, session, messages):
        pass

    @memcore.hookimpl
    def memcore_commit(self, session):
        raise RuntimeError("the service refused the commit")
"""


def test_failures_are_reported_and_exit_1(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "fake-0.1.dist-info").mkdir(parents=True)
    (plugins / "fake-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fake\nVersion: 0.1\n")
    (plugins / "fake-0.1.dist-info" / "entry_points.txt").write_text(
        "[memcore.backends]\nfailing = memcore_fake_failing:FailingBackend\nbroken = memcore_no_such_module:X\n"
    )
    (plugins / "memcore_fake_failing.py").write_text(FAILING_BACKEND)
    monkeypatch.syspath_prepend(str(plugins))
    log = write(tmp_path / "chat.jsonl", GOOD)

    status = main(["replay", str(log), "-q", "--backend", "sqlite", "--backend", "failing", "--backend", "broken"])
    out, err = capsys.readouterr()
    assert status == 1
    assert "skipped backend broken:" in out
    assert "failed: commit of session 'chat-1' on failing: RuntimeError('the service refused the commit')" in out
    assert re.search(r"Report: delivered \d+, committed 2, failed [1-9]\d*, pending 0", out)
    assert "Traceback" not in err
    assert err.strip().endswith("operation(s) failed and 0 are left pending")
    assert stats(home / "memory.sqlite3")["commits"] == 2  # the healthy backend is not held back


# -- backends, help, version ---------------------------------------------------------------------------------------


def test_backends_lists_sqlite_with_capabilities(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the whole list of capabilities fits
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"sqlite\s+memcore\._sqlite:SQLiteBackend\s+close, commit, .*recall, remember, .*write", out)
    assert main(["backends", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    [sqlite] = [b for b in listing["backends"] if b["name"] == "sqlite"]
    assert {"write", "commit", "recall", "remember"} <= set(sqlite["capabilities"])
    assert sqlite["error"] is None


def test_backends_shows_a_load_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = registry.available

    def available(group: str = registry.BACKENDS_GROUP) -> dict[str, str]:
        return {**real(group), "broken": "memcore_no_such_module:Backend"} if group == registry.BACKENDS_GROUP else {}

    monkeypatch.setattr(registry, "available", available)
    assert main(["backends", "--json"]) == 0
    [broken] = [b for b in json.loads(capsys.readouterr().out)["backends"] if b["name"] == "broken"]
    assert "ModuleNotFoundError" in broken["error"] and broken["capabilities"] == []
    assert main(["backends"]) == 0
    assert re.search(
        r"broken\s+memcore_no_such_module:Backend\s+load error: ModuleNotFoundError", capsys.readouterr().out
    )


@pytest.mark.parametrize("command", ["demo", "replay", "recall", "backends", "pending", "retry"])
def test_help_for_each_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: memcore {command}")
    assert f"examples:\n  memcore {command}" in out


def test_top_level_help_version_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("memcore 0.")
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err
    assert main(["recall", "x", "--limit", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert main(["pending", "--journal", " "]) == 2
    assert "the journal path is empty" in capsys.readouterr().err
    assert main(["retry", "--journal", ""]) == 2
    assert "the journal path is empty" in capsys.readouterr().err

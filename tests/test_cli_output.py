"""What the command line prints: commands it suggests work as written, recall says when it timed out, and tables use
the terminal's width."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import memcore
from memcore._cli import main
from memcore._commands import ReadOnlyStore
from memcore._table import table, width_of, wrap

LOG = '{"op": "note", "text": "Prefers green tea", "kind": "preference"}\n'


def test_the_demo_ends_with_a_recall_command_that_works(memcore_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    command = last.split(": ", 1)[1]
    assert command == f"memcore recall --path {shlex.quote(str(memcore_home / 'demo.sqlite3'))} espresso"
    argv = shlex.split(command)
    assert argv[0] == "memcore"
    assert main(argv[1:]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "Drinks a double espresso" in out


def test_the_demo_with_path_names_its_own_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "my demo.sqlite3"  # a space: the command quotes it
    assert main(["demo", "--quiet", "--path", str(db)]) == 0
    command = capsys.readouterr().out.strip().splitlines()[-1].split(": ", 1)[1]
    assert main(shlex.split(command)[1:]) == 0
    assert "espresso" in capsys.readouterr().out


def test_the_help_examples_recall_what_the_demo_remembered(
    memcore_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--help"]) == 0
    examples = capsys.readouterr().out.split("examples:\n", 1)[1]
    commands = [line.strip() for line in examples.splitlines() if line.strip().startswith("memcore ")]
    assert commands[0] == "memcore demo"
    assert commands[1].startswith("memcore recall --path ")
    assert main([*shlex.split(commands[0])[1:], "--quiet"]) == 0
    capsys.readouterr()
    assert main(shlex.split(commands[1])[1:]) == 0  # the example after the demo works as written
    assert "espresso" in capsys.readouterr().out


def test_recall_with_timeout_zero_says_it_timed_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "chat.jsonl"
    log.write_text(LOG, encoding="utf-8")
    store = tmp_path / "store.sqlite3"
    assert main(["replay", str(log), "-q", "--path", str(store)]) == 0
    capsys.readouterr()
    assert main(["recall", "green tea", "--path", str(store), "--timeout", "0"]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "Nothing recalled for 'green tea' within the 0 s timeout."
    assert err.startswith("memcore: error: recall timed out after 0 s") and "--timeout" in err
    assert main(["recall", "green tea", "--path", str(store), "--timeout", "0", "--json"]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "[]" and "timed out" in err
    assert main(["recall", "green tea", "--path", str(store)]) == 0  # in time: found, status 0
    out, err = capsys.readouterr()
    assert "Prefers green tea" in out and err == ""
    assert main(["recall", "coffee", "--path", str(store)]) == 0
    assert capsys.readouterr().out.strip() == "Nothing recalled for 'coffee'."


@pytest.mark.parametrize("columns", [100, 120, 200])
def test_the_demo_table_uses_the_terminal_width(
    columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.search(r"\s\d\s+\d+\.\d\d\s", line)]
    assert len(rows) == 12
    assert all(width_of(line) <= columns for line in rows)
    assert "When is the Tidewatch beta due?" in out  # 31 characters: not cut while the terminal has room
    if columns == 200:
        assert "Drinks a double espresso every morning before starting work; no meetings before 9:30." in out


def test_table_cuts_limited_columns_only_as_far_as_needed() -> None:
    rows = [["a query of thirty-one characters", "1", "x" * 200]]
    wide = table(["QUERY", "#", "TEXT"], rows, width=250, limits=[10])
    assert wide.splitlines()[1].startswith("a query of thirty-one characters  1  " + "x" * 200)
    narrow = table(["QUERY", "#", "TEXT"], rows, width=70, limits=[10])
    line = narrow.splitlines()[1]
    assert width_of(line) == 70
    assert line.startswith("a query of thirty-one characters  1  xxx")  # it needs less than its share: made whole
    narrower = table(["QUERY", "#", "TEXT"], rows, width=60, limits=[10]).splitlines()[1]
    assert narrower.startswith("a query of thirty-one ch...  1  xxx")  # an even share each (27 and 27 cells)
    assert width_of(narrower) == 60
    tight = table(["QUERY", "#", "TEXT"], rows, width=20, limits=[10]).splitlines()[1]
    assert tight == "a query...  1  xxxxxxx..."  # never below the limits (10 each), even past the width


def test_table_without_limits_keeps_columns_and_cuts_the_last() -> None:
    out = table(["NAME", "TARGET", "CAPABILITIES"], [["sqlite", "memcore._sqlite:SQLiteBackend", "c" * 90]], width=60)
    line = out.splitlines()[1]
    assert line.startswith("sqlite  memcore._sqlite:SQLiteBackend  ccc") and line.endswith("...")
    assert width_of(line) == 60


def test_wrap_fits_the_width_and_marks_what_it_left_out() -> None:
    text = " ".join(f"word{n}" for n in range(100))
    lines = wrap(text, 40, first="  last error: ", rest="    ", max_lines=3)
    assert len(lines) == 3 and all(width_of(line) <= 40 for line in lines)
    assert lines[0].startswith("  last error: word0 ") and lines[1].startswith("    word")
    assert lines[-1].endswith("...")
    assert wrap("https://" + "x" * 100, 30, rest="  ") == [
        "https://" + "x" * 22,
        "  " + "x" * 28,
        "  " + "x" * 28,
        "  " + "x" * 22,
    ]


def test_recall_exits_1_when_a_backends_recall_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "chat.jsonl"
    log.write_text(LOG, encoding="utf-8")
    store = tmp_path / "store.sqlite3"
    assert main(["replay", str(log), "-q", "--path", str(store)]) == 0
    capsys.readouterr()

    def broken(self: object, query: str, session: object, limit: int) -> list[object]:
        raise ValueError("the recall index is damaged")

    monkeypatch.setattr(ReadOnlyStore, "memcore_recall", memcore.hookimpl(broken))
    assert main(["recall", "green tea", "--path", str(store)]) == 1
    out, err = capsys.readouterr()
    assert "Nothing recalled" in out and "the recall index is damaged" in err and "Traceback" not in err

"""The pure parts of the mapping: switch reasons, turn slicing, formatting, config."""

from __future__ import annotations

import memcore
import pytest

from memcore_hermes import current_turn, format_recollections, switch_reason
from memcore_hermes._provider import resolve_config


@pytest.mark.parametrize(
    ("new", "reason", "reset", "rewound", "expected"),
    [
        ("b", "new_session", True, False, "new"),
        ("b", "", True, False, "new"),
        ("b", "branch", False, False, "branch"),
        ("b", "resume", False, False, "resume"),
        ("b", "compression", False, False, "compress"),
        ("a", "compression", False, False, "compress"),
        ("a", "", False, True, "rewind"),
        ("b", "", False, False, "resume"),
        ("b", "something-else", False, False, "resume"),
    ],
)
def test_switch_reason(new: str, reason: str, reset: bool, rewound: bool, expected: str) -> None:
    assert switch_reason(new, "a", reason=reason, reset=reset, rewound=rewound) == expected
    assert expected in memcore.SWITCH_REASONS


def test_current_turn_slices_the_last_turn_with_tool_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "web_search", "arguments": "{}"}}
    history = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": [call], "reasoning": "hidden"},
        {"role": "tool", "content": "result", "tool_call_id": "c1"},
        {"role": "assistant", "content": "two"},
    ]
    turn = current_turn(history, "second", "two")
    assert [m["role"] for m in turn] == ["user", "assistant", "tool", "assistant"]
    assert turn[0]["content"] == "second"
    assert turn[1]["tool_calls"] == [call]
    assert "reasoning" not in turn[1]
    assert current_turn([], "x", "y") == []
    assert current_turn([{"role": "user", "content": "x"}], "x", "y") == []


def test_format_and_config() -> None:
    assert format_recollections([]) == ""
    block = format_recollections([memcore.Recollection(text="likes\n espresso")])
    assert "- likes espresso" in block
    config = resolve_config({"backend": "sqlite", "prefetch_timeout": "1.5"})
    assert config["backends"] == ["sqlite"]
    assert config["prefetch_timeout"] == 1.5
    assert resolve_config({"backends": "a, b"})["backends"] == ["a", "b"]

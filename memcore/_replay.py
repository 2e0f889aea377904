"""The replay event format: a whole JSONL event log parsed and validated before anything is applied.

One JSON object per line, with an ``op`` key; blank lines and lines whose first non-space character is ``#`` are
skipped. The format is documented in ``docs/replay.md``; :mod:`memcore._player` applies a parsed :class:`Script`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import _validate as check
from ._errors import MemcoreError
from ._lifecycle import SWITCH_REASONS
from ._records import Message

#: The session a script starts in when it has no ``session`` event and none is given on the command line.
DEFAULT_SESSION = "replay"
DEFAULT_LIMIT = 5
#: How many bad lines one error lists (the count is exact).
ERRORS_SHOWN = 20


@dataclass(frozen=True)
class Turn:
    line: int
    user: str
    assistant: str
    messages: tuple[Message, ...] | None


@dataclass(frozen=True)
class NoteEvent:
    line: int
    text: str
    kind: str
    metadata: Mapping[str, Any] | None


@dataclass(frozen=True)
class Switch:
    line: int
    session_id: str
    reason: str
    parent: str | None
    turns: int | None = None


@dataclass(frozen=True)
class End:
    line: int


@dataclass(frozen=True)
class RecallEvent:
    line: int
    query: str
    limit: int


ReplayEvent = Turn | NoteEvent | Switch | End | RecallEvent


@dataclass(frozen=True)
class Script:
    """A validated event log. ``session_id`` is the id of its ``session`` event, if it has one."""

    source: str
    session_id: str | None
    events: tuple[ReplayEvent, ...]

    def session_ids(self, default: str = DEFAULT_SESSION) -> list[str]:
        """Every session the script writes to or switches to, in order of first appearance."""
        ids = [self.session_id or default] + [e.session_id for e in self.events if isinstance(e, Switch)]
        return list(dict.fromkeys(ids))


class ScriptError(MemcoreError, ValueError):
    """An event log with bad lines; ``problems`` holds ``(line number, what is wrong)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[int, str]]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} bad line(s); nothing was applied")

    def lines(self) -> list[str]:
        """``FILE:LINE: what is wrong`` for the first :data:`ERRORS_SHOWN` problems, plus a count of the rest."""
        out = [f"{self.source}:{n}: {what}" for n, what in self.problems[:ERRORS_SHOWN]]
        if len(self.problems) > ERRORS_SHOWN:
            out.append(f"{self.source}: ... and {len(self.problems) - ERRORS_SHOWN} more bad lines")
        return out


class _Bad(Exception):
    """One line's problem, raised while checking it."""


# -- field schema -------------------------------------------------------------------------------------------------

_TYPES: dict[str, Callable[[object], bool]] = {
    "a string": lambda v: isinstance(v, str),
    "an array": lambda v: isinstance(v, list),
    "an object": lambda v: isinstance(v, dict),
    "an integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "a string or null": lambda v: v is None or isinstance(v, str),
}

#: For each op: its keys (besides ``op``), the JSON type each must have, and whether it is required.
SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "session": {"id": ("a string", True)},
    "turn": {"user": ("a string", False), "assistant": ("a string", False), "messages": ("an array", False)},
    "note": {"text": ("a string", True), "kind": ("a string", False), "metadata": ("an object", False)},
    "switch": {
        "id": ("a string", False),
        "reason": ("a string", True),
        "parent": ("a string or null", False),
        "turns": ("an integer", False),
    },
    "end": {},
    "recall": {"query": ("a string", True), "limit": ("an integer", False)},
}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for name in ("a string", "an integer", "an array", "an object"):
        if _TYPES[name](value):
            return name
    return "a number" if isinstance(value, float) else type(value).__name__


def _check_keys(op: str, obj: Mapping[str, Any]) -> None:
    fields = SCHEMA[op]
    unknown = sorted(set(obj) - set(fields) - {"op"})
    if unknown:
        allowed = ", ".join(sorted(fields)) or "no other keys"
        raise _Bad(f"{op}: unknown key(s) {', '.join(map(repr, unknown))} (allowed: {allowed})")
    for key, (expected, required) in fields.items():
        if key not in obj:
            if required:
                raise _Bad(f"{op}: missing required key {key!r} ({expected})")
        elif not _TYPES[expected](obj[key]):
            raise _Bad(f"{op}: {key!r} must be {expected}, not {_json_type(obj[key])}")


# -- parsing ------------------------------------------------------------------------------------------------------


class _Parser:
    """Checks one line after another, following the current session so that a rewind to another id is caught."""

    def __init__(self, default_session: str):
        self.current = default_session
        self.session_id: str | None = None
        self.events: list[ReplayEvent] = []
        self._builders: dict[str, Callable[[int, Mapping[str, Any]], ReplayEvent]] = {
            "turn": self._turn,
            "note": self._note,
            "switch": self._switch,
            "end": self._end,
            "recall": self._recall,
        }

    def line(self, n: int, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise _Bad(f"expected a JSON object with an 'op' key, got {_json_type(obj)}")
        op = obj.get("op")
        if not isinstance(op, str):
            raise _Bad("missing 'op' key" if op is None else f"'op' must be a string, not {_json_type(op)}")
        if op not in SCHEMA:
            raise _Bad(f"unknown op {op!r} (expected one of: {', '.join(SCHEMA)})")
        _check_keys(op, obj)
        try:
            if op == "session":
                self._session(obj)
            else:
                self.events.append(self._builders[op](n, obj))
        except MemcoreError as exc:  # a check of memcore._validate: bad id or content
            raise _Bad(f"{op}: {exc}") from None

    def _session(self, obj: Mapping[str, Any]) -> None:
        if self.events or self.session_id is not None:
            raise _Bad("session: must be the first event, at most once (use 'switch' to change sessions)")
        self.session_id = self.current = check.session_id(obj["id"])

    def _turn(self, n: int, obj: Mapping[str, Any]) -> Turn:
        messages = None
        if "messages" in obj:
            messages = check.messages(obj["messages"])
            if not messages:
                raise _Bad("turn: 'messages' is empty")
        elif "user" not in obj or "assistant" not in obj:
            raise _Bad("turn: needs 'user' and 'assistant' (or 'messages')")
        user = check.text(obj.get("user", ""), "user")
        assistant = check.text(obj.get("assistant", ""), "assistant")
        return Turn(n, user, assistant, messages)

    def _note(self, n: int, obj: Mapping[str, Any]) -> NoteEvent:
        kind = check.text(obj.get("kind", "note"), "kind")
        if not kind.strip():
            raise _Bad("note: 'kind' is blank")
        return NoteEvent(n, check.text(obj["text"], "text"), kind, obj.get("metadata"))

    def _switch(self, n: int, obj: Mapping[str, Any]) -> Switch:
        reason = obj["reason"]
        if reason not in SWITCH_REASONS:
            raise _Bad(f"switch: unknown reason {reason!r} (expected one of: {', '.join(sorted(SWITCH_REASONS))})")
        if "id" not in obj and reason not in ("compress", "rewind"):
            raise _Bad(f"switch: {reason!r} needs the new session's 'id'")
        new_id = check.session_id(obj.get("id", self.current), "session id")
        if reason == "rewind" and new_id != self.current:
            raise _Bad(f"switch: rewind keeps the session; got {new_id!r} while in {self.current!r}")
        parent = obj.get("parent")
        if parent is not None:
            check.session_id(parent, "parent session id")
        turns = obj.get("turns")
        if turns is not None and (reason != "rewind" or turns < 1):
            raise _Bad(f"switch: 'turns' is for a rewind, and at least 1 (got {turns} for {reason!r})")
        self.current = new_id
        return Switch(n, new_id, reason, parent, turns)

    def _end(self, n: int, obj: Mapping[str, Any]) -> End:
        return End(n)

    def _recall(self, n: int, obj: Mapping[str, Any]) -> RecallEvent:
        query = check.text(obj["query"], "query")
        if not query.strip():
            raise _Bad("recall: 'query' is blank")
        limit = obj.get("limit", DEFAULT_LIMIT)
        if limit < 1:
            raise _Bad(f"recall: 'limit' must be at least 1, not {limit}")
        return RecallEvent(n, query, limit)


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for n, raw in enumerate(data.split(b"\n"), start=1):
        yield n, raw.rstrip(b"\r")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse(data: bytes, source: str, default_session: str = DEFAULT_SESSION) -> Script:
    """Parse and validate a whole event log; :class:`ScriptError` lists every bad line, and then nothing is applied.

    ``default_session`` is where the script starts unless its first event is a ``session`` event."""
    parser = _Parser(check.session_id(default_session))
    problems: list[tuple[int, str]] = []
    for n, raw in _lines(data):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append((n, f"not UTF-8 text (byte {exc.start + 1})"))
            continue
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            problems.append((n, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        except ValueError as exc:
            problems.append((n, f"invalid JSON: {exc}"))
            continue
        try:
            parser.line(n, obj)
        except _Bad as exc:
            problems.append((n, str(exc)))
    if problems:
        raise ScriptError(source, problems)
    return Script(source, parser.session_id, tuple(parser.events))

"""Plain-text rendering for the command line: fixed-width tables and a one-line progress bar."""

from __future__ import annotations

import os
import shutil
import time
import unicodedata
from collections.abc import Sequence
from typing import TextIO

ELLIPSIS = "..."


def terminal_width(default: int = 120) -> int:
    """Columns of the terminal on stdout (``COLUMNS`` wins); ``default`` when stdout is not a terminal."""
    return shutil.get_terminal_size((default, 24)).columns


def char_width(char: str) -> int:
    """Cells one character takes on a terminal: 2 for wide East Asian characters, 0 for combining marks."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width_of(text: str) -> int:
    return sum(char_width(c) for c in text)


def one_line(text: str) -> str:
    """Whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(text.split())


def truncate(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells, ending in ``...`` when something was cut."""
    if width_of(text) <= width:
        return text
    if width <= len(ELLIPSIS):
        return ELLIPSIS[:width]
    room = width - len(ELLIPSIS)
    kept = []
    for char in text:
        room -= char_width(char)
        if room < 0:
            break
        kept.append(char)
    return "".join(kept).rstrip() + ELLIPSIS


def pad(text: str, width: int, right: bool = False) -> str:
    fill = " " * max(width - width_of(text), 0)
    return fill + text if right else text + fill


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    limits: Sequence[int | None] = (),
    right: Sequence[int] = (),
) -> str:
    """A table with two spaces between columns, fitted to ``width`` cells. Only the columns with a limit (``limits[i]``)
    and the last column give way when a line would not fit: each is cut, but never below its limit (the last column:
    its limit if given, else 10 cells). The room left over is shared out evenly among them: a column that needs less
    than its share is made whole and the others share the rest, so that a column a few cells too long is not cut to
    make room for a long text, nor a long text cut to nothing for a long column. Other
    columns keep their whole width; when even so a line does not fit, it is longer than ``width``. Columns in
    ``right`` are right-aligned."""
    cells = [[one_line(c) for c in row] for row in rows]
    ncols = len(headers)
    floors = [limits[i] if i < len(limits) else None for i in range(ncols)]
    if floors[-1] is None:
        floors[-1] = 10
    natural = [max([width_of(headers[i])] + [width_of(row[i]) for row in cells]) for i in range(ncols)]
    widths = [n if f is None else min(n, f) for n, f in zip(natural, floors, strict=True)]
    spare = width - sum(widths) - 2 * (ncols - 1)
    short = sorted((i for i in range(ncols) if widths[i] < natural[i]), key=lambda i: natural[i] - widths[i])
    for k, i in enumerate(short):
        if spare <= 0:
            break
        grant = min(natural[i] - widths[i], spare // (len(short) - k))
        widths[i] += grant
        spare -= grant
    lines = []
    for row in [list(headers), *cells]:
        row = [truncate(c, w) for c, w in zip(row, widths, strict=True)]
        lines.append(
            "  ".join(pad(c, w, i in right) for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        )
    return "\n".join(lines)


def wrap(text: str, width: int, *, first: str = "", rest: str = "", max_lines: int = 0) -> list[str]:
    """``text`` (on one line) wrapped into lines of at most ``width`` cells, the first starting with ``first`` and the
    others with ``rest``; past ``max_lines`` lines (if given) the last one kept ends in ``...``."""
    words = one_line(text).split(" ")
    lines: list[str] = []
    line = first
    room = max(width, width_of(first) + 10, width_of(rest) + 10)
    for word in words:
        while word:
            sep = "" if line in (first, rest) else " "
            if width_of(line + sep + word) <= room:
                line += sep + word
                word = ""
            elif line not in (first, rest):
                lines.append(line)
                line = rest
            else:  # a word longer than a whole line: cut it
                cut = room - width_of(line)
                piece = ""
                for char in word:
                    if width_of(piece + char) > cut:
                        break
                    piece += char
                lines.append(line + piece)
                line, word = rest, word[len(piece) :]
    if line not in (first, rest) or not lines:
        lines.append(line)
    if max_lines and len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = truncate(lines[-1] + " " + ELLIPSIS, room)  # cut if need be: it ends in "..." either way
    return lines


class Progress:
    """A one-line bar on ``stream``, redrawn in place with ``\\r``, only when ``stream`` is a terminal.

    ``finish`` clears the bar and writes one final line (on a terminal or not), unless ``enabled`` is false.
    """

    def __init__(self, stream: TextIO, label: str, *, enabled: bool = True, bar: int = 24, interval: float = 0.05):
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self.live = enabled and _isatty(stream)
        self.bar = bar
        self.interval = interval
        self._drawn = 0
        self._last = 0.0

    def update(self, done: int, total: int, note: str = "") -> None:
        if not self.live:
            return
        now = time.monotonic()
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        filled = self.bar * done // total if total else self.bar
        line = f"{self.label} [{'#' * filled}{'-' * (self.bar - filled)}] {done}/{total}"
        if note:
            line += f"  {note}"
        line = truncate(line, _columns(self.stream) - 1)
        self.stream.write("\r" + pad(line, self._drawn))
        self.stream.flush()
        self._drawn = width_of(line)

    def finish(self, message: str = "") -> None:
        if self.live and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
        if self.enabled and message:
            self.stream.write(message + "\n")
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns if columns > 20 else 80

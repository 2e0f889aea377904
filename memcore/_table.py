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
    """A table with two spaces between columns. Column ``i`` is cut to ``limits[i]`` cells when given; the last column
    is cut so that each line fits in ``width`` cells (keeping at least 10). Columns in ``right`` are right-aligned."""
    cells = [[one_line(c) for c in row] for row in rows]
    ncols = len(headers)
    for row in cells:
        for i in range(ncols - 1):
            limit = limits[i] if i < len(limits) else None
            if limit is not None:
                row[i] = truncate(row[i], limit)
    widths = [max([width_of(headers[i])] + [width_of(row[i]) for row in cells]) for i in range(ncols)]
    last = max(width - sum(widths[:-1]) - 2 * (ncols - 1), 10)
    widths[-1] = min(widths[-1], last)
    lines = []
    for row in [list(headers), *cells]:
        row[-1] = truncate(row[-1], widths[-1])
        lines.append(
            "  ".join(pad(c, w, i in right) for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        )
    return "\n".join(lines)


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

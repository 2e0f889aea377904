"""A second memcore backend for the tests, beside memcore's SQLite store: lists in memory, users kept apart, turns
recallable once committed, notes at once, recall by shared words. It shows the adapter needs nothing of one backend."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import memcore

_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


class ListStore:
    name = "liststore"
    separates_users = True

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the tests read it from their own thread
        self.written: dict[tuple[str | None, str], list[memcore.Message]] = {}
        self.committed: dict[tuple[str | None, str], int] = {}
        self.notes: dict[tuple[str | None, str], list[memcore.Note]] = {}

    @memcore.hookimpl
    def memcore_write(self, session: memcore.Session, messages: Sequence[memcore.Message]) -> None:
        with self._lock:
            self.written.setdefault((session.user_id, session.id), []).extend(messages)

    @memcore.hookimpl
    def memcore_remember(self, session: memcore.Session, note: memcore.Note) -> None:
        with self._lock:
            self.notes.setdefault((session.user_id, session.id), []).append(note)

    @memcore.hookimpl
    def memcore_commit(self, session: memcore.Session) -> None:
        key = (session.user_id, session.id)
        with self._lock:
            self.committed[key] = len(self.written.get(key, []))

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: memcore.Session | None, limit: int, user_id: str | None
    ) -> Sequence[memcore.Recollection]:
        wanted = _words(query)
        found: list[tuple[int, int, memcore.Recollection]] = []
        with self._lock:
            for (user, sid), messages in self.written.items():
                if user != user_id:
                    continue
                for m in messages[: self.committed.get((user, sid), 0)]:
                    score = len(wanted & _words(m.content))
                    if score:
                        rec = memcore.Recollection(
                            text=m.content, score=score, source=self.name, session_id=sid, metadata={"kind": m.role}
                        )
                        found.append((score, len(found), rec))
            for (user, sid), notes in self.notes.items():
                if user != user_id:
                    continue
                for note in notes:
                    score = len(wanted & _words(note.text))
                    if score:
                        rec = memcore.Recollection(
                            text=note.text, score=score, source=self.name, session_id=sid, metadata={"kind": note.kind}
                        )
                        found.append((score, len(found), rec))
        found.sort(key=lambda f: (-f[0], f[1]))
        return [rec for _, _, rec in found[:limit]]

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        with self._lock:
            for table in (self.written, self.committed, self.notes):
                for key in [k for k in table if k[0] == user_id and session_id in (None, k[1])]:
                    del table[key]
        return None

    def messages(self, user_id: str | None, session_id: str) -> list[memcore.Message]:
        with self._lock:
            return list(self.written.get((user_id, session_id), []))

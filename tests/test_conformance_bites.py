"""Proof that the conformance suite bites: run it (with pytester) against deliberately broken backends and check that
it fails each, in the tests that should catch it; and that correct variants pass. Also: the override guard, skips
named after the missing capability, polling of background indexing, and the ``--memcore-backend`` plugin."""

from __future__ import annotations

import importlib.metadata
import posixpath
import queue
import random
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import httpx
import pytest
from test_conformance_http import LoopbackBackend

import memcore
from memcore import Message, Note, Recollection, Session
from memcore._sqlite import fts_query
from memcore.testing import (
    AWKWARD_SESSION_IDS,
    BackendSuite,
    Jitter,
    OverrideError,
    capabilities_of,
    decoys,
    poll,
    requires,
)

pytest_plugins = ["pytester"]

# -- broken (and correct) backends: real SQLite storage, one defect each ---------------------------------------------


class DropsEveryTenthWrite(memcore.SQLiteBackend):
    """Acknowledges every write but silently stores only nine in ten."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes = 0

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        self.writes += 1
        if self.writes % 10:
            super().memcore_write(session, messages)


def basename(session: Session) -> Session:
    return attrs.evolve(session, id=session.id.rsplit("/", 1)[-1])


class MangledIds(memcore.SQLiteBackend):
    """Files sessions under the last path component of their id (a file-per-session store gone wrong): ``../x`` and
    ``x`` are one session."""

    @memcore.hookimpl
    def memcore_open_session(self, session: Session) -> None:
        super().memcore_open_session(basename(session))

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        super().memcore_write(basename(session), messages)

    @memcore.hookimpl
    def memcore_remember(self, session: Session, note: Note) -> None:
        super().memcore_remember(basename(session), note)

    @memcore.hookimpl
    def memcore_commit(self, session: Session) -> None:
        super().memcore_commit(basename(session))

    @memcore.hookimpl
    def memcore_history(self, session: Session) -> Sequence[Message]:
        return super().memcore_history(basename(session))


class MangledIdsWithoutHistory(MangledIds):
    memcore_history = None  # type: ignore[assignment]


class ScopedSQLite(memcore.SQLiteBackend):
    """Keeps sessions apart: recall in a session searches only that session (correct)."""

    leak = False
    separates_users = False  # its recall below searches every user's sessions

    @memcore.hookimpl
    def memcore_recall(self, query: str, session: Session | None, limit: int) -> Sequence[Recollection]:
        if session is None or self.leak:
            return super().memcore_recall(query, session, limit)
        match = fts_query(query)
        if not match:
            return []
        rows = self._db().execute(
            "SELECT text, session_id, bm25(recall) FROM recall WHERE recall MATCH ? AND session_id = ? "
            "ORDER BY bm25(recall) LIMIT ?",
            (match, session.id, limit),
        )
        return [Recollection(text=t, score=-rank, session_id=sid) for t, sid, rank in rows]


class LeakyScopedSQLite(ScopedSQLite):
    """Declared scoped, but returns other sessions' recall."""

    leak = True


class OutOfOrder(memcore.SQLiteBackend):
    """Stores each turn whole, but at a random place in the session's history."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = random.Random(7)
        self.used: set[int] = set()

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        base = self.rng.randrange(1, 10**9) * 100
        while base in self.used:
            base = self.rng.randrange(1, 10**9) * 100
        self.used.add(base)
        db = self._db()
        with db:
            db.executemany(
                "INSERT INTO messages (id, session_id, role, content, created_at) VALUES (?, ?, ?, ?, ?)",
                [(base + j, session.id, m.role, m.content, time.time()) for j, m in enumerate(messages)],
            )


class TruncatesLargeMessages(memcore.SQLiteBackend):
    """Stores at most 64 KiB of a message, and says nothing."""

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        super().memcore_write(session, [attrs.evolve(m, content=m.content[: 1 << 16]) for m in messages])


class RefusesLargeMessages(memcore.SQLiteBackend):
    """Refuses messages over 64 KiB with a clear error (correct)."""

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        for m in messages:
            if len(m.content) > 1 << 16:
                raise ValueError(f"a message of {len(m.content)} characters is over the 65536 this store takes")
        super().memcore_write(session, messages)


class RefusesVaguely(RefusesLargeMessages):
    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        if any(len(m.content) > 1 << 16 for m in messages):
            raise ValueError()
        super().memcore_write(session, messages)


class NormalizesUnicode(memcore.SQLiteBackend):
    """Stores text NFC-normalised: combining marks do not round-trip."""

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        normal = [attrs.evolve(m, content=unicodedata.normalize("NFC", m.content)) for m in messages]
        super().memcore_write(session, normal)


class IgnoresLimit(memcore.SQLiteBackend):
    @memcore.hookimpl
    def memcore_recall(self, query: str, session: Session | None, limit: int) -> Sequence[Recollection]:
        return super().memcore_recall(query, session, limit * 3)


class WithoutHistory(memcore.SQLiteBackend):
    memcore_history = None  # type: ignore[assignment]


class WriteOnly(memcore.SQLiteBackend):
    """Only memcore_write and the read-back: every recall, commit and note test is skipped."""

    memcore_open_session = None  # type: ignore[assignment]
    memcore_remember = None  # type: ignore[assignment]
    memcore_commit = None  # type: ignore[assignment]
    memcore_recall = None  # type: ignore[assignment]


class IndexesInTheBackground(memcore.SQLiteBackend):
    """Notes and commits become searchable ``delay`` seconds later, done by one indexer thread (like a service's
    background extraction)."""

    delay = 0.2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: queue.Queue[tuple[float, Callable[[], None]] | None] = queue.Queue()
        self._indexer = threading.Thread(target=self._index, daemon=True)
        self._indexer.start()

    def _index(self) -> None:
        while (item := self._queue.get()) is not None:
            due, job = item
            time.sleep(max(due - time.monotonic(), 0))
            job()

    def _later(self, job: Callable[[], None]) -> None:
        self._queue.put((time.monotonic() + self.delay, job))

    @memcore.hookimpl
    def memcore_remember(self, session: Session, note: Note) -> None:
        self._later(lambda: memcore.SQLiteBackend.memcore_remember(self, session, note))

    @memcore.hookimpl
    def memcore_commit(self, session: Session) -> None:
        self._later(lambda: memcore.SQLiteBackend.memcore_commit(self, session))

    @memcore.hookimpl
    def memcore_close(self) -> None:
        self._queue.put(None)
        self._indexer.join(5)
        super().memcore_close()


class UnquotedBackend(LoopbackBackend):
    """Puts session ids in the URL path as they are."""

    def _session_path(self, session_id: str) -> str:
        return f"/api/sessions/{session_id}"


class GivesUpBackend(LoopbackBackend):
    """Turns httpx's transport errors into a final error of its own: a reset or a timeout fails the write for good.
    (httpx's errors let through unmapped are retried: memcore has one definition of transient.)"""

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RuntimeError(f"request failed: {exc!r}") from None
        return memcore.http.raise_for_status(response)


# -- users and forget: a small in-memory store that keeps users apart and forgets, and its broken variants -----------

Scope = tuple[str | None, str]


class UserStore:
    """Keeps users apart and forgets (correct): messages per (user, session) for the read-back, and a search index
    of committed turns and notes (like the memories a service extracts), searched across all of one user's
    sessions."""

    name = "userstore"
    separates_users = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[Scope, list[Message]] = {}
        self.committed: dict[Scope, int] = {}
        self.index: list[tuple[Scope, str, str]] = []  # (scope, text, origin)

    def scope(self, user_id: str | None, session_id: str) -> Scope:
        return (user_id, session_id)

    def owner(self, user_id: str | None) -> str | None:
        return user_id

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        with self.lock:
            self.messages.setdefault(self.scope(session.user_id, session.id), []).extend(messages)

    @memcore.hookimpl
    def memcore_remember(self, session: Session, note: Note) -> None:
        with self.lock:
            self.index.append((self.scope(session.user_id, session.id), note.text, "note"))

    @memcore.hookimpl
    def memcore_commit(self, session: Session) -> None:
        key = self.scope(session.user_id, session.id)
        with self.lock:
            stored = self.messages.get(key, [])
            done = self.committed.get(key, 0)
            self.index += [(key, m.content, "message") for m in stored[done:] if m.content]
            self.committed[key] = len(stored)

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: Session | None, limit: int, user_id: str | None
    ) -> Sequence[Recollection]:
        words = set(fts_words(query))
        owner = self.owner(user_id)
        with self.lock:
            items = [(key, text) for key, text, _ in self.index if self.owner(key[0]) == owner]
        scored = [(len(words & set(fts_words(text))), n, key, text) for n, (key, text) in enumerate(items)]
        best = sorted((s for s in scored if s[0]), key=lambda s: (-s[0], s[1]))[:limit]
        return [Recollection(text=text, score=float(score), session_id=key[1]) for score, _, key, text in best]

    @memcore.hookimpl
    def memcore_history(self, session: Session) -> Sequence[Message]:
        with self.lock:
            return list(self.messages.get(self.scope(session.user_id, session.id), []))

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        with self.lock:
            self.erase(lambda key: key[0] == user_id and (session_id is None or key[1] == session_id))
        return None

    def erase(self, hit: Callable[[Scope], bool]) -> None:
        for key in [k for k in self.messages if hit(k)]:
            del self.messages[key]
            self.committed.pop(key, None)
        self.index = [item for item in self.index if not hit(item[0])]


def fts_words(text: str) -> list[str]:
    return [w.lower() for w in fts_query(text).replace('"', " ").split() if w != "OR"]


class MixesUsers(UserStore):
    """Declares separates_users, then files every user's sessions under the session id alone."""

    def scope(self, user_id: str | None, session_id: str) -> Scope:
        return (None, session_id)

    def owner(self, user_id: str | None) -> str | None:
        return None

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        with self.lock:
            self.erase(lambda key: session_id is None or key[1] == session_id)
        return None


def folded(user_id: str | None) -> str | None:
    """What a store that "cleans up" user names makes of them: NFKC, case folded, invisible characters and spaces
    dropped."""
    if user_id is None:
        return None
    return unicodedata.normalize("NFKC", user_id).casefold().replace("\u200b", "").strip()


class FoldsUserIds(UserStore):
    def scope(self, user_id: str | None, session_id: str) -> Scope:
        return (folded(user_id), session_id)

    def owner(self, user_id: str | None) -> str | None:
        return folded(user_id)


class ResolvesSessionIds(UserStore):
    """Files sessions under their id unquoted and resolved as a path (``%2F`` is ``/``, ``../other`` is ``other``)."""

    def scope(self, user_id: str | None, session_id: str) -> Scope:
        resolved = posixpath.normpath("/" + urllib.parse.unquote(urllib.parse.unquote(session_id)))
        return (user_id, resolved)


class ForgetsTheSessionOfEveryUser(UserStore):
    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        with self.lock:
            if session_id is None:
                self.erase(lambda key: key[0] == user_id)
            else:
                self.erase(lambda key: key[1] == session_id)
        return None


class ForgetsNothing(UserStore):
    """Says it erased everything; erases nothing."""

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        return None


class ForgetsTheTranscriptOnly(UserStore):
    """Erases the session's messages but keeps what it indexed from them: recall still finds them. With ``kept``
    set, it says so."""

    kept: str | None = None

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        def hit(key: Scope) -> bool:
            return key[0] == user_id and (session_id is None or key[1] == session_id)

        with self.lock:
            for key in [k for k in self.messages if hit(k)]:
                del self.messages[key]
                self.committed.pop(key, None)
        return self.kept


class SaysItKeepsExtracts(ForgetsTheTranscriptOnly):
    kept = "the memories extracted from the forgotten turns and notes stay searchable"


class SaysItKeepsLittle(ForgetsTheTranscriptOnly):
    kept = "some"


class IngestsLate(UserStore):
    """Acknowledges a write at once and stores it at the session's next call (a service's ingestion queue); a
    forget erases what is stored but not what is still queued, which lands after it."""

    def __init__(self) -> None:
        super().__init__()
        self.inbox: dict[Scope, list[Message]] = {}

    def ingest(self, key: Scope) -> None:
        with self.lock:
            self.messages.setdefault(key, []).extend(self.inbox.pop(key, []))

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        key = self.scope(session.user_id, session.id)
        self.ingest(key)
        with self.lock:
            self.inbox.setdefault(key, []).extend(messages)

    @memcore.hookimpl
    def memcore_remember(self, session: Session, note: Note) -> None:
        self.ingest(self.scope(session.user_id, session.id))
        super().memcore_remember(session, note)

    @memcore.hookimpl
    def memcore_commit(self, session: Session) -> None:
        self.ingest(self.scope(session.user_id, session.id))
        super().memcore_commit(session)

    @memcore.hookimpl
    def memcore_history(self, session: Session) -> Sequence[Message]:
        self.ingest(self.scope(session.user_id, session.id))
        return super().memcore_history(session)


class UserStoreWithoutUsers(UserStore):
    separates_users = False


class UserStoreWithoutForget(UserStore):
    memcore_forget = None  # type: ignore[assignment]


# -- running the suite on them ---------------------------------------------------------------------------------------

SQLITE_SUITE = """
import pytest
from memcore.testing import BackendSuite
import test_conformance_bites as bites


class TestUnderTest(BackendSuite):
{attributes}
    @pytest.fixture
    def backend(self, tmp_path):
        yield bites.{cls}(path=tmp_path / "memory.sqlite3")
"""

STORE_SUITE = """
import pytest
from memcore.testing import BackendSuite
import test_conformance_bites as bites


class TestUnderTest(BackendSuite):
    scoped_recall = False
    index_deadline = 2.0
{attributes}
    @pytest.fixture
    def backend(self):
        yield bites.{cls}()
"""

HTTP_SUITE = """
import pytest
from memcore.testing import BackendSuite
from test_conformance_http import Service
import test_conformance_bites as bites


@pytest.fixture
def service():
    running = Service()
    yield running
    running.close()


class TestUnderTest(BackendSuite):
    scoped_recall = False
    index_deadline = 5.0

    @pytest.fixture
    def backend(self, service):
        return bites.{cls}(service.url)

    @pytest.fixture
    def http_backend(self, service):
        return lambda transport: bites.{cls}(service.url, transport=transport)
"""


@attrs.frozen
class Outcome:
    passed: frozenset[str]
    failed: frozenset[str]
    skipped: dict[str, str]
    messages: dict[str, str]

    @staticmethod
    def of(recorder: pytest.HookRecorder) -> Outcome:
        passed, skipped, failed = recorder.listoutcomes()
        name = _test_name
        return Outcome(
            passed=frozenset(name(r.nodeid) for r in passed),
            failed=frozenset(name(r.nodeid) for r in failed),
            skipped={name(r.nodeid): str(r.longrepr[2]) for r in skipped if isinstance(r.longrepr, tuple)},
            messages={name(r.nodeid): str(r.longrepr) for r in failed},
        )


def _test_name(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1].split("[", 1)[0]


def run_suite(
    pytester: pytest.Pytester, cls: str, *args: str, attributes: str = "", template: str = SQLITE_SUITE
) -> Outcome:
    body = "\n".join(f"    {line}" for line in attributes.strip().splitlines()) or "    pass"
    pytester.makepyfile(test_suite=template.format(cls=cls, attributes=body))
    recorder = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:randomly", *args)
    assert not recorder.getfailedcollections(), recorder.getfailedcollections()
    return Outcome.of(recorder)


FAST = ("-k", "not g8")  # the bounded-threads test has nothing to say about these defects; it costs a second


def test_the_suite_catches_a_backend_that_drops_every_tenth_write(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "DropsEveryTenthWrite", *FAST)
    assert {
        "test_g1_each_turn_lands_in_the_session_current_at_call",
        "test_g2_interleaved_sessions_keep_call_order",
        "test_g3_commit_runs_after_every_earlier_write_and_beside_none",
        "test_awkward_session_ids_reach_exactly_their_own_session",
    } <= outcome.failed
    assert "expected" in outcome.messages["test_g2_interleaved_sessions_keep_call_order"]


def test_the_suite_catches_a_backend_that_mangles_ids_containing_a_slash(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "MangledIds", *FAST)
    assert outcome.failed == {
        "test_awkward_session_ids_reach_exactly_their_own_session",
        "test_look_alike_session_ids_keep_their_own_data",
    }
    assert "'../x'" in outcome.messages["test_awkward_session_ids_reach_exactly_their_own_session"]


def test_without_history_mangled_ids_are_caught_through_recall(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "MangledIdsWithoutHistory", "-k", "awkward")
    assert outcome.failed == {"test_awkward_session_ids_reach_exactly_their_own_session"}
    assert "recalled from 'x'" in outcome.messages["test_awkward_session_ids_reach_exactly_their_own_session"]


def test_the_suite_catches_a_backend_that_returns_other_sessions_recall(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "LeakyScopedSQLite", *FAST, attributes="scoped_recall = True")
    assert {
        "test_scoped_recall_keeps_sessions_apart",
        "test_g1_each_note_lands_in_the_session_current_at_call",
    } <= outcome.failed
    assert "returned what session" in outcome.messages["test_scoped_recall_keeps_sessions_apart"]


def test_a_backend_that_keeps_sessions_apart_passes(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "ScopedSQLite", attributes="scoped_recall = True")
    assert not outcome.failed, outcome.messages
    assert "test_scoped_recall_keeps_sessions_apart" in outcome.passed


def test_the_suite_catches_a_backend_that_stores_writes_out_of_order(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "OutOfOrder", *FAST)
    assert {
        "test_g2_interleaved_sessions_keep_call_order",
        "test_g3_commit_runs_after_every_earlier_write_and_beside_none",
    } <= outcome.failed


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        ("TruncatesLargeMessages", "truncated?"),
        ("RefusesVaguely", "refused without a clear error"),
        ("RefusesLargeMessages", None),
    ],
)
def test_a_large_message_is_stored_whole_or_refused_clearly(
    pytester: pytest.Pytester, cls: str, expected: str | None
) -> None:
    outcome = run_suite(pytester, cls, "-k", "megabyte")
    name = "test_a_one_megabyte_message_is_stored_whole_or_refused_clearly"
    if expected is None:
        assert outcome.passed == {name}
    else:
        assert outcome.failed == {name} and expected in outcome.messages[name]


def test_the_suite_catches_unicode_normalisation_and_an_ignored_limit(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "NormalizesUnicode", "-k", "unicode")
    assert outcome.failed == {"test_unicode_content_round_trips"}
    assert "U+0301" in outcome.messages["test_unicode_content_round_trips"]
    outcome = run_suite(pytester, "IgnoresLimit", "-k", "limit")
    assert outcome.failed == {"test_recall_honours_limit"}


def test_a_missing_capability_is_skipped_with_its_name(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "WriteOnly", *FAST)
    assert not outcome.failed, outcome.messages
    for test, capability in [
        ("test_notes_are_recalled", "'remember'"),
        ("test_turns_written_and_committed_are_recalled", "'recall'"),
        ("test_g4_end_then_switch_commits_once", "'commit'"),
        ("test_http_faults_end_with_every_write_delivered_in_order", "'http_transport'"),
        ("test_scoped_recall_keeps_sessions_apart", "'scoped_recall'"),
    ]:
        assert capability in outcome.skipped[test], outcome.skipped[test]
    assert "test_g2_interleaved_sessions_keep_call_order" in outcome.passed


def test_without_history_placement_is_checked_through_recall(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "WithoutHistory", *FAST, attributes="scoped_recall = False")
    assert not outcome.failed, outcome.messages
    assert {"test_g1_each_turn_lands_in_the_session_current_at_call", "test_unicode_content_round_trips"} <= (
        outcome.passed
    )
    assert "'history'" in outcome.skipped["test_g2_interleaved_sessions_keep_call_order"]


def test_background_indexing_is_polled_up_to_the_stated_deadline(pytester: pytest.Pytester) -> None:
    outcome = run_suite(
        pytester, "IndexesInTheBackground", "-k", "(recall or prefetch or notes) and not (users or forget)"
    )
    assert not outcome.failed, outcome.messages
    assert len(outcome.passed) == 7  # every recall test but the scoped one (not declared)
    outcome = run_suite(pytester, "IndexesInTheBackground", "-k", "turns_written", attributes="index_deadline = 0.05")
    message = outcome.messages["test_turns_written_and_committed_are_recalled"]
    assert "not within the deadline of 0.05 s" in message


def test_the_suite_passes_the_loopback_http_backend_with_its_faults(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "LoopbackBackend", "-k", "http", template=HTTP_SUITE)
    assert len(outcome.passed) == 3 and not outcome.failed, outcome.messages


def test_the_suite_catches_an_http_backend_that_does_not_quote_ids(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "UnquotedBackend", "-k", "http or awkward", template=HTTP_SUITE)
    assert {
        "test_http_session_ids_stay_in_their_own_path_segment",
        "test_http_faults_end_with_every_write_delivered_in_order",
        "test_awkward_session_ids_reach_exactly_their_own_session",
    } <= outcome.failed


def test_the_suite_catches_an_http_backend_that_gives_up_on_resets(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "GivesUpBackend", "-k", "http", template=HTTP_SUITE)
    assert outcome.failed == {
        "test_http_faults_end_with_every_write_delivered_in_order",
        "test_http_lost_answers_are_retried_in_order",
    }
    assert "ConnectError" in outcome.messages["test_http_faults_end_with_every_write_delivered_in_order"]


# -- users and forget ------------------------------------------------------------------------------------------------

USER_TESTS = frozenset(
    {
        "test_users_recall_never_returns_another_users_memory",
        "test_users_history_is_per_user",
        "test_named_users_need_a_backend_that_separates_them",
        "test_look_alike_user_ids_keep_their_own_data",
    }
)
FORGET_TESTS = frozenset(
    {
        "test_forget_of_a_session_erases_it_and_nothing_else",
        "test_forget_of_a_user_erases_all_its_sessions_and_nothing_else",
        "test_forget_drops_pending_writes_and_keeps_later_ones",
    }
)
ID_TESTS = frozenset(
    {"test_ids_with_line_breaks_or_control_characters_are_refused", "test_look_alike_session_ids_keep_their_own_data"}
)
USERS_AND_FORGET = ("-k", "users or forget or look_alike or refused")


def test_a_store_that_keeps_users_apart_and_forgets_passes_the_whole_suite(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "UserStore", template=STORE_SUITE)
    assert not outcome.failed, outcome.messages
    assert outcome.passed >= USER_TESTS | FORGET_TESTS | ID_TESTS | {
        "test_forget_drops_a_prefetch_started_before_it"
    }, outcome.skipped


def test_without_separates_users_the_user_tests_are_skipped_and_the_refusal_checked(
    pytester: pytest.Pytester,
) -> None:
    outcome = run_suite(pytester, "UserStoreWithoutUsers", *USERS_AND_FORGET, template=STORE_SUITE)
    assert not outcome.failed, outcome.messages
    assert {
        "test_named_users_need_a_backend_that_separates_them",
        "test_forget_of_a_session_erases_it_and_nothing_else",
        "test_forget_drops_pending_writes_and_keeps_later_ones",  # the session scope runs, the user scope skips
        *ID_TESTS,
    } <= outcome.passed
    for test in USER_TESTS - {"test_named_users_need_a_backend_that_separates_them"} | {
        "test_forget_of_a_user_erases_all_its_sessions_and_nothing_else"
    }:
        assert "'users'" in outcome.skipped[test] and "separates_users = True" in outcome.skipped[test]


def test_a_backend_that_cannot_forget_has_the_forget_tests_skipped(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "UserStoreWithoutForget", "-k", "forget", template=STORE_SUITE)
    assert not outcome.failed and not outcome.passed, outcome.messages
    assert all("'forget'" in reason for reason in outcome.skipped.values()), outcome.skipped


def test_the_suite_catches_a_backend_that_mixes_users(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "MixesUsers", *USERS_AND_FORGET, template=STORE_SUITE)
    assert {
        "test_users_recall_never_returns_another_users_memory",
        "test_users_history_is_per_user",
        "test_look_alike_user_ids_keep_their_own_data",
        "test_forget_of_a_session_erases_it_and_nothing_else",
        "test_forget_of_a_user_erases_all_its_sessions_and_nothing_else",
        "test_forget_drops_pending_writes_and_keeps_later_ones",
    } <= outcome.failed
    assert "returned another user's memory" in outcome.messages["test_users_recall_never_returns_another_users_memory"]


def test_the_suite_catches_user_ids_folded_together(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "FoldsUserIds", *USERS_AND_FORGET, template=STORE_SUITE)
    assert outcome.failed == {"test_look_alike_user_ids_keep_their_own_data"}, outcome.messages
    message = outcome.messages["test_look_alike_user_ids_keep_their_own_data"]
    assert "'alice'" in message or "'\\uff41lice'" in message or "'Alice'" in message, message


def test_the_suite_catches_session_ids_resolved_as_paths(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "ResolvesSessionIds", "-k", "look_alike", template=STORE_SUITE)
    assert outcome.failed == {"test_look_alike_session_ids_keep_their_own_data"}, outcome.messages


def test_the_suite_catches_a_forget_that_reaches_other_users(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "ForgetsTheSessionOfEveryUser", "-k", "forget", template=STORE_SUITE)
    assert "test_forget_of_a_session_erases_it_and_nothing_else" in outcome.failed
    assert "of user" in outcome.messages["test_forget_of_a_session_erases_it_and_nothing_else"]
    assert "test_forget_of_a_user_erases_all_its_sessions_and_nothing_else" in outcome.passed


def test_the_suite_catches_a_forget_that_erases_nothing(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "ForgetsNothing", "-k", "forget", template=STORE_SUITE)
    assert outcome.failed == FORGET_TESTS, outcome.messages
    assert "after the forget" in outcome.messages["test_forget_of_a_session_erases_it_and_nothing_else"]


def test_the_suite_catches_a_forget_that_leaves_recall_behind_unsaid(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "ForgetsTheTranscriptOnly", "-k", "forget", template=STORE_SUITE)
    assert {
        "test_forget_of_a_session_erases_it_and_nothing_else",
        "test_forget_of_a_user_erases_all_its_sessions_and_nothing_else",
    } <= outcome.failed
    assert "no longer returning" in outcome.messages["test_forget_of_a_session_erases_it_and_nothing_else"]


def test_what_a_backend_says_it_keeps_is_spared_and_a_vague_answer_is_not(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "SaysItKeepsExtracts", "-k", "forget", template=STORE_SUITE)
    assert {  # it keeps what it said; not declared to show in recall, so recall is still checked
        "test_forget_of_a_session_erases_it_and_nothing_else",
        "test_forget_of_a_user_erases_all_its_sessions_and_nothing_else",
    } <= outcome.failed
    outcome = run_suite(
        pytester, "SaysItKeepsExtracts", "-k", "forget", template=STORE_SUITE, attributes="forget_keeps_recall = True"
    )
    assert not outcome.failed, outcome.messages
    assert outcome.passed >= FORGET_TESTS
    outcome = run_suite(
        pytester, "SaysItKeepsLittle", "-k", "forget", template=STORE_SUITE, attributes="forget_keeps_recall = True"
    )
    assert outcome.failed == FORGET_TESTS | {"test_forget_drops_a_prefetch_started_before_it"}
    assert "say what stays" in outcome.messages["test_forget_of_a_session_erases_it_and_nothing_else"]


def test_the_suite_catches_writes_that_land_after_the_forget(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "IngestsLate", "-k", "forget", template=STORE_SUITE)
    assert outcome.failed == {"test_forget_drops_pending_writes_and_keeps_later_ones"}, outcome.messages
    assert "first, and is in flight" in outcome.messages["test_forget_drops_pending_writes_and_keeps_later_ones"]


# -- the override guard ----------------------------------------------------------------------------------------------


def test_overriding_a_suite_test_without_xfail_is_refused() -> None:
    with pytest.raises(
        OverrideError, match=r"test_g2_interleaved_sessions_keep_call_order \(in .*TestQuiet\) overrides a conformance"
    ):

        class TestQuiet(BackendSuite):
            def test_g2_interleaved_sessions_keep_call_order(self) -> None:
                pass


@pytest.mark.parametrize(
    "decorator", ["", "@pytest.mark.xfail", "@pytest.mark.xfail(reason='')", "@pytest.mark.skip(reason='no')"]
)
def test_an_unmarked_override_fails_the_run(pytester: pytest.Pytester, decorator: str) -> None:
    pytester.makepyfile(
        f"""
        import pytest
        from memcore.testing import BackendSuite
        import memcore

        class TestMine(BackendSuite):
            @pytest.fixture
            def backend(self, tmp_path):
                yield memcore.SQLiteBackend(path=tmp_path / "m.sqlite3")

            {decorator}
            def test_g2_interleaved_sessions_keep_call_order(self):
                pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "g2")
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*OverrideError*test_g2_interleaved_sessions_keep_call_order (in TestMine) overrides*xfail*"]
    )


def test_an_override_marked_xfail_with_a_reason_is_accepted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from memcore.testing import BackendSuite
        import memcore

        class TestMine(BackendSuite):
            @pytest.fixture
            def backend(self, tmp_path):
                yield memcore.SQLiteBackend(path=tmp_path / "m.sqlite3")

            @pytest.mark.xfail(reason="our service reorders writes under load (issue 12)")
            def test_g2_interleaved_sessions_keep_call_order(self, memcore_harness):
                raise AssertionError("reordered")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "g2 or g3", "-rx")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*our service reorders writes under load*"])


def test_a_mixin_cannot_override_a_suite_test_either() -> None:
    class Quiet:
        def test_g3_commit_runs_after_every_earlier_write_and_beside_none(self) -> None:
            pass

    with pytest.raises(OverrideError, match=r"test_g3_commit_runs_after.* \(in .*Quiet\) overrides"):

        class TestMixed(Quiet, BackendSuite):
            pass

    class Marked:
        @pytest.mark.xfail(reason="commits are asynchronous on this service")
        def test_g3_commit_runs_after_every_earlier_write_and_beside_none(self) -> None:
            pass

    class TestAccepted(Marked, BackendSuite):
        pass

    class TestDeeper(TestAccepted):  # inherits the marked override: fine
        pass


def test_the_suite_machinery_cannot_be_overridden() -> None:
    with pytest.raises(OverrideError, match=r"memcore_harness \(in .*TestSneaky\) is part of the suite.s machinery"):

        class TestSneaky(BackendSuite):
            @pytest.fixture
            def memcore_harness(self) -> None:
                return None


def test_a_subclass_without_a_backend_fixture_fails_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from memcore.testing import BackendSuite

        class TestNothing(BackendSuite):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "g2")
    result.stdout.fnmatch_lines(["*TestNothing must define a `backend` fixture*"])
    assert result.ret != 0


# -- the pytest plugin -----------------------------------------------------------------------------------------------


def plugin_args() -> tuple[str, ...]:
    """``-p memcore`` when the entry point is installed (it loads it even with plugin autoloading off), else the
    module itself."""
    installed = any(ep.name == "memcore" for ep in importlib.metadata.entry_points(group="pytest11"))
    return ("-p", "memcore") if installed else ("-p", "memcore.testing._plugin")


def test_memcore_backend_runs_the_suite_against_an_installed_backend(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unrelated="def test_unrelated(): assert False")
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", "--memcore-backend", "sqlite", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] >= 30, result.stdout.str()
    assert "test_unrelated" not in result.stdout.str()  # no paths given: only the suite
    result.stdout.fnmatch_lines(["*backend 'sqlite' lacks the capability 'http_transport'*"])


def test_memcore_backend_adds_the_suite_to_the_paths_given(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_mine(): pass")
    store = pytester.path / "shared.sqlite3"
    result = pytester.runpytest(
        *plugin_args(),
        "-p",
        "no:cacheprovider",
        "test_mine.py",
        "--memcore-backend",
        "sqlite",
        "--memcore-settings",
        f'{{"path": "{store}"}}',
        "-k",
        "mine or awkward or limit or g2",
        "-v",
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_mine.py::test_mine PASSED*", "*TestInstalledBackend::test_g2*PASSED*"])
    assert store.exists()


def test_the_plugin_is_inert_without_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_mine(): pass")
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    assert "TestInstalledBackend" not in result.stdout.str()
    fixtures = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", "--fixtures").stdout.str()
    assert "memcore/testing" not in fixtures and "memcore_harness" not in fixtures  # it adds no fixture


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--memcore-backend", "nosuch"), "*'nosuch': no such backend is installed (known: *sqlite*"),
        (("--memcore-backend", "sqlite", "--memcore-settings", "{nope"), "*--memcore-settings is not valid JSON*"),
        (("--memcore-backend", "sqlite", "--memcore-settings", "[1]"), "*must be a JSON object*"),
        (("--memcore-settings", "{}"), "*--memcore-settings needs --memcore-backend NAME*"),
    ],
)
def test_bad_plugin_options_are_usage_errors(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])


def test_settings_that_the_backend_refuses_fail_the_tests_clearly(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        *plugin_args(), "-p", "no:cacheprovider", "--memcore-backend", "sqlite", "--memcore-settings", '{"colour": 1}'
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*backend 'sqlite' failed to construct*colour*"])


# -- the helpers -----------------------------------------------------------------------------------------------------


def test_requires_knows_every_capability() -> None:
    with pytest.raises(ValueError, match="unknown capabilities"):
        requires("teleport")
    assert capabilities_of(memcore.SQLiteBackend, ["unscoped_recall"]) >= {"write", "history", "unscoped_recall"}


def test_decoys_are_what_careless_code_makes_of_an_id() -> None:
    assert {"x", ".._x"} <= decoys("../x")
    assert {"a", "b?c#d", "a/b", "a%2Fb%3Fc%23d"} <= decoys("a/b?c#d")
    assert ".." in decoys("%2e%2e")
    assert all(sid not in AWKWARD_SESSION_IDS for sid in decoys("../x"))


def test_poll_returns_at_once_when_ready_and_names_the_deadline_when_not() -> None:
    calls: list[int] = []
    assert poll(lambda: calls.append(1) or len(calls), lambda n: n >= 1, deadline=5) == 1
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"the thing: not within the deadline of 0.1 s.*last: 0"):
        poll(lambda: 0, bool, deadline=0.1, what="the thing")
    assert time.monotonic() - start < 1.0


def test_jitter_delays_every_backend_call(tmp_path: Any) -> None:
    jitter = Jitter(seed=1, max_delay=0.001)
    backend = memcore.SQLiteBackend(path=tmp_path / "m.sqlite3")
    with memcore.Memory(backends=[backend], plugins=[jitter], journal=False) as memory:
        lc = memory.lifecycle("s1")
        lc.sync_turn("u", "a")
        lc.remember("note")
        lc.end()
        assert memory.flush(timeout=10).ok
        lc.recall("note")
    assert jitter.calls == 6  # open, write, remember, commit, recall, close

"""The conformance suite: every backend, ours and third parties', held to the same guarantees through a real
``memcore.Memory``. Subclass :class:`BackendSuite` and give it a ``backend`` fixture; see ``docs/conformance.md``."""

from __future__ import annotations

import contextlib
import random
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote_to_bytes

import attrs
import httpx
import pytest

from .. import _plugins as registry
from .._errors import InvalidSessionId, InvalidSwitch, UnknownSwitchReason, UsersNotSeparated
from .._faults import FaultInjector, FaultTransport
from .._forget import Forgetting
from .._journal_admin import pending as journal_groups
from .._memory import Memory
from .._paths import memcore_home
from .._records import Event, Recollection
from .._retry import RetryPolicy, is_transient
from .._validate import messages as to_messages
from ._guard import check_overrides
from ._harness import AWKWARD_SESSION_IDS, Harness, Settings, Tap, TapEntry, decoys, has_word
from ._observers import CallGate, EventLog, ManualClock, RecallGate
from ._poll import poll
from ._requirements import capabilities_of, describe_missing, requirements_of, requires

__all__ = ["LOOK_ALIKE_IDS", "REFUSED_IDS", "UNICODE_SAMPLES", "BackendSuite"]

ROTATING = ("new", "branch", "resume", "compress")

#: Content that careless encoding, normalisation or truncation breaks.
UNICODE_SAMPLES: tuple[str, ...] = (
    "emoji 🧠☕️, a family 👨‍👩‍👧‍👦, a flag 🇫🇷 and a skin tone 👋🏽",
    "right-to-left: שלום עולם and مرحبا بالعالم around an English word",
    "combining marks: e\u0301 a\u0308 n\u0303 (decomposed) beside é ä ñ (composed), and Z\u0351\u0308\u0324algo",
    "CJK 記憶 기억 きおく, astral 𝔐𝔢𝔪𝔬𝔯𝔶 𓂀, a BOM \ufeff, a zero width\u200bspace, a joiner\u200d, an RTL mark \u200f",
    'tabs\tand\nnewlines\r\nquotes \' " ` backslashes \\ JSON {"a": [1]} and <b>markup</b> &amp; %s {0}',
)

#: Ids memcore refuses (:class:`~memcore.InvalidSessionId`) as session and user ids, before anything is accepted: line
#: breaks (a header, a log line or a record injected), other control characters, blank ids, ids over 256 characters.
REFUSED_IDS: tuple[str, ...] = (
    "a\nb",
    "\n",
    "line\rbreak",
    "x\r\nX-Other: y",
    "tab\there",
    "nul\x00",
    "del\x7f",
    "",
    "   ",
    "x" * 257,
)

#: Valid ids that careless code turns into one another (resolving a path, (un)quoting, Unicode normalisation, case
#: folding, dropping invisible characters or spaces, truncating), in groups: every id of a group must keep its own
#: data apart from the others'.
LOOK_ALIKE_IDS: tuple[tuple[str, ...], ...] = (
    ("/", "%2F", "%252F"),
    (".", "..", "../other", "other"),
    ("a%2Fb", "a/b"),
    ("alice", "\uff41lice", "alice\u200b", "Alice", "alice "),
    ("u" * 256, "u" * 255),
)

MEGABYTE = 1 << 20
_UNCLEAR = re.compile(r"^[\w.]+\(\s*(''|\"\")?\s*\)$")


class BackendSuite:
    """The shared conformance suite. Subclass it, name the class ``Test...``, and provide a ``backend`` fixture that
    yields an empty backend and removes what it left when the test is over::

        class TestMyBackend(BackendSuite):
            @pytest.fixture
            def backend(self, tmp_path):
                yield MyBackend(path=tmp_path / "store")

    Every test drives the backend through a real ``memcore.Memory`` with seeded latency jitter before every backend
    call, and an observer probe that sees each call from outside. A test of a capability the backend lacks is skipped,
    with the capability named (see :data:`memcore.testing.CAPABILITIES`). memcore closes the backend
    (``memcore_close``) when the test ends. Class attributes tune the suite; a test the backend cannot pass is
    overridden with ``@pytest.mark.xfail(reason=...)`` (any other override fails the run).
    """

    #: Seconds to poll recall for something written to appear, for services that index in the background.
    index_deadline: ClassVar[float] = 30.0
    #: Seconds delivery may go without finishing (or retrying) any operation before a test fails: a slow service
    #: passes as long as it makes progress.
    flush_timeout: ClassVar[float] = 60.0
    #: Seconds memcore keeps retrying an operation that fails with a transient error (``RetryPolicy.deadline``).
    retry_deadline: ClassVar[float] = 10.0
    #: ``True``: recall in a session searches only that session (tested: nothing leaks from another session).
    #: ``False``: it searches every session (tested: a later session recalls an earlier one). ``None``: not declared.
    scoped_recall: ClassVar[bool | None] = None
    #: Recall returns the text that was stored (possibly inside a longer recollection), not an extract of it.
    recall_is_verbatim: ClassVar[bool] = True
    #: The most latency jitter (seconds) put before each backend call.
    jitter: ClassVar[float] = 0.003
    #: ``True``: after a forget that says it keeps something (``Forgetting.kept``), recall may still return what was
    #: forgotten (the service keeps memories extracted from it). The forget tests then check recall only for what
    #: never reached the backend; history (``memcore_history``) and other scopes are checked all the same.
    forget_keeps_recall: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_overrides(cls, BackendSuite, SUITE_TESTS, PROTECTED)

    # -- what a subclass provides -------------------------------------------------------------------------------

    @pytest.fixture
    def backend(self) -> Any:
        """Override: yield an empty backend instance (and clean up after it)."""
        pytest.fail(f"{type(self).__name__} must define a `backend` fixture that yields an empty backend instance")

    @pytest.fixture
    def http_backend(self) -> Callable[[httpx.BaseTransport], Any] | None:
        """Override for HTTP backends: return a factory that builds the backend on the given httpx transport (against
        the same service as ``backend``). Enables the fault tests (503s, timeouts, resets)."""
        return None

    @pytest.fixture
    def down_backend(self) -> Any:
        """Override: return (or yield) the same backend pointed at a service that is down, e.g. at a closed port
        (``with memcore.testing.closed_port() as port: yield MyBackend(url=f"http://127.0.0.1:{port}")``). Enables
        the down-service tests: what fails there must reach memcore as a transient error, be retried and stay
        journaled, never be swallowed."""
        return None

    def http_inner_transport(self) -> httpx.BaseTransport:
        """The transport the fault tests put under their fault-injecting one (the real network by default)."""
        return httpx.HTTPTransport()

    # -- machinery (protected) ----------------------------------------------------------------------------------

    @pytest.fixture
    def _memcore_env(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
        home = tmp_path / "memcore-home"
        monkeypatch.setenv("MEMCORE_HOME", str(home))
        monkeypatch.delenv("MEMCORE_STRICT", raising=False)
        return home

    @pytest.fixture(autouse=True)
    def _memcore_requirements(self, request: pytest.FixtureRequest, _memcore_env: Path, backend: Any) -> None:
        need = requirements_of(getattr(request, "function", None))
        if not need:
            return
        declared = set()
        if self.scoped_recall is True:
            declared.add("scoped_recall")
        elif self.scoped_recall is False:
            declared.add("unscoped_recall")
        if "http_transport" in need and request.getfixturevalue("http_backend") is not None:
            declared.add("http_transport")
        if "down_service" in need and request.getfixturevalue("down_backend") is not None:
            declared.add("down_service")
        missing = need - capabilities_of(backend, declared)
        if missing:
            pytest.skip(describe_missing(registry.plugin_name(backend), missing))

    @pytest.fixture
    def memcore_harness(
        self,
        request: pytest.FixtureRequest,
        _memcore_env: Path,
        backend: Any,
        http_backend: Callable[[httpx.BaseTransport], Any] | None,
    ) -> Iterator[Harness]:
        harness = Harness(
            backend=backend,
            capabilities=capabilities_of(backend),
            settings=Settings(
                index_deadline=self.index_deadline,
                flush_timeout=self.flush_timeout,
                retry_deadline=self.retry_deadline,
                scoped_recall=self.scoped_recall,
                recall_is_verbatim=self.recall_is_verbatim,
                jitter=self.jitter,
            ),
            seed=zlib.crc32(request.node.nodeid.encode()),
            http_backend=http_backend,
            inner_transport=self.http_inner_transport,
        )
        try:
            yield harness
        finally:
            harness.teardown()

    # -- round trips ----------------------------------------------------------------------------------------------

    @requires("recall")
    def test_turns_written_and_committed_are_recalled(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        word, sid = h.token(), h.sid("s1")
        user = f"My cat is called {word} and she likes tuna"
        h.memory.lifecycle(sid).sync_turn(user, f"Noted: {word} likes tuna")
        h.commit(sid)
        h.flush()
        found = h.recall_until(word, [word], session_id=sid)
        if self.recall_is_verbatim:
            assert any(user in r.text for r in found), f"the turn came back altered: {_texts(found)}"

    @requires("remember", "recall")
    def test_notes_are_recalled(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        word, sid = h.token(), h.sid("s1")
        note = f"Prefers {word} espresso in the morning"
        h.memory.lifecycle(sid).remember(note, kind="preference", metadata={"source": "conformance"})
        h.commit(sid)
        h.flush()
        found = h.recall_until(word, [word], session_id=sid)
        if self.recall_is_verbatim:
            assert any(note in r.text for r in found), f"the note came back altered: {_texts(found)}"

    @requires("recall")
    def test_recall_honours_limit(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        word, sid = h.token(), h.sid("s1")
        lc = h.memory.lifecycle(sid)
        facts = [f"fact number {i} about {word}" for i in range(6)]
        for fact in facts:
            lc.sync_turn(fact, "noted")
        h.commit(sid)
        h.flush()
        h.recall_until(word, facts, session_id=sid, limit=10)
        asked_before = len(h.probe.recalls)
        # Polled too: a service that indexes in the background may still be rewriting what it found a moment ago
        # (OpenViking 0.5.2 once answered 0 and once 1 here right after answering all six).
        poll(
            lambda: h.recall(word, sid, limit=2),
            lambda got: len(got) == 2,
            deadline=h.settings.index_deadline,
            what="recall(limit=2) with six matches returning 2",
        )
        answers = h.probe.recalls[asked_before:]
        assert answers, "the backend was not asked"
        too_many = [(limit, n) for limit, n in answers if n is not None and n > limit]
        assert not too_many, f"the backend returned more than the limit it was given (limit, returned): {too_many}"

    @requires("recall")
    def test_recall_spans_sessions(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        word = h.token()
        sids = [h.sid(f"s{k}") for k in range(3)]
        own = {sid: h.token() for sid in sids}
        lc = h.memory.lifecycle(sids[0])
        for k, sid in enumerate(sids):
            if k:
                lc.switch(sid, reason="new")
            lc.sync_turn(f"{word} {own[sid]} was said in session {k}", "noted")
        h.commit(sids[-1])
        h.flush()
        h.recall_until(word, own.values(), what=f"recall outside any session finding all of {list(own.values())}")
        if self.scoped_recall is False:
            later = h.sid("later")
            h.recall_until(word, own.values(), session_id=later, what="recall in a later session finding earlier ones")

    @requires("recall", "scoped_recall")
    def test_scoped_recall_keeps_sessions_apart(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        word = h.token()
        a, b = h.sid("a"), h.sid("b")
        own = {a: h.token(), b: h.token()}
        lc = h.memory.lifecycle(a)
        lc.sync_turn(f"{word} {own[a]} belongs to session a", "noted")
        lc.switch(b, reason="new")
        lc.sync_turn(f"{word} {own[b]} belongs to session b", "noted")
        h.commit(a, b)
        h.flush()
        h.recall_until(word, [own[a]], session_id=a)
        h.recall_until(word, [own[b]], session_id=b)
        for sid, other in ((a, b), (b, a)):
            got = h.recall(word, sid)
            leaked = [r.text for r in got if own[other] in r.text]
            assert not leaked, f"recall in session {sid!r} returned what session {other!r} holds: {leaked}"
            wrong = [(r.text, r.session_id) for r in got if r.session_id not in (None, sid)]
            assert not wrong, f"recall in session {sid!r} returned recollections of other sessions: {wrong}"

    @requires("recall")
    def test_recollections_name_the_session_they_came_from(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        word = h.token()
        sids = [h.sid(f"s{k}") for k in range(3)]
        own = {sid: h.token() for sid in sids}
        lc = h.memory.lifecycle(sids[0])
        for k, sid in enumerate(sids):
            if k:
                lc.switch(sid, reason="new")
            lc.sync_turn(f"{word} {own[sid]} is in session {k}", "noted")
        h.commit(sids[-1])
        h.flush()
        found = h.recall_until(word, own.values())
        for sid, mine in own.items():
            wrong = [(r.text, r.session_id) for r in found if mine in r.text and r.session_id not in (None, sid)]
            assert not wrong, f"what was written to {sid!r} came back labelled with another session: {wrong}"

    @requires("history")
    def test_history_reads_back_turns_as_written(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        sid = h.sid("s1")
        lc = h.memory.lifecycle(sid)
        lc.sync_turn("What's the weather in Paris?", "It is 21 °C in Paris.", messages=TOOL_TURN)
        lc.sync_turn("And tomorrow?", "Rain, 15 °C.")
        h.flush()
        got = [(m.role, m.content) for m in h.history(sid)]
        expected = [(m.role, m.content) for m in to_messages(TOOL_TURN)]
        expected += [("user", "And tomorrow?"), ("assistant", "Rain, 15 °C.")]
        assert got == expected

    @requires("history")
    def test_history_keeps_tool_calls(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        sid = h.sid("s1")
        h.memory.lifecycle(sid).sync_turn("", "", messages=TOOL_TURN)
        h.flush()
        assert h.history(sid) == list(to_messages(TOOL_TURN))

    # -- G1 bound at call time ------------------------------------------------------------------------------------

    def test_g1_each_turn_lands_in_the_session_current_at_call(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        sids = [h.sid(f"g1-{i}") for i in range(41)]
        lc = h.memory.lifecycle(sids[0])
        expected: dict[str, list[str]] = {}
        tokens: dict[str, str] = {}
        for i in range(40):
            word = tokens[sids[i]] = h.token()
            expected[sids[i]] = [f"turn {i} {word} asks", f"turn {i} {word} answers"]
            lc.sync_turn(*_pair(expected[sids[i]]))
            lc.switch(sids[i + 1], reason=ROTATING[i % 4])
        h.flush()
        h.check_placement(expected, tokens)

    @requires("remember", "recall")
    def test_g1_each_note_lands_in_the_session_current_at_call(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        sids = [h.sid(f"g1n-{i}") for i in range(13)]
        lc = h.memory.lifecycle(sids[0])
        tokens: dict[str, str] = {}
        for i in range(12):
            word = tokens[sids[i]] = h.token()
            lc.sync_turn(f"turn {i}", "noted")
            lc.remember(f"note {i} {word}")
            lc.switch(sids[i + 1], reason=ROTATING[i % 4])
        h.flush()
        if "history" in h.capabilities:  # history holds the turns, in their sessions, and no note
            h.check_placement({sid: [f"turn {i}", "noted"] for i, sid in enumerate(sids[:12])}, {})
        h.check_placement({}, tokens, recall_only=True)

    # -- G2 ordered -------------------------------------------------------------------------------------------------

    @requires("history")
    def test_g2_interleaved_sessions_keep_call_order(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        sids = [h.sid(f"g2-{k}") for k in range(3)]
        lifecycles = [h.memory.lifecycle(sid) for sid in sids]
        rng = random.Random(h.seed)
        expected: dict[str, list[str]] = {sid: [] for sid in sids}
        for i in range(200):
            k = rng.randrange(3)
            turn = [f"turn {i} asked in session {k}", f"turn {i} answered"]
            lifecycles[k].sync_turn(*_pair(turn))
            expected[sids[k]] += turn
            if i % 25 == 0 and "remember" in h.capabilities:
                lifecycles[k].remember(f"note after turn {i}")
        h.flush()
        for sid in sids:
            got = h.texts(sid)
            assert got == expected[sid], _order_diff(sid, got, expected[sid])

    # -- G3 drain before commit ---------------------------------------------------------------------------------

    @requires("commit")
    def test_g3_commit_runs_after_every_earlier_write_and_beside_none(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        sids = [h.sid("g3-a"), h.sid("g3-b")]
        lifecycles = [h.memory.lifecycle(sid) for sid in sids]
        written: dict[str, list[str]] = {sid: [] for sid in sids}
        at_end: dict[str, list[list[str]]] = {sid: [] for sid in sids}
        for r in range(4):
            for sid, lc in zip(sids, lifecycles, strict=True):
                for j in range(5):
                    turn = [f"round {r} turn {j}", f"answer {r}.{j}"]
                    lc.sync_turn(*_pair(turn))
                    written[sid] += turn
                if "remember" in h.capabilities:
                    lc.remember(f"note of round {r}")
                lc.end()
                at_end[sid].append(list(written[sid]))
        h.flush()
        for sid in sids:
            views = h.probe.commit_views[sid]
            assert len(views) == 4 and h.probe.commits[sid] == 4, (
                f"{sid!r}: four ends after new writes should commit four times, not {len(views)}"
            )
            busy = [v.in_flight for v in views if v.in_flight]
            assert not busy, f"{sid!r}: a commit started while writes of the session were in flight: {busy}"
            if "history" in h.capabilities:
                for n, (view, expected) in enumerate(zip(views, at_end[sid], strict=True)):
                    assert view.error is None, view.error
                    assert view.stored is not None and list(view.stored) == expected, (
                        f"{sid!r}: when commit {n + 1} started the backend held "
                        f"{len(view.stored or ())} messages, not the {len(expected)} written before it was asked for"
                    )

    # -- G4 exactly one commit per change -------------------------------------------------------------------------

    @requires("commit")
    def test_g4_end_then_switch_commits_once(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        s1, s2 = h.sid("s1"), h.sid("s2")
        lc = h.memory.lifecycle(s1)
        lc.sync_turn("hello", "hi")
        lc.end()
        lc.switch(s2, reason="new")
        h.flush()
        assert h.probe.commits[s1] == 1
        h.close()
        assert h.probe.commits[s1] == 1 and h.probe.commits[s2] == 0

    @requires("commit")
    def test_g4_a_write_after_a_commit_is_committed_again_at_close(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        s1 = h.sid("s1")
        lc = h.memory.lifecycle(s1)
        lc.sync_turn("first", "one")
        lc.end()
        h.flush()
        assert h.probe.commits[s1] == 1
        lc.sync_turn("second", "two")
        report = h.close()
        assert h.probe.commits[s1] == 2 and report.committed == 2, report
        hooks = [hook for hook in h.probe.hooks_of(s1) if hook != "open_session"]
        assert hooks == ["write", "commit", "write", "commit"]

    @requires("commit")
    def test_g4_a_clean_session_is_never_committed(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        lc = h.memory.lifecycle(h.sid("s1"))
        lc.end()
        lc.switch(h.sid("s2"), reason="new")
        lc.end()
        lc.end()
        h.flush()
        h.close()
        assert sum(h.probe.commits.values()) == 0

    # -- G6 no stale recall ---------------------------------------------------------------------------------------

    def _recallable(self, h: Harness, sid: str) -> str:
        """Write something recallable to ``sid`` and wait until recall there finds it; return its word."""
        word = h.token()
        h.memory.lifecycle(sid).sync_turn(f"{word} is what the prefetch looks for", "noted")
        h.commit(sid)
        h.flush()
        h.recall_until(word, [word], session_id=sid)
        return word

    def _stale_prefetch(self, h: Harness, reason: str) -> None:
        s1 = h.sid("s1")
        word = self._recallable(h, s1)
        lc = h.memory.lifecycle(s1)
        gate = h.probe.gate = RecallGate(timeout=self.flush_timeout)
        lc.queue_prefetch(word, timeout=self.flush_timeout)
        assert gate.entered.wait(self.flush_timeout), "the prefetch never reached the backend"
        lc.switch(h.sid("s2") if reason != "rewind" else s1, reason=reason)
        gate.release()
        assert gate.finished.wait(self.flush_timeout), "the prefetch never returned from the backend"
        h.probe.gate = None
        assert lc.take_prefetch(timeout=1.0) == [], f"a prefetch started before a {reason} was handed out after it"

    @requires("recall")
    def test_g6_prefetch_started_before_a_switch_is_never_handed_out(self, memcore_harness: Harness) -> None:
        self._stale_prefetch(memcore_harness, "new")

    @requires("recall")
    def test_g6_prefetch_started_before_a_rewind_is_never_handed_out(self, memcore_harness: Harness) -> None:
        self._stale_prefetch(memcore_harness, "rewind")

    @requires("recall")
    def test_g6_a_fresh_prefetch_is_handed_out_once(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        s1 = h.sid("s1")
        word = self._recallable(h, s1)
        lc = h.memory.lifecycle(s1)
        lc.queue_prefetch(word, timeout=self.index_deadline)
        got = lc.take_prefetch(timeout=self.index_deadline)
        assert any(word in r.text for r in got), f"the prefetch did not return what recall finds: {_texts(got)}"
        assert lc.take_prefetch() == []

    # -- G7 switch semantics --------------------------------------------------------------------------------------

    @pytest.mark.parametrize("reason", ROTATING)
    @requires("commit")
    def test_g7_rotating_switch_commits_the_old_session(self, memcore_harness: Harness, reason: str) -> None:
        h = memcore_harness
        s1, s2 = h.sid("s1"), h.sid("s2")
        lc = h.memory.lifecycle(s1)
        lc.sync_turn("before", "the switch")
        generation = lc.generation
        lc.switch(s2, reason=reason)
        assert lc.session_id == s2 and lc.generation == generation + 1
        lc.sync_turn("after", "the switch")
        h.flush()
        assert h.probe.commits[s1] == 1 and h.probe.commits[s2] == 0
        if "history" in h.capabilities:
            h.check_placement({s1: ["before", "the switch"], s2: ["after", "the switch"]}, {})
        h.close()
        assert h.probe.commits[s1] == 1 and h.probe.commits[s2] == 1

    @pytest.mark.parametrize("reason", ROTATING)
    def test_g7_the_new_session_reaches_the_backend_with_its_parent(
        self, memcore_harness: Harness, reason: str
    ) -> None:
        h = memcore_harness
        s0, s1, s2, s3 = (h.sid(f"s{k}") for k in range(4))
        lc = h.memory.lifecycle(s1)
        lc.sync_turn("in s1", "ok")
        lc.switch(s2, reason=reason)
        lc.sync_turn("in s2", "ok")
        lc.switch(s3, reason=reason, parent_session_id=s0)
        lc.sync_turn("in s3", "ok")
        h.flush()
        implied = s1 if reason in ("branch", "compress") else None
        for sid, parent in ((s2, implied), (s3, s0)):
            seen = {s.parent_id for s in h.probe.write_sessions[sid]}
            assert seen == {parent}, f"writes of {sid!r} after a {reason} carried parent ids {seen}, not {parent!r}"
            if "open_session" in h.capabilities:
                opened = [s for s in h.probe.opened if s.id == sid]
                assert [s.parent_id for s in opened] == [parent], f"{sid!r} was opened as {opened}"

    @requires("commit")
    def test_g7_compress_in_place_commits_and_keeps_the_session(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        s1 = h.sid("s1")
        lc = h.memory.lifecycle(s1)
        lc.sync_turn("before", "compression")
        lc.switch(s1, reason="compress")
        h.flush()
        assert lc.session_id == s1 and h.probe.commits[s1] == 1
        lc.sync_turn("after", "compression")
        lc.end()
        h.flush()
        assert h.probe.commits[s1] == 2
        if "history" in h.capabilities:
            assert h.texts(s1) == ["before", "compression", "after", "compression"]

    @requires("commit")
    def test_g7_rewind_commits_nothing_and_keeps_the_session(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        s1 = h.sid("s1")
        lc = h.memory.lifecycle(s1)
        lc.sync_turn("a turn", "to undo")
        generation = lc.generation
        lc.switch(s1, reason="rewind")
        h.flush()
        assert lc.session_id == s1 and lc.generation == generation + 1
        assert h.probe.commits[s1] == 0
        lc.end()
        h.flush()
        assert h.probe.commits[s1] == 1

    def test_g7_an_invalid_switch_changes_nothing(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        s1 = h.sid("s1")
        lc = h.memory.lifecycle(s1)
        word = h.token()
        lc.sync_turn(f"{word} first", "ok")
        for bad in ("", "   ", "x" * 257, "line\nbreak", "nul\x00"):
            with pytest.raises(InvalidSessionId):
                lc.switch(bad, reason="new")
        with pytest.raises(UnknownSwitchReason):
            lc.switch(h.sid("s2"), reason="fork")
        with pytest.raises(InvalidSwitch):
            lc.switch(h.sid("s2"), reason="rewind")
        assert lc.session_id == s1 and lc.generation == 0
        lc.sync_turn(f"{word} second", "ok")
        h.flush()
        assert sum(h.probe.commits.values()) == 0
        h.commit(s1)
        h.flush()
        h.check_placement({s1: [f"{word} first", "ok", f"{word} second", "ok"]}, {s1: word})

    # -- G8 bounded -------------------------------------------------------------------------------------------------

    def test_g8_threads_stay_within_the_pool(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        before = set(threading.enumerate())
        hold = CallGate()  # every backend call waits until all 500 sessions are accepted, however fast the service
        memory = h.open(workers=3, recall_workers=2, max_stalled=2, observers=[hold])
        bound = 3 + 2 + 2  # lane workers, their stand-ins for stalled calls (max_stalled), recall workers
        peak: dict[str, int] = {"memcore": 0, "all": 0}

        def sample() -> None:
            new = [t for t in threading.enumerate() if t not in before]
            peak["memcore"] = max(peak["memcore"], sum(t.name.startswith("memcore-") for t in new))
            peak["all"] = max(peak["all"], len(new))

        sample()
        for k in range(500):
            lc = memory.lifecycle(h.sid(f"g8-{k}"))
            lc.sync_turn(f"turn of session {k}", "ok")
            if k % 2:
                lc.end()
            if k % 25 == 0:
                sample()
        assert hold.entered.wait(self.flush_timeout), "no backend call started"
        held = memory.flush(timeout=0)
        sample()
        assert held.pending >= 500, f"the 500 sessions were not all pending at once: {held}"
        hold.release()
        report = h.flush(while_waiting=sample)
        sample()
        assert report.delivered == 500 and report.pending == 0, report
        if "commit" in h.capabilities:
            assert report.committed == 250, report
        assert peak["memcore"] <= bound, f"memcore ran {peak['memcore']} threads for a bound of {bound}"
        assert peak["all"] <= bound + 16, f"{peak['all']} threads ran at once for a bound of {bound}"
        if "history" in h.capabilities:
            for k in (0, 249, 499):
                assert h.texts(h.sid(f"g8-{k}")) == [f"turn of session {k}", "ok"]

    # -- G12 ids and content ----------------------------------------------------------------------------------------

    def test_awkward_session_ids_reach_exactly_their_own_session(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        ids = list(AWKWARD_SESSION_IDS)
        ids += sorted(set().union(*(decoys(sid) for sid in AWKWARD_SESSION_IDS)) - set(ids))
        lc = h.memory.lifecycle(ids[0])
        expected: dict[str, list[str]] = {}
        tokens: dict[str, str] = {}
        for i, sid in enumerate(ids):
            if i:
                lc.switch(sid, reason="new")
            word = tokens[sid] = h.token()
            expected[sid] = [f"{word} was written to session number {i}", f"{word} noted"]
            lc.sync_turn(*_pair(expected[sid]))
        h.commit(ids[-1])
        h.flush()
        h.check_placement(expected, tokens)

    def test_unicode_content_round_trips(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        verbatim_recall = "recall" in h.capabilities and self.recall_is_verbatim
        if "history" not in h.capabilities and not verbatim_recall:
            pytest.skip("content is observable only through 'history' or verbatim 'recall'")
        sid = h.sid("unicode")
        lc = h.memory.lifecycle(sid)
        written: list[tuple[str, list[str]]] = []
        for sample in UNICODE_SAMPLES:
            word = h.token()
            turn = [f"{word} {sample}", f"{sample} {word}"]
            lc.sync_turn(*_pair(turn))
            written.append((word, turn))
        notes = []
        if "remember" in h.capabilities:
            for sample in UNICODE_SAMPLES:
                word = h.token()
                lc.remember(f"{word} {sample}")
                notes.append((word, f"{word} {sample}"))
        h.commit(sid)
        h.flush()
        if "history" in h.capabilities:
            got = h.texts(sid)
            expected = [text for _, turn in written for text in turn]
            for g, e in zip(got, expected, strict=False):
                assert g == e, f"stored {g!r} ({_codepoints(g)}), written {e!r} ({_codepoints(e)})"
            assert len(got) == len(expected)
        if verbatim_recall:
            for word, texts in [*written, *((w, [n]) for w, n in notes)]:
                found = h.recall_until(word, [word], session_id=sid)
                for text in texts:
                    assert any(text in r.text for r in found), f"{text!r} did not come back intact: {_texts(found)}"

    def test_a_one_megabyte_message_is_stored_whole_or_refused_clearly(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        sid = h.sid("big")
        word, after = h.token(), h.token()
        filler = ("a long message about nothing in particular, repeated " * (MEGABYTE // 50 + 1))[:MEGABYTE]
        big = f"{word}start {filler} {word}end"
        lc = h.memory.lifecycle(sid)
        lc.sync_turn(big, f"{word} that was long")
        lc.sync_turn(f"{after} a small turn after it", "ok")
        h.commit(sid)
        report = h.flush(ok=False)
        others = [f for f in report.failures if f.operation != "write"]
        assert not others, f"operations other than the big write failed: {others}"
        refused = [f for f in report.failures if f.operation == "write"]
        assert len(refused) == report.failed <= 1, f"more than the big write failed: {list(report.failures)}"
        if refused:
            error = refused[0].error
            assert error.strip() and not _UNCLEAR.match(error.strip()), f"refused without a clear error: {error!r}"
            if "history" in h.capabilities:
                got = h.texts(sid)
                partial = [f"{t[:60]}...({len(t)} chars)" for t in got if word in t]
                assert not partial, f"a refused message left something behind: {partial}"
                assert got == [f"{after} a small turn after it", "ok"]
            return
        if "history" in h.capabilities:
            got = h.texts(sid)
            sizes = [len(t) for t in got]
            assert len(got) == 4 and got[0] == big, f"stored sizes {sizes}; written {[len(big), 0, 0, 0]} (truncated?)"
        elif "recall" in h.capabilities and self.recall_is_verbatim:
            found = h.recall_until(f"{word}end", [f"{word}end"], session_id=sid)
            assert any(big in r.text for r in found), "the big message came back altered or truncated"

    # -- users (issue 13) -----------------------------------------------------------------------------------------

    def _user_world(self, h: Harness) -> tuple[str, list[str | None], dict[str | None, list[str]]]:
        """The default user and two named ones, each with a turn and (if the backend takes notes) a note in the same
        session id, in the same words but for a token of their own; committed and delivered. Returns the common word,
        the users and each user's tokens."""
        word, sid = h.token(), h.sid("shared")
        users: list[str | None] = [None, h.sid("alice"), h.sid("bob")]
        tokens: dict[str | None, list[str]] = {}
        for user in users:
            turn, note = h.token(), h.token()
            lc = h.memory.lifecycle(sid, user_id=user)
            lc.sync_turn(f"{word} {turn} is what this user said", f"{word} noted {turn}")
            tokens[user] = [turn]
            if "remember" in h.capabilities:
                lc.remember(f"{word} {note} is what this user asked to remember", kind="preference")
                tokens[user].append(note)
            h.commit(sid, user_id=user)
        h.flush()
        return word, users, tokens

    @requires("users", "recall")
    def test_users_recall_never_returns_another_users_memory(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        word, users, tokens = self._user_world(h)
        sid = h.sid("shared")
        for user in users:
            h.recall_until(word, tokens[user], session_id=sid, user_id=user, limit=50)
            h.recall_until(word, tokens[user], user_id=user, limit=50)
        for user in users:
            foreign = [t for other in users if other != user for t in tokens[other]]
            for where in (sid, None):
                place = f"in session {sid!r}" if where is not None else "outside any session"
                for query in (word, *foreign):
                    got = h.recall(query, where, 50, user_id=user)
                    leaked = [r.text for r in got if any(has_word(r.text, t) for t in foreign)]
                    assert not leaked, (
                        f"recall of {query!r} as user {user!r} {place} returned another user's memory: {leaked}"
                    )
        assert set(h.probe.recall_users) == set(users), f"recall reached the backend as {set(h.probe.recall_users)}"

    @requires("users", "history")
    def test_users_history_is_per_user(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        sid = h.sid("shared")
        users: list[str | None] = [None, h.sid("alice"), h.sid("bob")]
        expected: dict[str | None, list[str]] = {user: [] for user in users}
        for i in range(3):
            for user in users:
                turn = [f"turn {i} of {user!r}", f"answer {i} to {user!r}"]
                h.memory.lifecycle(sid, user_id=user).sync_turn(*_pair(turn))
                expected[user] += turn
        h.flush()
        for user in users:
            got = h.texts(sid, user)
            assert got == expected[user], f"session {sid!r} of user {user!r} holds {got}, not {expected[user]}"
        assert h.texts(sid, h.sid("carol")) == [], "a user who wrote nothing has a history"

    def test_named_users_need_a_backend_that_separates_them(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        sid, user = h.sid("s1"), h.sid("someone")
        if "users" in h.capabilities:
            h.memory.lifecycle(sid, user_id=user).sync_turn("a turn of a named user", "ok")
            report = h.flush()
            assert report.delivered >= 1 and report.pending == 0, report
            seen = {s.user_id for s in h.probe.write_sessions[sid]}
            assert seen == {user}, f"the write reached the backend as user(s) {seen}, not {user!r}"
            return
        memory = h.memory
        refused: list[Callable[[], object]] = [
            lambda: memory.lifecycle(sid, user_id=user),
            lambda: memory.recall("anything", user_id=user),
            lambda: memory.forget(user_id=user),
            lambda: memory.forget(user_id=user, session_id=sid),
        ]
        for call in refused:
            with pytest.raises(UsersNotSeparated):
                call()
        report = h.flush()
        assert report.delivered == report.pending == 0 and not h.probe.calls, (
            f"a refused user reached the backend: {h.probe.calls}, {report}"
        )
        memory.lifecycle(sid).sync_turn("the default user", "still works")
        report = h.flush()
        assert report.delivered >= 1 and {s.user_id for s in h.probe.write_sessions[sid]} == {None}, report

    # -- forget (issue 13) ----------------------------------------------------------------------------------------

    def _fill(self, h: Harness, scopes: Sequence[tuple[str | None, str]]) -> dict[tuple[str | None, str], Written]:
        """Two turns and (if the backend takes notes) a note in each (user, session) of ``scopes``, in the same words
        but for tokens of their own; committed, delivered, and seen where the backend shows them."""
        word = h.token()
        written: dict[tuple[str | None, str], Written] = {}
        for user, sid in scopes:
            lc = h.memory.lifecycle(sid, user_id=user)
            texts, tokens = [], []
            for i in range(2):
                token = h.token()
                turn = [f"{word} {token} was said in turn {i}", f"{word} {token} answered"]
                lc.sync_turn(*_pair(turn))
                texts += turn
                tokens.append(token)
            if "remember" in h.capabilities:
                token = h.token()
                lc.remember(f"{word} {token} is a note to forget or keep")
                tokens.append(token)
            written[(user, sid)] = Written(texts=texts, tokens=tokens)
            h.commit(sid, user_id=user)
        h.flush()
        self._check_kept(h, written)
        return written

    def _check_kept(self, h: Harness, written: dict[tuple[str | None, str], Written]) -> None:
        """Each scope still holds exactly what was written to it (history) and recalls all of it (recall)."""
        for (user, sid), w in written.items():
            if "history" in h.capabilities:
                got = h.texts(sid, user)
                assert got == w.texts, f"session {sid!r} of user {user!r} holds {_texts_of(got)}, not {w.texts}"
            if "recall" in h.capabilities:
                for token in w.tokens:
                    h.recall_until(token, [token], user_id=user)

    def _forgotten(self, h: Harness, handle: Forgetting) -> bool:
        """Wait for ``handle``; check that it answered clearly. True when recall must no longer return what was
        forgotten (the backend keeps nothing, or keeps something recall does not show)."""
        assert handle.wait(self.flush_timeout), f"the forget did not finish within {self.flush_timeout:g} s: {handle}"
        assert handle.done
        assert not handle.failures, f"the forget failed: {list(handle.failures)}"
        kept = handle.kept.get(h.memory.backends[0])
        assert handle.ok is (not kept), f"ok={handle.ok} while kept={dict(handle.kept)}"
        if not kept:
            return True
        assert kept.strip() and not _UNCLEAR.match(kept.strip()) and len(kept.strip()) >= 8, (
            f"the forget keeps something and says only {kept!r}: say what stays"
        )
        return not self.forget_keeps_recall

    def _check_gone(
        self, h: Harness, user: str | None, sid: str, w: Written, *, recall: bool, after: Sequence[str] = ()
    ) -> None:
        """Nothing of ``w`` is read back from (``user``, ``sid``) but the texts ``after`` (written after the forget),
        nor (with ``recall``) recalled as ``user``, in the session or outside any."""
        if "history" in h.capabilities:
            got = h.texts(sid, user)
            assert got == list(after), (
                f"after the forget, session {sid!r} of user {user!r} holds {_texts_of(got)}, not {list(after)}"
            )
        if recall and "recall" in h.capabilities:
            h.recall_until_gone(
                w.tokens, user_id=user, what=f"recall as user {user!r} no longer returning forgotten session {sid!r}"
            )
            h.recall_until_gone(w.tokens, session_id=sid, user_id=user)

    def _observable(self, h: Harness) -> None:
        if "history" not in h.capabilities and "recall" not in h.capabilities:
            pytest.skip("what a forget erases is observable only through 'history' or 'recall'")

    @requires("forget")
    def test_forget_of_a_session_erases_it_and_nothing_else(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        self._observable(h)
        users = "users" in h.capabilities
        user = h.sid("alice") if users else None
        gone, kept = h.sid("gone"), h.sid("kept")
        scopes = [(user, gone), (user, kept)]
        if users:  # the same session id of other users, the default one included
            scopes += [(h.sid("bob"), gone), (None, gone)]
        written = self._fill(h, scopes)
        handle = h.memory.lifecycle(gone, user_id=user).forget()
        recall = self._forgotten(h, handle)
        assert (handle.user_id, handle.session_id) == (user, gone), handle
        assert h.probe.forgets == [(user, gone)], f"the backend was asked to forget {h.probe.forgets}"
        self._check_gone(h, user, gone, written.pop((user, gone)), recall=recall)
        self._check_kept(h, written)

    @requires("forget", "users")
    def test_forget_of_a_user_erases_all_its_sessions_and_nothing_else(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        self._observable(h)
        alice, bob = h.sid("alice"), h.sid("bob")
        s1, s2 = h.sid("s1"), h.sid("s2")
        written = self._fill(h, [(alice, s1), (alice, s2), (bob, s1), (None, s1)])
        handle = h.memory.forget(user_id=alice)
        recall = self._forgotten(h, handle)
        assert h.probe.forgets == [(alice, None)], f"the backend was asked to forget {h.probe.forgets}"
        for sid in (s1, s2):
            self._check_gone(h, alice, sid, written.pop((alice, sid)), recall=recall)
        self._check_kept(h, written)

    @pytest.mark.parametrize("scope", ["session", "user"])
    @requires("forget")
    def test_forget_drops_pending_writes_and_keeps_later_ones(self, memcore_harness: Harness, scope: str) -> None:
        h = memcore_harness
        self._observable(h)
        users = "users" in h.capabilities
        if scope == "user" and not users:
            pytest.skip(describe_missing(h.backend_name(), {"users"}))
        gate = CallGate()  # every backend call but the forget waits here until the test lets them go
        memory = h.open(observers=[gate])
        user = h.sid("alice") if users else None
        # A user's forget races two sessions' writes in flight at once, unless the backend runs one call at a time
        # (max_concurrency = 1): then one of them.
        two_at_once = getattr(h.backend, "max_concurrency", None) != 1
        raced = [h.sid("raced")] + ([h.sid("raced-too")] if scope == "user" and two_at_once else [])
        lifecycles = [memory.lifecycle(sid, user_id=user) for sid in raced]
        before: dict[str, Written] = {sid: Written(texts=[], tokens=[]) for sid in raced}

        def write(sid: str, lc: Any, label: str) -> None:
            token = h.token()
            turn = [f"{token} was written {label}", f"{token} answered"]
            lc.sync_turn(*_pair(turn))
            before[sid].texts.extend(turn)
            before[sid].tokens.append(token)

        for sid, lc in zip(raced, lifecycles, strict=True):
            write(sid, lc, "first, and is in flight at the forget")
        assert gate.wait_held(len(raced), self.flush_timeout), "the first writes never reached the backend"
        cap = getattr(h.backend, "max_write_messages", None)  # a turn of two messages may be two writes
        per_turn = -(-2 // cap) if isinstance(cap, int) and cap > 0 else 1
        queued = len(raced) * (per_turn - 1)  # the rest of each first turn waits behind its part in flight
        for sid, lc in zip(raced, lifecycles, strict=True):
            for i in range(4):
                write(sid, lc, f"queued behind it ({i})")
                queued += per_turn
            if "remember" in h.capabilities:
                token = h.token()
                lc.remember(f"{token} is a note queued before the forget")
                before[sid].tokens.append(token)
                queued += 1
        others = [(user, h.sid("other"))] if scope == "session" else []  # the user's other session
        if users:  # other users' sessions of the same id
            others += [(h.sid("bob"), raced[0]), (None, raced[0])]
        untouched: dict[tuple[str | None, str], Written] = {}
        for other_user, sid in others:
            token = h.token()
            turn = [f"{token} belongs to another scope", f"{token} answered"]
            memory.lifecycle(sid, user_id=other_user).sync_turn(*_pair(turn))
            untouched[(other_user, sid)] = Written(texts=turn, tokens=[token])
        handle = memory.forget(user_id=user, session_id=raced[0] if scope == "session" else None)
        after: dict[str, Written] = {}
        for sid, lc in zip(raced, lifecycles, strict=True):
            token = h.token()
            turn = [f"{token} was written after the forget", f"{token} answered"]
            lc.sync_turn(*_pair(turn))
            after[sid] = Written(texts=turn, tokens=[token])
        assert not handle.done, "the forget finished while a write of its scope accepted before it was in flight"
        gate.release()
        recall = self._forgotten(h, handle)
        assert handle.dropped == queued, (
            f"the forget dropped {handle.dropped} operations; {queued} were queued behind the calls in flight"
        )
        h.commit(*raced, user_id=user)
        for other_user, sid in others:
            h.commit(sid, user_id=other_user)
        h.flush()
        for sid in raced:
            w = before[sid]
            in_flight = Written(texts=w.texts[:2], tokens=w.tokens[:1])
            never_sent = Written(texts=w.texts[2:], tokens=w.tokens[1:])
            self._check_gone(h, user, sid, in_flight, recall=recall, after=after[sid].texts)
            self._check_gone(h, user, sid, never_sent, recall=True, after=after[sid].texts)
        self._check_kept(h, {**{(user, sid): after[sid] for sid in raced}, **untouched})

    @requires("recall", "forget")
    def test_forget_drops_a_prefetch_started_before_it(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        s1 = h.sid("s1")
        word = self._recallable(h, s1)
        lc = h.memory.lifecycle(s1)
        gate = h.probe.gate = RecallGate(timeout=self.flush_timeout)
        lc.queue_prefetch(word, timeout=self.flush_timeout)
        assert gate.entered.wait(self.flush_timeout), "the prefetch never reached the backend"
        handle = lc.forget()
        gate.release()
        assert gate.finished.wait(self.flush_timeout), "the prefetch never returned from the backend"
        h.probe.gate = None
        self._forgotten(h, handle)
        got = lc.take_prefetch(timeout=1.0)
        assert got == [], f"a prefetch started before a forget was handed out after it: {_texts(got)}"

    # -- ids that try to leave their scope ---------------------------------------------------------------------

    def test_ids_with_line_breaks_or_control_characters_are_refused(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        memory, good = h.memory, h.sid("good")
        lc = memory.lifecycle(good)
        calls: list[tuple[str, Callable[[str], object]]] = [
            ("lifecycle(session_id)", lambda bad: memory.lifecycle(bad)),
            ("lifecycle(user_id=)", lambda bad: memory.lifecycle(good, user_id=bad)),
            ("lifecycle(parent_session_id)", lambda bad: memory.lifecycle(good, bad)),
            ("switch", lambda bad: lc.switch(bad, reason="new")),
            ("recall(user_id=)", lambda bad: memory.recall("anything", user_id=bad)),
            ("forget(user_id=)", lambda bad: memory.forget(user_id=bad)),
            ("forget(session_id=)", lambda bad: memory.forget(user_id=None, session_id=bad)),
        ]
        for bad in REFUSED_IDS:
            for what, call in calls:
                try:
                    call(bad)
                except InvalidSessionId:
                    continue
                pytest.fail(f"{what} accepted the id {bad!r}")
        assert lc.session_id == good and lc.generation == 0
        report = h.flush()
        assert report.delivered == report.pending == 0 and not h.probe.calls, (
            f"a refused id reached the backend: {h.probe.calls}, {report}"
        )

    def test_look_alike_session_ids_keep_their_own_data(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        ids = [sid for group in LOOK_ALIKE_IDS for sid in group]
        lc = h.memory.lifecycle(ids[0])
        expected: dict[str, list[str]] = {}
        tokens: dict[str, str] = {}
        for i, sid in enumerate(ids):
            if i:
                lc.switch(sid, reason="new")
            word = tokens[sid] = h.token()
            expected[sid] = [f"{word} was written to look-alike session {i}", f"{word} noted"]
            lc.sync_turn(*_pair(expected[sid]))
        h.commit(ids[-1])
        h.flush()
        for sid in ids:
            seen = {s.id for s in h.probe.write_sessions[sid]}
            assert seen == {sid}, f"the id {sid!r} reached the backend as {seen}"
        h.check_placement(expected, tokens)

    @requires("users")
    def test_look_alike_user_ids_keep_their_own_data(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        self._observable(h)
        sid, word = h.sid("shared"), h.token()
        written: dict[str, Written] = {}
        for group in LOOK_ALIKE_IDS:
            for user in group:
                token = h.token()
                turn = [f"{word} {token} was written by a look-alike user", f"{word} {token} answered"]
                lc = h.memory.lifecycle(sid, user_id=user)
                lc.sync_turn(*_pair(turn))
                written[user] = Written(texts=turn, tokens=[token])
                if "remember" in h.capabilities:
                    note = h.token()
                    lc.remember(f"{word} {note} is a look-alike user's note")
                    written[user].tokens.append(note)
                h.commit(sid, user_id=user)
        h.flush()
        seen = {s.user_id for s in h.probe.write_sessions[sid]}
        assert seen == set(written), f"the user ids reached the backend as {sorted(map(repr, seen))}"
        for group in LOOK_ALIKE_IDS:
            for user in group:
                w = written[user]
                if "history" in h.capabilities:
                    got = h.texts(sid, user)
                    assert got == w.texts, f"session {sid!r} of user {user!r} holds {_texts_of(got)}, not {w.texts}"
                if "recall" not in h.capabilities:
                    continue
                h.recall_until(word, w.tokens, user_id=user, limit=50)
                for other in group:
                    if other == user:
                        continue
                    for token in written[other].tokens:
                        for where in (sid, None):
                            got_back = [r.text for r in h.recall(token, where, 50, user_id=user)]
                            leaked = [t for t in got_back if has_word(t, token)]
                            assert not leaked, f"recall as user {user!r} returned user {other!r}'s memory: {leaked}"

    # -- HTTP backends: faults through memcore.http's transport ---------------------------------------------------

    def _http_traffic(
        self, h: Harness, faults: FaultInjector
    ) -> tuple[Tap, dict[str, list[str]], dict[str, list[str]]]:
        """Three sessions (two with awkward ids) of turns and notes through ``faults``. Returns the tap under the
        faults and, per session, the words of the turns and notes in call order, and the turns' texts."""
        assert h.http_backend is not None
        tap = Tap(h.inner_transport())
        h.open(h.http_backend(FaultTransport(tap, faults)))
        h.probe.read_at_commit = False  # its reads would meet the faults too
        sids = [h.sid("plain"), h.sid("a/b?c#d"), h.sid("emoji 🧠")]
        lifecycles = [h.memory.lifecycle(sid) for sid in sids]
        words: dict[str, list[str]] = {sid: [] for sid in sids}
        texts: dict[str, list[str]] = {sid: [] for sid in sids}
        for i in range(15):
            for sid, lc in zip(sids, lifecycles, strict=True):
                word = h.token()
                turn = [f"{word} asks question {i}", f"{word} answer {i}"]
                lc.sync_turn(*_pair(turn))
                words[sid].append(word)
                texts[sid] += turn
                if i % 5 == 2 and "remember" in h.capabilities:
                    note = h.token()
                    lc.remember(f"{note} is a note")
                    words[sid].append(note)
        for lc in lifecycles:
            lc.end()
        return tap, words, texts

    def _check_delivery(
        self,
        h: Harness,
        tap: Tap,
        faults: FaultInjector,
        words: dict[str, list[str]],
        texts: dict[str, list[str]],
        *,
        answers_lost: bool,
    ) -> None:
        """Everything was delivered once memcore is done, and the service received it in call order: exactly, or,
        when answers were lost after the service did the work (``answers_lost``), with retried requests repeated
        back to back and nothing else out of place."""
        report = h.flush()
        total = sum(len(w) for w in words.values())
        assert report.delivered == total and report.pending == 0, report
        faults.clear()  # reading back goes through the same transport
        for sid, expected in words.items():
            got = _received_words(tap.entries, h.run, set(expected))
            if answers_lost:
                got = _collapse(got)
            assert got == expected, "what the service received: " + _order_diff(sid, got, expected)
            if "history" in h.capabilities:
                stored = h.texts(sid)
                if answers_lost:
                    pairs = _collapse([f"{u}\n{a}" for u, a in zip(stored[::2], stored[1::2], strict=False)])
                    want = [f"{u}\n{a}" for u, a in zip(texts[sid][::2], texts[sid][1::2], strict=True)]
                    assert pairs == want and len(stored) % 2 == 0, "stored: " + _order_diff(sid, pairs, want)
                else:
                    assert stored == texts[sid], "stored: " + _order_diff(sid, stored, texts[sid])
            if "commit" in h.capabilities:
                assert h.probe.commits[sid] == 1, f"{sid!r} committed {h.probe.commits[sid]} times, not once"

    @requires("http_transport")
    def test_http_faults_end_with_every_write_delivered_in_order(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        faults = FaultInjector(rng=random.Random(h.seed))
        faults.add("status", status=503, times=3, retry_after=0)
        faults.add("status", status=503, every=4)
        faults.add("timeout", every=5)
        faults.add("reset", every=6)
        tap, words, texts = self._http_traffic(h, faults)
        self._check_delivery(h, tap, faults, words, texts, answers_lost=False)
        assert all(faults.faulted[kind] for kind in ("status", "timeout", "reset")), faults.faulted

    @requires("http_transport")
    def test_http_lost_answers_are_retried_in_order(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        faults = FaultInjector(rng=random.Random(h.seed))
        faults.add("reset", phase="read", every=4)
        faults.add("timeout", phase="read", every=7)
        tap, words, texts = self._http_traffic(h, faults)
        self._check_delivery(h, tap, faults, words, texts, answers_lost=True)
        assert faults.faulted["reset"] and faults.faulted["timeout"], faults.faulted

    @requires("http_transport")
    def test_http_session_ids_stay_in_their_own_path_segment(self, memcore_harness: Harness) -> None:
        h = memcore_harness
        assert h.http_backend is not None
        tap = Tap(h.inner_transport())
        h.open(h.http_backend(tap))
        plain = h.sid("plain")
        traffic: dict[str, list[TapEntry]] = {}
        for sid in [plain, *AWKWARD_SESSION_IDS]:
            start = len(tap.entries)
            lc = h.memory.lifecycle(sid)
            lc.sync_turn("a turn", "ok")
            if "remember" in h.capabilities:
                lc.remember("a note")
            lc.end()
            h.flush()
            traffic[sid] = tap.entries[start:]
        reference = [(e.method, *_split_target(e.target)) for e in traffic[plain]]
        for sid in AWKWARD_SESSION_IDS:
            got = [(e.method, *_split_target(e.target)) for e in traffic[sid]]
            assert [g[0] for g in got] == [r[0] for r in reference], (
                f"{sid!r} made requests {[(e.method, e.target) for e in traffic[sid]]}, unlike {plain!r}"
            )
            for (_, segments, query), (_, ref_segments, ref_query), entry in zip(
                got, reference, traffic[sid], strict=True
            ):
                assert b"." not in segments and b".." not in segments, f"{sid!r} put a dot segment in {entry.target!r}"
                assert len(segments) == len(ref_segments) and query == ref_query, (
                    f"{sid!r} reached {entry.target!r}: another endpoint than the plain id's"
                )
                for seg, ref in zip(segments, ref_segments, strict=True):
                    if plain not in _unquote(ref):
                        assert seg == ref, f"{sid!r} reached {entry.target!r}: another endpoint than the plain id's"
                if any(c in sid for c in "/?#%"):
                    assert sid.encode() not in entry.target, f"{sid!r} went on the wire unencoded: {entry.target!r}"

    # -- a service that is down: failures reach memcore, are retried and stay journaled ------------------------------

    def _open_down(self, h: Harness, down: Any) -> tuple[Memory, ManualClock, EventLog, Path]:
        """A Memory on ``down`` with a journal that every call waits for, and backoffs on a clock that moves only
        when the test says: each retry happens when the test advances it (1 s per backoff; an operation first tried
        more than 3 s ago is given up)."""
        clock, events = ManualClock(), EventLog()
        journal = memcore_home() / "down-journal.sqlite3"
        memory = h.open(
            down,
            observers=[events],
            clock=clock,
            journal=journal,
            durability="sync",
            stall_after=None,
            retry=RetryPolicy(initial=1.0, multiplier=1.0, max_delay=1.0, deadline=3.0, jitter=0.0),
        )
        h.probe.read_at_commit = False  # reading back from a service that is down fails too
        return memory, clock, events, journal

    def _down_event(self, events: EventLog, n: int, what: str) -> Event:
        got = events.wait(n, self.flush_timeout)
        assert len(got) >= n, (
            f"{what}: memcore heard nothing of it within {self.flush_timeout:g} s (it heard {got}); "
            "a call to a service that is down must return or raise within the backend's request timeout"
        )
        return got[n - 1]

    @staticmethod
    def _expect_retried(event: Event, what: str) -> None:
        if event.kind == "retried":
            return
        if event.kind == "failed":
            pytest.fail(
                f"{what} against a service that is down failed for good at once, with {event.error}: memcore retries "
                "only memcore.TransientError (and ConnectionError, TimeoutError, httpx's transport errors); raise "
                "TransientError when the service cannot be reached, so that memcore retries it and keeps it"
            )
        pytest.fail(
            f"{what} against a service that is down was reported {event.kind} ({event}): the backend swallowed the "
            "failure. Raise memcore.TransientError when the service cannot be reached; never log and return"
        )

    @staticmethod
    def _wake(memory: Memory, clock: ManualClock, seconds: float) -> None:
        clock.advance(seconds)
        memory._scheduler.wake()

    def _kept(self, journal: Path, sid: str) -> dict[str, int]:
        """What the journal holds for session ``sid``: operations by status (``pending``, ``failed``)."""
        kept: dict[str, int] = {}
        for group in journal_groups(journal):
            if group.session_id == sid:
                kept[group.status] = kept.get(group.status, 0) + group.operations
        return kept

    def _kept_until(self, journal: Path, sid: str, want: dict[str, int]) -> dict[str, int]:
        """What the journal holds for ``sid``, read until it is ``want`` or ``flush_timeout`` passed: the journal
        records an outcome (a failure) in the background, after memcore announced it."""
        try:
            return poll(
                lambda: self._kept(journal, sid), lambda kept: kept == want, deadline=self.flush_timeout, what="journal"
            )
        except AssertionError:
            return self._kept(journal, sid)

    def _close_down(self, memory: Memory, backend: Any) -> None:
        """Close the Memory at once, with the service still down (what waits out a backoff stays in the journal),
        then the backend, which memcore left open (it had work), once no call of it is running any more."""
        memory.close(timeout=0)
        poll(
            lambda: sum(g.in_flight for g in memory.gauges().values()),
            lambda running: running == 0,
            deadline=self.flush_timeout,
            what="the calls in flight at close returning",
        )
        if "close" in registry.capabilities(backend):
            pm = registry.new_manager()
            registry.register(pm, backend, backend=True)
            with contextlib.suppress(Exception):  # closing a client of a service that is down may complain
                pm.hook.memcore_close()

    @requires("down_service")
    def test_down_service_writes_are_retried_and_kept(self, memcore_harness: Harness, down_backend: Any) -> None:
        h = memcore_harness
        memory, clock, events, journal = self._open_down(h, down_backend)
        sid = h.sid("down")
        lc = memory.lifecycle(sid)
        lc.sync_turn("a turn written while the service is down", "ok")
        lc.sync_turn("a second turn", "still ok")
        if "remember" in h.capabilities:
            lc.remember("a note written while the service is down")
        try:
            self._expect_retried(self._down_event(events, 1, "a write"), "a write")
            self._wake(memory, clock, 1.0)  # the retry: attempt 2 reaches the backend
            self._expect_retried(self._down_event(events, 2, "a write's retry"), "a retried write (attempt 2)")
            accepted = sum(g.accepted for g in memory.gauges().values())
            report = memory.flush(timeout=0)
            assert report.delivered == 0 and report.failed == 0 and report.retried == 2, report
            assert report.pending == accepted and report.journaled == accepted, report
            want = {"pending": accepted}
            kept = self._kept_until(journal, sid, want)
            assert kept == want, f"the journal holds {kept} of {sid!r}, not the {accepted} pending"
            raised = [(hook, exc) for hook, exc in h.probe.errors if not is_transient(exc)]
            assert not raised, f"the backend raised errors memcore does not retry: {raised}"
            closed = memory.close(timeout=0)  # with the service still down: everything stays in the journal
            assert closed.delivered == 0 and closed.pending >= accepted and closed.journaled == closed.pending, closed
        finally:
            self._close_down(memory, down_backend)

    @requires("down_service", "commit")
    def test_down_service_commit_is_never_acknowledged(self, memcore_harness: Harness, down_backend: Any) -> None:
        h = memcore_harness
        memory, clock, events, journal = self._open_down(h, down_backend)
        sid = h.sid("down")
        lc = memory.lifecycle(sid)
        lc.sync_turn("a turn written while the service is down", "ok")
        lc.end()
        try:
            n = 0
            while True:  # each write: tried, retried, then given up (the clock moved past its deadline)
                n += 1
                event = self._down_event(events, n, "a write or the commit")
                if event.operation == "commit":
                    break
                if event.kind == "retried":
                    self._wake(memory, clock, 5.0)
                elif event.kind != "failed":
                    self._expect_retried(event, "a write")
            self._expect_retried(event, "a commit")
            self._wake(memory, clock, 1.0)
            self._expect_retried(self._down_event(events, n + 1, "a commit's retry"), "a retried commit (attempt 2)")
            report = memory.flush(timeout=0)
            assert report.committed == 0 and h.probe.commits[sid] == 0, f"a commit was acknowledged: {report}"
            assert report.delivered == 0 and report.pending == 1 and report.journaled == 1, report
            assert report.failed >= 1 and all(f.session_id == sid for f in report.failures), report
            want = {"pending": 1, "failed": report.failed}
            kept = self._kept_until(journal, sid, want)
            assert kept == want, (
                f"the journal holds {kept} of {sid!r}: the commit pending, the writes given up kept as failed "
                "(for memcore retry)"
            )
            raised = [(hook, exc) for hook, exc in h.probe.errors if not is_transient(exc)]
            assert not raised, f"the backend raised errors memcore does not retry: {raised}"
        finally:
            self._close_down(memory, down_backend)

    @requires("down_service", "recall")
    def test_down_service_recall_raises_rather_than_finding_nothing(
        self, memcore_harness: Harness, down_backend: Any
    ) -> None:
        h = memcore_harness
        memory = h.open(down_backend)
        got = memory.recall(h.token(), timeout=2.0)
        outcomes = h.probe.wait_recall_outcomes(1, self.flush_timeout)
        assert outcomes, f"the recall never reached the backend, or never returned within {self.flush_timeout:g} s"
        answers = [o for o in outcomes if not isinstance(o, BaseException)]
        assert not answers, (
            f"recall against a service that is down returned {answers[0]!r}: an answer, so memcore takes it for "
            "'nothing found' (no retry, no warning). Raise memcore.TransientError when the service cannot be reached"
        )
        final = [o for o in outcomes if isinstance(o, BaseException) and not is_transient(o)]
        assert not final, f"recall against a service that is down raised {final[0]!r}, which memcore does not retry"
        assert got == [], f"recall against a service that is down returned recollections: {_texts(got)}"


#: The suite's tests, which a subclass may only override with ``@pytest.mark.xfail(reason=...)``.
SUITE_TESTS = frozenset(name for name in vars(BackendSuite) if name.startswith("test_"))
#: Machinery a subclass may not override at all.
PROTECTED = frozenset({"_memcore_env", "_memcore_requirements", "memcore_harness"})

TOOL_TURN: list[dict[str, Any]] = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "name": "weather", "content": '{"temp_c": 21}'},
    {"role": "assistant", "content": "It is 21 °C in Paris."},
]


@attrs.define
class Written:
    """What a test wrote to one scope: the texts as history reads them back, and the tokens recall finds."""

    texts: list[str]
    tokens: list[str]


def _texts_of(texts: Sequence[str]) -> list[str]:
    return [t if len(t) <= 120 else t[:120] + "..." for t in texts]


def _pair(turn: Sequence[str]) -> tuple[str, str]:
    """A turn's user and assistant texts."""
    user, assistant = turn
    return user, assistant


def _texts(found: Sequence[Recollection]) -> list[str]:
    return [r.text if len(r.text) <= 120 else r.text[:120] + "..." for r in found]


def _codepoints(text: str) -> str:
    return " ".join(f"U+{ord(c):04X}" for c in text if ord(c) > 0x7E)


def _order_diff(sid: str, got: Sequence[str], expected: Sequence[str]) -> str:
    missing = [x for x in expected if x not in got]
    extra = [x for x in got if x not in expected]
    first = next(
        (i for i, (g, e) in enumerate(zip(got, expected, strict=False)) if g != e), min(len(got), len(expected))
    )
    return (
        f"session {sid!r}: got {len(got)} items, expected {len(expected)}; first difference at {first}; "
        f"missing {missing[:5]}; unexpected {extra[:5]}; got[{first}:{first + 4}]={list(got[first : first + 4])}, "
        f"expected[{first}:{first + 4}]={list(expected[first : first + 4])}"
    )


def _collapse(items: Sequence[str]) -> list[str]:
    """``items`` with runs of one value reduced to one (a retried request the service got twice)."""
    out: list[str] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
    return out


def _received_words(entries: Sequence[TapEntry], run: str, mine: set[str]) -> list[str]:
    """The words of ``mine`` in the bodies the service accepted (2xx), in the order it received them; a word that
    appears twice in one body (a turn's question and answer) counts once."""
    pattern = re.compile(rf"mc{run}q\d+".encode())
    out: list[str] = []
    for entry in entries:
        if 200 <= entry.status < 300:
            found = dict.fromkeys(m.decode() for m in pattern.findall(entry.body))
            out += [word for word in found if word in mine]
    return out


def _split_target(target: bytes) -> tuple[list[bytes], list[bytes]]:
    path, _, query = target.partition(b"?")
    keys = sorted(part.partition(b"=")[0] for part in query.split(b"&") if part)
    return path.split(b"/"), keys


def _unquote(segment: bytes) -> str:
    return unquote_to_bytes(segment).decode("utf-8", "replace")

"""The harness each suite test gets: a real ``memcore.Memory`` on the backend under test with jitter and a probe
around every backend call, unique ids and words per test, read-back, polling recall, and the checks the tests share.
"""

from __future__ import annotations

import contextlib
import itertools
import posixpath
import re
import socket
import threading
import time
import unicodedata
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import httpx
import pytest

from .. import _plugins as registry
from .._errors import InvalidSessionId, TransientError
from .._memory import Memory
from .._records import Message, Recollection, Report, Session
from .._retry import RetryPolicy
from .._validate import session_id as valid_session_id
from ._observers import Jitter, Probe
from ._poll import poll

__all__ = ["AWKWARD_SESSION_IDS", "Harness", "Settings", "Tap", "TapEntry", "closed_port", "decoys"]

#: Valid session ids that naive code sends to another endpoint or another session.
AWKWARD_SESSION_IDS: tuple[str, ...] = (
    "../x",
    "a/b?c#d",
    "%2e%2e",
    "with spaces",
    "  padded  ",
    "emoji 🧠✨👩‍💻",
    "right-to-left שלום/עולם",
    "x" * 255 + "y",
)


def decoys(session_id: str) -> set[str]:
    """What careless code could turn ``session_id`` into: path pieces, cut queries, (un)quoting, normalisation,
    truncation. Written beside the awkward ids, they make any such mangling collide with another session."""
    candidates = {
        session_id.replace("/", "_"),
        session_id.replace("/", "-"),
        session_id.rsplit("/", 1)[-1],
        session_id.split("/", 1)[0],
        posixpath.normpath(session_id),
        session_id.split("?", 1)[0],
        session_id.split("#", 1)[0],
        session_id.strip(),
        session_id.replace(" ", "_"),
        session_id.replace(" ", "+"),
        urllib.parse.unquote(session_id),
        urllib.parse.unquote(urllib.parse.unquote(session_id)),
        urllib.parse.quote(session_id, safe=""),
        urllib.parse.quote(session_id),
        unicodedata.normalize("NFKC", session_id),
        session_id.encode("ascii", "replace").decode(),
        session_id.encode("ascii", "ignore").decode(),
        session_id[:255],
        session_id[:128],
    }
    out = set()
    for candidate in candidates:
        try:
            out.add(valid_session_id(candidate))
        except InvalidSessionId:
            continue
    out.discard(session_id)
    return out


@contextlib.contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A TCP port on ``host`` where nothing listens, for as long as the ``with`` lasts: a socket is bound to it and
    never listens, so every connection is refused at once (no timeout to wait out) and no other program can take the
    port meanwhile. For a ``down_backend`` fixture: ``with closed_port() as port: yield MyBackend(url=...)``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@attrs.frozen(kw_only=True)
class Settings:
    """The suite class attributes the harness needs."""

    index_deadline: float
    flush_timeout: float
    retry_deadline: float
    scoped_recall: bool | None
    recall_is_verbatim: bool
    jitter: float


@attrs.frozen
class TapEntry:
    """One request that reached the service: method, raw path (query included) and body as sent, and the status."""

    method: str
    target: bytes
    body: bytes
    status: int


class Tap(httpx.BaseTransport):
    """Records every request it forwards to ``inner`` (what the service really received), in order."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._entries: list[TapEntry] = []

    @property
    def entries(self) -> list[TapEntry]:
        with self._lock:
            return list(self._entries)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            body = request.read()
        except Exception:  # a streamed body that cannot be read twice is not recorded
            body = b""
        response = self.inner.handle_request(request)
        with self._lock:
            self._entries.append(TapEntry(request.method, request.url.raw_path, body, response.status_code))
        return response

    def close(self) -> None:
        self.inner.close()


class Harness:
    """One suite test's view of the backend under test. See ``docs/conformance.md``."""

    def __init__(
        self,
        *,
        backend: Any,
        capabilities: frozenset[str],
        settings: Settings,
        seed: int,
        http_backend: Callable[[httpx.BaseTransport], Any] | None = None,
        inner_transport: Callable[[], httpx.BaseTransport] = httpx.HTTPTransport,
    ) -> None:
        self.backend = backend
        self.capabilities = capabilities
        self.settings = settings
        self.seed = seed
        self.http_backend = http_backend
        self.inner_transport = inner_transport
        self.run = uuid.uuid4().hex[:8]
        self._counter = itertools.count()
        self._memory: Memory | None = None
        self._probe: Probe | None = None
        self._memories: list[Memory] = []
        self._used: list[Any] = []
        self._gates: list[Any] = []

    # -- the Memory under test ----------------------------------------------------------------------------------

    def open(self, backend: Any = None, *, observers: Sequence[Any] = (), **kwargs: Any) -> Memory:
        """A Memory on ``backend`` (default: the fixture's) with the jitter and the probe around every backend call
        (and ``observers``), no journal, and quick retries. One per test."""
        if self._memory is not None:
            raise RuntimeError("a suite test opens one Memory; the harness already has one")
        plugin = self.backend if backend is None else backend
        probe = Probe()
        kwargs.setdefault("journal", False)
        kwargs.setdefault(
            "retry", RetryPolicy(initial=0.002, multiplier=2.0, max_delay=0.05, deadline=self.settings.retry_deadline)
        )
        memory = Memory(
            backends=[plugin],
            plugins=[Jitter(seed=self.seed, max_delay=self.settings.jitter), probe, *observers],
            strict=True,
            **kwargs,
        )
        self._used.append(plugin)
        self._memories.append(memory)
        self._gates = [o for o in observers if callable(getattr(o, "release", None))]
        hook = memory.plugin_manager.hook

        def read_back(session: Session) -> Sequence[Message]:
            # A TransientError is the backend saying "ask again" (a server still settling); memcore retries it on
            # every call it makes, so the probe does too, within the suite's retry deadline.
            deadline = time.monotonic() + self.settings.retry_deadline
            delay = 0.01
            while True:
                try:
                    answers = hook.memcore_history(session=session)
                except TransientError:
                    if time.monotonic() + delay > deadline:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                return list(answers[0]) if answers else []

        if "history" in registry.capabilities(plugin):
            probe.read_back = read_back
        self._memory, self._probe = memory, probe
        return memory

    @property
    def memory(self) -> Memory:
        if self._memory is None:
            return self.open()
        return self._memory

    @property
    def probe(self) -> Probe:
        self.memory  # noqa: B018 -- opens the Memory if needed
        assert self._probe is not None
        return self._probe

    def backend_name(self) -> str:
        return registry.plugin_name(self.backend)

    # -- ids and words --------------------------------------------------------------------------------------------

    def sid(self, label: str) -> str:
        """A session id unique to this test run."""
        return f"{self.run}-{label}"

    def token(self) -> str:
        """A word found nowhere else: letters and digits only, so that every search engine keeps it whole."""
        return f"mc{self.run}q{next(self._counter)}"

    # -- driving and reading --------------------------------------------------------------------------------------

    def flush(self, *, ok: bool = True, while_waiting: Callable[[], None] | None = None) -> Report:
        """Wait until everything accepted was delivered; with ``ok``, fail on any failed operation.

        However slow the service, this waits while work gets done: it fails only when no operation finished (nor
        was retried) for ``flush_timeout`` seconds, a backend that is stuck rather than slow. ``while_waiting`` is
        called about every 50 ms meanwhile."""
        quiet = self.settings.flush_timeout
        step = 0.05 if while_waiting is not None else min(1.0, quiet)
        progress: tuple[int, ...] = ()
        since = time.monotonic()
        while True:
            report = self.memory.flush(timeout=step)
            if not report.timed_out:
                break
            if while_waiting is not None:
                while_waiting()
            now = time.monotonic()
            done = (report.delivered, report.committed, report.failed, report.retried)
            if done != progress:
                progress, since = done, now
            assert now - since < quiet, f"memcore delivered nothing for flush_timeout={quiet:g} s: {report}"
        if ok:
            assert report.failed == 0, f"the backend failed operations: {list(report.failures)}"
        return report

    def close(self) -> Report:
        self.flush(ok=False)  # however long delivery takes while it progresses; then close has little left to do
        report = self.memory.close(timeout=self.settings.flush_timeout)
        assert not report.timed_out, f"close did not finish within {self.settings.flush_timeout:g} s: {report}"
        return report

    def history(self, session_id: str, user_id: str | None = None) -> list[Message]:
        """What the backend's read-back hook holds for ``session_id`` of user ``user_id`` (``None``: the default)."""
        assert self._probe is not None and self._probe.read_back is not None, "the backend has no memcore_history"
        return list(self._probe.read_back(Session(id=session_id, user_id=user_id)))

    def texts(self, session_id: str, user_id: str | None = None) -> list[str]:
        return [m.content for m in self.history(session_id, user_id)]

    def commit(self, *session_ids: str, user_id: str | None = None) -> None:
        """Ask for a commit of each session of ``user_id`` (if the backend commits), so that what was written
        becomes recallable."""
        if "commit" in self.capabilities:
            for sid in session_ids:
                self.memory.lifecycle(sid, user_id=user_id).end()

    def recall(
        self, query: str, session_id: str | None = None, limit: int = 10, *, user_id: str | None = None
    ) -> list[Recollection]:
        """One recall as user ``user_id``, scoped to ``session_id`` (through a lifecycle in it) or across everything
        the user has (``None``)."""
        timeout = min(10.0, max(self.settings.index_deadline, 2.0))
        if session_id is None:
            return self.memory.recall(query, limit=limit, timeout=timeout, user_id=user_id)
        return self.memory.lifecycle(session_id, user_id=user_id).recall(query, limit=limit, timeout=timeout)

    def recall_until(
        self,
        query: str,
        wanted: Iterable[str],
        *,
        session_id: str | None = None,
        limit: int = 10,
        what: str | None = None,
        user_id: str | None = None,
    ) -> list[Recollection]:
        """Recall (as ``user_id``) until every word in ``wanted`` appears in some recollection, polling up to
        ``index_deadline``."""
        need = list(wanted)

        def complete(found: list[Recollection]) -> bool:
            return all(any(has_word(r.text, word) for r in found) for word in need)

        where = "everywhere" if session_id is None else f"in session {session_id!r}"
        who = "" if user_id is None else f" as user {user_id!r}"
        return poll(
            lambda: self.recall(query, session_id, limit, user_id=user_id),
            complete,
            deadline=self.settings.index_deadline,
            what=what or f"recall of {query!r} {where}{who} returning {need}",
        )

    def recall_until_gone(
        self,
        unwanted: Iterable[str],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        what: str | None = None,
    ) -> None:
        """Recall each word of ``unwanted`` (as ``user_id``) until none of them appears in any recollection, polling
        up to ``index_deadline``: for erasures that a service's index catches up with in the background."""
        words = list(unwanted)

        def found() -> list[str]:
            hits = []
            for word in words:
                hits += [r.text for r in self.recall(word, session_id, 50, user_id=user_id) if has_word(r.text, word)]
            return hits

        where = "everywhere" if session_id is None else f"in session {session_id!r}"
        who = "" if user_id is None else f" as user {user_id!r}"
        poll(
            found,
            lambda hits: not hits,
            deadline=self.settings.index_deadline,
            what=what or f"recall {where}{who} no longer returning {words}",
        )

    def check_placement(
        self, expected: Mapping[str, Sequence[str]], tokens: Mapping[str, str], *, recall_only: bool = False
    ) -> None:
        """Each session in ``expected`` holds exactly its texts (in order), and nothing of another session.

        Through ``memcore_history`` where the backend has it (unless ``recall_only``: notes are not in history).
        Otherwise through recall, once every session was committed: each session's word (``tokens``) must come back
        labelled with its own session, or, on a backend declared ``scoped_recall``, be found in its session and in no
        other. Skipped when neither can be observed.
        """
        if "history" in self.capabilities and not recall_only:
            for sid, texts in expected.items():
                got = self.texts(sid)
                assert got == list(texts), f"session {sid!r} holds {_short(got)}, expected exactly {_short(texts)}"
            return
        if "recall" not in self.capabilities:
            pytest.skip("placement is observable only through 'history' or 'recall', and the backend has neither")
        labelled = False
        scoped = self.settings.scoped_recall is True
        others = list(tokens)
        for sid, word in tokens.items():
            found = self.recall_until(word, [word], session_id=sid if scoped else None)
            for r in found:
                if has_word(r.text, word) and r.session_id is not None:
                    labelled = True
                    assert r.session_id == sid, (
                        f"{r.text!r} was written to session {sid!r} but recalled from {r.session_id!r}"
                    )
            if scoped:
                other = next((o for o in others if o != sid), None)
                if other is not None:
                    leaked = [r.text for r in self.recall(word, other) if has_word(r.text, word)]
                    assert not leaked, f"what session {sid!r} holds was recalled in session {other!r}: {leaked}"
        if not (labelled or scoped):
            pytest.skip(
                "placement is not observable: the backend has no 'history', its recollections carry no session_id "
                "and the suite does not declare scoped_recall = True"
            )

    # -- teardown -------------------------------------------------------------------------------------------------

    def teardown(self) -> None:
        if self._probe is not None and self._probe.gate is not None:
            self._probe.gate.release()
        for gate in self._gates:  # a test that failed while holding calls: let them go before closing
            gate.release()
        for memory in self._memories:
            memory.close(timeout=self.settings.flush_timeout)
        if not any(plugin is self.backend for plugin in self._used) and "close" in self.capabilities:
            pm = registry.new_manager()  # never handed to a Memory (the test was skipped): close it here
            registry.register(pm, self.backend, backend=True)
            pm.hook.memcore_close()


def _short(value: Sequence[str], width: int = 300) -> str:
    shown = repr([v if len(v) <= 80 else f"{v[:40]}...({len(v)} chars)" for v in value])
    return shown if len(shown) <= width else shown[:width] + "..."


def has_word(text: str, word: str) -> bool:
    """``word`` stands in ``text`` as a whole word (so token ``q1`` is not found inside ``q10``)."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None

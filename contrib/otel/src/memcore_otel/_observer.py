"""The observer: a span per backend call (wrapper hookimpls) and metrics from memcore's events.

How a lane call learns its backend. A wrapper hears a hook's arguments only, and none of them names the backend the
call goes to. memcore announces every lane call's outcome through ``memcore_event`` (which carries the backend's
name) on the worker thread that ran the call, right after the call returned and before the operation counts as
finished (``_hooks.ObserverSpec``, ``Observers.emit``). So a lane call's span is finished at the wrapper's exit (its
end time and status are fixed there) but ended, with its backend and outcome, by the event that follows it on the
same thread. The session's ``memcore_open_session`` (when the call needed one) is ended by the same event. Recall has
no event: its span is ended at once, and names its backend only when the backend's recollections carry their
``source`` (the SQLite and PostgreSQL backends set it; others leave it to the core, which fills it in after the
wrappers ran).

Nothing here ever raises into memcore: a telemetry failure is logged (rate-limited) on ``memcore.otel`` and the
backend call goes on as if the observer were not there.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Generator, Sequence, Sized
from typing import Any

import memcore
from memcore import Event, Message, Note, Session
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["IDS_ENV", "ID_KEY_ENV", "OtelObserver"]

log = logging.getLogger("memcore.otel")

Wrap = Generator[None, Any, Any]

#: How session and user ids are sent: ``hash`` (default), ``raw`` or ``omit``.
IDS_ENV = "MEMCORE_OTEL_IDS"
#: An HMAC key for the id hashes (without one, a plain SHA-256: fine against reading ids off a dashboard, not
#: against someone who can guess them and hash the guesses).
ID_KEY_ENV = "MEMCORE_OTEL_ID_KEY"
_ID_MODES = ("hash", "raw", "omit")

SCOPE = "memcore_otel"
VERSION = "0.1.0"

# Attribute names: semantic conventions where they fit (the GenAI memory spans of semantic-conventions-genai,
# development status; error.type, user.*), memcore's own otherwise.
OPERATION_NAME = "gen_ai.operation.name"
STORE_ID = "gen_ai.memory.store.id"
RECORD_COUNT = "gen_ai.memory.record.count"
CONVERSATION_ID = "gen_ai.conversation.id"
USER_ID = "user.id"
USER_HASH = "user.hash"
ERROR_TYPE = "error.type"
BACKEND = "memcore.backend"
OPERATION = "memcore.operation"
ATTEMPT = "memcore.attempt"
OUTCOME = "memcore.outcome"

OPEN, WRITE, REMEMBER, COMMIT, RECALL, FORGET, REWIND = (
    "open_session",
    "write",
    "remember",
    "commit",
    "recall",
    "forget",
    "rewind",
)
#: memcore's operation -> ``gen_ai.operation.name`` (the span's name). A commit lets the service extract, merge or
#: update memories without the caller choosing which: ``upsert_memory``. Opening a session has no GenAI value.
GENAI_OPERATION = {
    OPEN: "open_session",
    WRITE: "create_memory",
    REMEMBER: "create_memory",
    COMMIT: "upsert_memory",
    RECALL: "search_memory",
    FORGET: "delete_memory",
    REWIND: "delete_memory",
}
#: The events that tell how a lane call ended (the others, replayed, owes_commit and dropped, follow no call).
CALL_OUTCOMES = frozenset({"delivered", "committed", "failed", "retried", "forgotten", "rewound"})
UNKNOWN = "unknown"
#: Histogram buckets in seconds, from a local SQLite call to a slow remote commit.
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Telemetry failures are logged at most once per this many seconds.
COMPLAIN_EVERY = 60.0


class _Call:
    """One backend call in progress, or finished and waiting for its event."""

    __slots__ = ("end_ns", "error_type", "operation", "seconds", "span", "started")

    def __init__(self, span: trace.Span, operation: str) -> None:
        self.span = span
        self.operation = operation
        self.started = time.perf_counter()
        self.end_ns = 0
        self.seconds = 0.0
        self.error_type: str | None = None


class _Waiting(list[_Call]):
    """A worker thread's finished calls that wait for their event. Should a worker thread end with some still here
    (a call retried while its Memory was closing is announced by no event), they are ended as it goes."""

    def __del__(self) -> None:
        for call in self:
            try:
                call.span.set_attribute(OUTCOME, UNKNOWN)
                call.span.end(end_time=call.end_ns)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass


def _error_type(error: BaseException) -> str:
    """A low-cardinality name for what was raised: the exception's class, never its message (a backend's error text
    may quote content or a URL with a key in it)."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "") else f"{module}.{cls.__qualname__}"


class OtelObserver:
    """OpenTelemetry for memcore, as an observer plugin (entry-point group ``memcore.plugins``, name ``otel``).

    - A span per backend call (``memcore_open_session``, ``_write``, ``_remember``, ``_commit``, ``_recall``,
      ``_forget``, ``_rewind``), kind CLIENT, named by its ``gen_ai.operation.name``, with the backend, the operation,
      the attempt (writes, notes, commits), the outcome, how many records and, when it raised, ``error.type``. Its
      start and end are the call's. Never content: no message, note, query, recollection text or error message.
    - ``memcore.operations`` (counter): every event, by backend, operation and outcome; ``memcore.commit.duration``
      and ``memcore.recall.duration`` (histograms, seconds) per backend call, by backend and outcome.

    ``ids``: ``"hash"`` (default) sends session and user ids hashed (``gen_ai.conversation.id`` holds the session's
    hash, so a trace viewer still groups a conversation; ``user.hash`` the user's), ``"raw"`` as they are
    (``gen_ai.conversation.id``, ``user.id``), ``"omit"`` not at all. ``id_key`` makes the hashes HMAC-SHA-256 with
    that key. Both default to the environment (``MEMCORE_OTEL_IDS``, ``MEMCORE_OTEL_ID_KEY``), which is how an
    observer loaded from its entry point is set. ``tracer_provider`` and ``meter_provider`` default to the global
    ones (resolved when they are set, so the application may configure OpenTelemetry after memcore).
    """

    name = "otel"

    def __init__(
        self,
        *,
        ids: str | None = None,
        id_key: str | bytes | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        mode = (ids if ids is not None else os.environ.get(IDS_ENV, "").strip().lower()) or "hash"
        if mode not in _ID_MODES:
            raise ValueError(f"ids must be one of {', '.join(_ID_MODES)}, not {mode!r}")
        self.ids = mode
        key = id_key if id_key is not None else os.environ.get(ID_KEY_ENV) or None
        self._key = key.encode("utf-8") if isinstance(key, str) else key
        self._tracer = trace.get_tracer(SCOPE, VERSION, tracer_provider)
        meter = metrics.get_meter(SCOPE, VERSION, meter_provider)
        self._operations = meter.create_counter(
            "memcore.operations",
            unit="{operation}",
            description="Operations as memcore's events tell them: delivered, committed, failed (for good), retried, "
            "replayed, owes_commit, dropped, forgotten, rewound; by backend, operation and outcome.",
        )
        self._commit_seconds = meter.create_histogram(
            "memcore.commit.duration",
            unit="s",
            description="How long a backend's memcore_commit call took, by backend and outcome.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._recall_seconds = meter.create_histogram(
            "memcore.recall.duration",
            unit="s",
            description="How long a backend's memcore_recall call took (on a recall worker), by backend and outcome.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._local = threading.local()
        self._hash = functools.lru_cache(maxsize=4096)(self._digest)
        self._complained = (-COMPLAIN_EVERY, 0)
        self._complain_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OtelObserver(ids={self.ids!r})"

    # -- ids -----------------------------------------------------------------------------------------------------

    def _digest(self, value: str) -> str:
        data = value.encode("utf-8", "surrogatepass")
        if self._key is not None:
            return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:16]
        return hashlib.sha256(data).hexdigest()[:16]

    def _who(self, attributes: dict[str, Any], session_id: str | None, user_id: str | None) -> None:
        if self.ids == "omit":
            return
        raw = self.ids == "raw"
        if session_id:
            attributes[CONVERSATION_ID] = session_id if raw else self._hash(session_id)
        if user_id is not None:
            if raw:
                attributes[USER_ID] = user_id
            else:
                attributes[USER_HASH] = self._hash(user_id)

    # -- spans ---------------------------------------------------------------------------------------------------

    def _start(
        self,
        operation: str,
        session_id: str | None,
        user_id: str | None,
        attempt: int | None = None,
        records: int | None = None,
    ) -> _Call | None:
        try:
            if operation != RECALL:
                self._flush_stale(operation)
            genai = GENAI_OPERATION[operation]
            span = self._tracer.start_span(genai, kind=SpanKind.CLIENT)
            if span.is_recording():  # else (no SDK, or not sampled) nothing would keep them: not even made
                attributes: dict[str, Any] = {OPERATION_NAME: genai, OPERATION: operation}
                if attempt is not None:
                    attributes[ATTEMPT] = attempt
                if records is not None:
                    attributes[RECORD_COUNT] = records
                self._who(attributes, session_id, user_id)
                span.set_attributes(attributes)
            return _Call(span, operation)
        except Exception:
            self._complain()
            return None

    def _finish(self, call: _Call | None, error: BaseException | None) -> None:
        """A lane call returned (or raised): fix its end and status, and leave it for its event."""
        if call is None:
            return
        try:
            if call.operation != COMMIT and not call.span.is_recording():
                return  # no SDK (or not sampled): nothing waits for the event but a commit's latency
            call.end_ns = time.time_ns()
            call.seconds = time.perf_counter() - call.started
            if error is not None:
                call.error_type = _error_type(error)
                call.span.set_attribute(ERROR_TYPE, call.error_type)
                call.span.set_status(Status(StatusCode.ERROR))
            waiting = getattr(self._local, "waiting", None)
            if waiting is None:
                waiting = self._local.waiting = _Waiting()
            waiting.append(call)
        except Exception:
            self._complain()

    def _flush_stale(self, operation: str) -> None:
        """End what an earlier call on this thread left without an event (a call made outside memcore's lanes, or
        retried while closing): a session's open is followed by its operation, so only that keeps an open waiting."""
        waiting: _Waiting | None = getattr(self._local, "waiting", None)
        if not waiting:
            return
        keep = [c for c in waiting if c.operation == OPEN] if operation != OPEN else []
        stale = [c for c in waiting if c not in keep]
        waiting[:] = keep
        for call in stale:
            call.span.set_attribute(OUTCOME, UNKNOWN)
            call.span.end(end_time=call.end_ns)

    def _settle(self, call: _Call, backend: str, outcome: str) -> None:
        span = call.span
        span.set_attributes({BACKEND: backend, STORE_ID: backend, OUTCOME: outcome})
        span.end(end_time=call.end_ns)
        if call.operation == COMMIT:
            attributes = {BACKEND: backend, OUTCOME: outcome}
            if call.error_type is not None:
                attributes[ERROR_TYPE] = call.error_type
            self._commit_seconds.record(call.seconds, attributes)

    # -- events --------------------------------------------------------------------------------------------------

    @memcore.hookimpl
    def memcore_event(self, event: Event) -> None:
        try:
            self._operations.add(1, {BACKEND: event.backend, OPERATION: event.operation, OUTCOME: event.kind})
            if event.kind not in CALL_OUTCOMES:
                return
            waiting: _Waiting | None = getattr(self._local, "waiting", None)
            if not waiting:
                return
            calls = list(waiting)
            waiting.clear()
            for call in calls:
                own = call.operation == event.operation or call.error_type is not None
                self._settle(call, event.backend, event.kind if own else "ok")
        except Exception:
            self._complain()

    # -- the backend hooks, wrapped ------------------------------------------------------------------------------

    @memcore.hookimpl(wrapper=True)
    def memcore_open_session(self, session: Session) -> Wrap:
        call = self._start(OPEN, session.id, session.user_id)
        try:
            result = yield
        except BaseException as exc:
            self._finish(call, exc)
            raise
        self._finish(call, None)
        return result

    @memcore.hookimpl(wrapper=True)
    def memcore_write(self, session: Session, messages: Sequence[Message], attempt: int) -> Wrap:
        call = self._start(WRITE, session.id, session.user_id, attempt, len(messages))
        try:
            result = yield
        except BaseException as exc:
            self._finish(call, exc)
            raise
        self._finish(call, None)
        return result

    @memcore.hookimpl(wrapper=True)
    def memcore_remember(self, session: Session, note: Note, attempt: int) -> Wrap:
        call = self._start(REMEMBER, session.id, session.user_id, attempt, 1)
        try:
            result = yield
        except BaseException as exc:
            self._finish(call, exc)
            raise
        self._finish(call, None)
        return result

    @memcore.hookimpl(wrapper=True)
    def memcore_commit(self, session: Session, attempt: int) -> Wrap:
        call = self._start(COMMIT, session.id, session.user_id, attempt)
        try:
            result = yield
        except BaseException as exc:
            self._finish(call, exc)
            raise
        self._finish(call, None)
        return result

    @memcore.hookimpl(wrapper=True)
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> Wrap:
        call = self._start(FORGET, session_id, user_id)
        try:
            result = yield
        except BaseException as exc:
            self._finish(call, exc)
            raise
        self._finish(call, None)
        return result

    @memcore.hookimpl(wrapper=True)
    def memcore_rewind(self, session: Session, turns: int) -> Wrap:
        call = self._start(REWIND, session.id, session.user_id, None, turns)
        try:
            result = yield
        except BaseException as exc:
            self._finish(call, exc)
            raise
        self._finish(call, None)
        return result

    @memcore.hookimpl(wrapper=True)
    def memcore_recall(self, session: Session | None, user_id: str | None) -> Wrap:
        # On a recall worker. The span's parent is that thread's current context: the caller's span only if memcore
        # runs the recall in a copy of the caller's context (see docs/observability.md).
        call = self._start(RECALL, session.id if session is not None else None, user_id)
        try:
            result = yield
        except BaseException as exc:
            self._end_recall(call, None, exc)
            raise
        self._end_recall(call, result, None)
        return result

    def _end_recall(self, call: _Call | None, result: Any, error: BaseException | None) -> None:
        if call is None:
            return
        try:
            seconds = time.perf_counter() - call.started
            span = call.span
            answer = result[0] if isinstance(result, list) and result else None
            backend = _source(answer)
            outcome = "ok"
            attributes: dict[str, Any] = {}
            if error is not None:
                outcome = "failed"
                attributes[ERROR_TYPE] = _error_type(error)
                span.set_attribute(ERROR_TYPE, attributes[ERROR_TYPE])
                span.set_status(Status(StatusCode.ERROR))
            elif isinstance(answer, Sized):
                span.set_attribute(RECORD_COUNT, len(answer))
            if backend is not None:
                span.set_attribute(BACKEND, backend)
                span.set_attribute(STORE_ID, backend)
            span.set_attribute(OUTCOME, outcome)
            span.end()
            attributes[BACKEND] = backend or UNKNOWN
            attributes[OUTCOME] = outcome
            self._recall_seconds.record(seconds, attributes)
        except Exception:
            self._complain()

    # -- trouble -------------------------------------------------------------------------------------------------

    def _complain(self) -> None:
        now = time.monotonic()
        with self._complain_lock:
            last, held = self._complained
            if now - last < COMPLAIN_EVERY:
                self._complained = (last, held + 1)
                return
            self._complained = (now, 0)
        more = f" ({held} more since the last report)" if held else ""
        log.warning("memcore-otel: telemetry failed; the backend call is not affected%s", more, exc_info=True)


def _source(answer: Any) -> str | None:
    """The backend named by a recall answer's recollections (``source``), if they all name the same one."""
    if not isinstance(answer, (list, tuple)) or not answer:
        return None
    sources = {getattr(item, "source", None) for item in answer}
    if len(sources) == 1:
        (source,) = sources
        if isinstance(source, str) and source:
            return source
    return None

"""Deterministic, scriptable faults in front of any httpx transport, for tests and benchmarks."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Literal, NamedTuple

import attrs
import httpx

from ._http_errors import wire_path

__all__ = ["Fault", "FaultInjector", "FaultKind", "FaultTransport", "LogEntry"]

FaultKind = Literal["latency", "status", "timeout", "reset", "hang"]
KINDS: tuple[FaultKind, ...] = ("latency", "status", "timeout", "reset", "hang")
Phase = Literal["connect", "read"]


class LogEntry(NamedTuple):
    """One request as the transport saw it. ``outcome`` is ``forwarded``, ``status 503``, ``connect timeout``,
    ``read timeout``, ``connect reset``, ``read reset``, ``hang timeout``, or ``forwarded, then ConnectError`` (the
    inner transport raised)."""

    method: str
    path: str
    outcome: str


@attrs.define(eq=False)
class Fault:
    """One rule, as returned by :meth:`FaultInjector.add`. ``entered`` is set when a request starts to hang on it;
    :meth:`release` lets hung requests (and later ones) go on."""

    kind: FaultKind
    times: int | None = None
    every: int | None = None
    match: Callable[[httpx.Request], bool] | None = None
    probability: float | None = None
    seconds: float | None = None
    status: int = 503
    retry_after: float | str | None = None
    body: bytes = b""
    phase: Phase = "connect"
    entered: threading.Event = attrs.field(factory=threading.Event)
    released: threading.Event = attrs.field(factory=threading.Event)
    consulted: int = 0  # matching requests this rule was asked about
    fired: int = 0  # ...and how many of them it acted on

    def release(self) -> None:
        self.released.set()

    @property
    def terminal(self) -> bool:
        """Whether it answers the request itself (a hang only delays it, unless it runs out of time)."""
        return self.kind in ("status", "timeout", "reset")


class FaultInjector:
    """An ordered list of fault rules plus what happened: ``seen``, ``forwarded``, ``faulted`` (per kind) and ``log``.

    For each request, rules are consulted in the order they were added. A rule that matches counts the request; it
    acts on it when ``times`` is not used up, the count is a multiple of ``every`` and (with a seeded ``rng``) a draw
    falls under ``probability``. Latency and hang rules delay the request and let the next rule have its say; the
    first status, timeout or reset rule that acts answers the request, and the rules after it are not consulted.
    Thread-safe; ``match`` predicates run under its lock, so keep them quick.
    """

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._log: list[LogEntry] = []
        self.seen = 0
        self.forwarded = 0
        self.faulted: Counter[str] = Counter()

    def add(
        self,
        kind: FaultKind,
        *,
        times: int | None = None,
        every: int | None = None,
        match: Callable[[httpx.Request], bool] | None = None,
        probability: float | None = None,
        seconds: float | None = None,
        status: int = 503,
        retry_after: float | str | None = None,
        body: bytes | str = b"",
        phase: Phase = "connect",
    ) -> Fault:
        """Add a rule and return it.

        - ``latency``: wait ``seconds`` (through the transport's ``sleep``), then go on.
        - ``status``: answer ``status`` (with ``Retry-After: retry_after`` and ``body`` if given), not forwarded.
        - ``timeout`` / ``reset``: raise ``ConnectTimeout`` / ``ConnectError`` before forwarding (``phase="connect"``),
          or forward and then lose the answer with ``ReadTimeout`` / ``ReadError`` (``phase="read"``: the service
          did the work, the client never heard).
        - ``hang``: block until :meth:`Fault.release`, at most ``seconds`` and the request's read timeout, whichever
          is shorter (no bound if neither is set); if released go on, else raise ``ReadTimeout``.

        ``times``: act on the first N matching requests only. ``every``: on every Nth. ``match``: a predicate on the
        ``httpx.Request`` (method, ``url.path``...). ``probability``: needs ``FaultInjector(rng=random.Random(seed))``.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        if (times is not None and times < 1) or (every is not None and every < 1):
            raise ValueError("times and every must be at least 1")
        if probability is not None and (self._rng is None or not 0.0 <= probability <= 1.0):
            raise ValueError("probability must be within [0, 1] and needs FaultInjector(rng=random.Random(seed))")
        if kind == "latency" and (seconds is None or seconds < 0):
            raise ValueError("a latency fault needs seconds >= 0")
        if not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        if phase not in ("connect", "read"):
            raise ValueError(f"phase must be 'connect' or 'read', not {phase!r}")
        content = body.encode() if isinstance(body, str) else body
        fault = Fault(kind, times, every, match, probability, seconds, status, retry_after, content, phase)
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every rule (the counts and the log stay); hung requests are released."""
        with self._lock:
            rules, self._rules = self._rules, []
        for fault in rules:
            fault.release()

    @property
    def log(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    def plan(self, request: httpx.Request) -> list[Fault]:
        """Count ``request`` as seen and return the rules that act on it, in order (at most one terminal, last)."""
        with self._lock:
            self.seen += 1
            acting = []
            for fault in self._rules:
                if self._acts(fault, request):
                    acting.append(fault)
                    self.faulted[fault.kind] += 1
                    if fault.terminal:
                        break
            return acting

    def record(self, request: httpx.Request, outcome: str, *, forwarded: bool = False) -> None:
        with self._lock:
            self.forwarded += forwarded
            self._log.append(LogEntry(request.method, wire_path(request), outcome))

    def _acts(self, fault: Fault, request: httpx.Request) -> bool:
        if fault.match is not None and not fault.match(request):
            return False
        fault.consulted += 1
        if fault.times is not None and fault.fired >= fault.times:
            return False
        if fault.every is not None and fault.consulted % fault.every:
            return False
        if fault.probability is not None and self._rng is not None and self._rng.random() >= fault.probability:
            return False
        fault.fired += 1
        return True


class FaultTransport(httpx.BaseTransport):
    """An httpx transport that applies a :class:`FaultInjector`'s rules, then forwards to ``inner``.

    ``httpx.Client(transport=FaultTransport(inner, faults))``; ``inner`` defaults to ``httpx.HTTPTransport()`` and may
    be an ``httpx.MockTransport``. ``sleep`` serves latency faults: pass a fake one to keep tests instant.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        faults: FaultInjector | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner if inner is not None else httpx.HTTPTransport()
        self.faults = faults if faults is not None else FaultInjector()
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for fault in self.faults.plan(request):
            if fault.kind == "latency":
                self._sleep(fault.seconds or 0.0)
            elif fault.kind == "hang":
                self._hang(fault, request)
            elif fault.kind == "status":
                self.faults.record(request, f"status {fault.status}")
                headers = {} if fault.retry_after is None else {"Retry-After": _header_value(fault.retry_after)}
                return httpx.Response(fault.status, headers=headers, content=fault.body, request=request)
            else:
                self._fail(fault, request)
        return self._forward(request, "forwarded")

    def close(self) -> None:
        self.inner.close()

    def _forward(self, request: httpx.Request, outcome: str) -> httpx.Response:
        try:
            response = self.inner.handle_request(request)
        except Exception as exc:
            self.faults.record(request, f"forwarded, then {type(exc).__name__}", forwarded=True)
            raise
        self.faults.record(request, outcome, forwarded=True)
        return response

    def _hang(self, fault: Fault, request: httpx.Request) -> None:
        timeouts = request.extensions.get("timeout", {})
        limits = [t for t in (fault.seconds, timeouts.get("read")) if t is not None]
        fault.entered.set()
        if not fault.released.wait(min(limits) if limits else None):
            self.faults.record(request, "hang timeout")
            raise httpx.ReadTimeout("fault injected: the service hung", request=request)

    def _fail(self, fault: Fault, request: httpx.Request) -> None:
        forwarded = fault.phase == "read"
        outcome = f"{fault.phase} {fault.kind}"
        if forwarded:  # the service gets the request and does the work; its answer is lost
            self._forward(request, outcome).close()
        else:
            self.faults.record(request, outcome)
        error: type[httpx.TransportError]
        if fault.kind == "timeout":
            error = httpx.ReadTimeout if forwarded else httpx.ConnectTimeout
            raise error(f"fault injected: {fault.phase} timeout", request=request)
        error = httpx.ReadError if forwarded else httpx.ConnectError
        raise error(f"fault injected: connection reset by peer ({fault.phase})", request=request)


def _header_value(retry_after: float | str) -> str:
    if isinstance(retry_after, str):
        return retry_after
    return str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)

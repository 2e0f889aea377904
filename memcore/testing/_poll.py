"""Polling up to a stated deadline, for services that index in the background: never sleep and hope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["poll"]

T = TypeVar("T")


def poll(
    probe: Callable[[], T],
    until: Callable[[T], bool],
    *,
    deadline: float,
    what: str = "the condition",
    interval: float = 0.01,
    max_interval: float = 0.25,
) -> T:
    """Call ``probe`` until ``until(result)`` holds and return that result; ``interval`` grows by half each time up
    to ``max_interval``. Past ``deadline`` seconds, fail with an ``AssertionError`` that names ``what``, the deadline
    and the last result. The first call is made at once, so a service that is ready costs no waiting."""
    start = time.monotonic()
    while True:
        value = probe()
        if until(value):
            return value
        elapsed = time.monotonic() - start
        if elapsed >= deadline:
            shown = repr(value)
            if len(shown) > 500:
                shown = shown[:500] + "..."
            raise AssertionError(f"{what}: not within the deadline of {deadline:g} s (index_deadline); last: {shown}")
        time.sleep(min(interval, max(deadline - elapsed, 0.0)))
        interval = min(interval * 1.5, max_interval)

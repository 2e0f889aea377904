"""The override guard: a suite subclass may not quietly replace a conformance test.

A subclass that replaces one of the suite's ``test_*`` methods (in its own body, an intermediate class or a mixin)
must mark the replacement ``@pytest.mark.xfail(reason="...")``, so that the report says which guarantee the backend
does not keep and why. The suite's machinery (its harness fixtures) may not be replaced at all. Anything else is
refused when the class is created, which makes its module fail to collect, and the run fail.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["OverrideError", "check_overrides", "xfail_reason"]


class OverrideError(TypeError):
    """A suite subclass replaced a conformance test without ``@pytest.mark.xfail(reason=...)``."""


def xfail_reason(value: Any) -> str | None:
    """The non-empty ``reason`` of an ``xfail`` mark on ``value``, if it carries one."""
    for mark in getattr(value, "pytestmark", None) or ():
        if getattr(mark, "name", None) != "xfail":
            continue
        reason = mark.kwargs.get("reason")
        if isinstance(reason, str) and reason.strip():
            return reason
    return None


def check_overrides(cls: type, suite: type, tests: frozenset[str], protected: frozenset[str]) -> None:
    """Raise :class:`OverrideError` naming every test of ``suite`` that ``cls`` resolves to another definition
    without an xfail reason, and every protected member it resolves to another definition at all."""
    problems = []
    for name in sorted(tests | protected):
        original = suite.__dict__.get(name)
        current = inspect.getattr_static(cls, name, None)
        if current is original:
            continue
        where = next((k.__qualname__ for k in cls.__mro__ if name in vars(k)), cls.__qualname__)
        if name in protected:
            problems.append(f"{name} (in {where}) is part of the suite's machinery and cannot be overridden")
        elif xfail_reason(current) is None:
            problems.append(
                f"{name} (in {where}) overrides a conformance test without @pytest.mark.xfail(reason=...); "
                "mark the override xfail with the reason the backend does not keep this guarantee"
            )
    if problems:
        raise OverrideError(f"{cls.__module__}.{cls.__qualname__}: " + "; ".join(problems))

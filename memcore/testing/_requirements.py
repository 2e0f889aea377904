"""What a backend can do, in one place: the capabilities the conformance suite tests, and where each comes from.

Most capabilities are the hooks a backend implements (``recall`` means it implements ``memcore_recall``). One is a
class attribute of the backend (``users``: ``separates_users = True``). A few are properties neither can show, so the
suite subclass declares them. A suite test names what it needs with
:func:`requires`; on a backend without it the test is skipped, with the capability named. A capability the backend
has is tested, and a test of it that fails is a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .._hooks import BACKEND_HOOKS
from .._plugins import capabilities

__all__ = [
    "CAPABILITIES",
    "capabilities_of",
    "describe_missing",
    "requirements_of",
    "requires",
    "separates_users",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Every capability a suite test may require, and how a backend comes to have it.
CAPABILITIES: dict[str, str] = {
    **{hook.removeprefix("memcore_"): f"a backend has it when it implements {hook}" for hook in BACKEND_HOOKS},
    "users": (
        "declared by the backend with the class attribute separates_users = True: recall as one user never returns "
        "another user's memory (memcore refuses any user but the default one otherwise)"
    ),
    "scoped_recall": (
        "declared with scoped_recall = True on the suite class: recall in a session searches only that session"
    ),
    "unscoped_recall": (
        "declared with scoped_recall = False on the suite class: recall in a session searches every session"
    ),
    "http_transport": (
        "declared by an http_backend fixture on the suite class that returns a factory taking an httpx transport"
    ),
    "down_service": (
        "declared by a down_backend fixture on the suite class that returns the same backend pointed at a service "
        "that is down (a closed port: memcore.testing.closed_port()); for pytest --memcore-backend, give "
        "--memcore-down-settings"
    ),
}

_ATTRIBUTE = "__memcore_requires__"


def requires(*names: str) -> Callable[[F], F]:
    """Mark a suite test as needing every capability in ``names`` (see :data:`CAPABILITIES`)."""
    unknown = sorted(set(names) - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")

    def mark(test: F) -> F:
        setattr(test, _ATTRIBUTE, frozenset(getattr(test, _ATTRIBUTE, frozenset())) | frozenset(names))
        return test

    return mark


def requirements_of(test: object) -> frozenset[str]:
    """The capabilities a test was marked with by :func:`requires`."""
    found: object = getattr(test, _ATTRIBUTE, frozenset())
    return frozenset(found) if isinstance(found, (frozenset, set)) else frozenset()


def separates_users(backend: Any) -> bool:
    """Whether ``backend`` (an instance or a class) declares that it keeps users apart, as memcore reads it: the
    attribute ``separates_users`` is ``True`` itself (a merely truthy value does not count)."""
    return getattr(backend, "separates_users", False) is True


def capabilities_of(backend: Any, declared: Iterable[str] = ()) -> frozenset[str]:
    """The hook capabilities of ``backend`` (an instance or a class), ``users`` if it separates users, plus
    ``declared`` ones."""
    users = frozenset({"users"}) if separates_users(backend) else frozenset()
    return capabilities(backend) | users | frozenset(declared)


def describe_missing(backend_name: str, missing: Iterable[str]) -> str:
    """The reason a test is skipped: each missing capability named, with how a backend would have it."""
    parts = [f"{name!r} ({CAPABILITIES.get(name, 'unknown capability')})" for name in sorted(missing)]
    return f"backend {backend_name!r} lacks the capability " + "; and ".join(parts)

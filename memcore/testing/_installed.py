"""The conformance suite against the backend named by ``pytest --memcore-backend NAME`` (the plugin collects this
module only then)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .. import _plugins as registry
from .._errors import BackendLoadError
from ._harness import closed_port
from ._plugin import Selection, selection, substitute
from ._suite import BackendSuite

__all__ = ["TestInstalledBackend"]


class TestInstalledBackend(BackendSuite):
    """The suite on the installed backend, built from ``--memcore-settings`` (``{namespace}`` replaced by a value of
    the test's own); memcore closes it after each test. ``--memcore-suite`` sets the suite's class attributes."""

    @pytest.fixture
    def memcore_namespace(self) -> str:
        """The value of ``{namespace}`` in this test's settings: unique to the test (and to the run)."""
        return f"mc{uuid.uuid4().hex[:12]}"

    def _chosen(self, request: pytest.FixtureRequest) -> Selection:
        chosen = selection(request.config)
        for attribute, value in chosen.suite.items():  # before the suite's machinery reads them (it needs `backend`)
            setattr(self, attribute, value)
        return chosen

    @pytest.fixture
    def backend(self, request: pytest.FixtureRequest, memcore_namespace: str) -> Iterator[Any]:
        chosen = self._chosen(request)
        settings = substitute(chosen.settings, namespace=memcore_namespace)
        yield registry.construct(chosen.name, registry.load_class(chosen.name), settings)

    @pytest.fixture
    def down_backend(self, request: pytest.FixtureRequest, memcore_namespace: str) -> Iterator[Any]:
        """With ``--memcore-down-settings``: the backend built from them merged over ``--memcore-settings``, with
        ``{closed_port}`` a loopback port where nothing listens (held for the test)."""
        chosen = self._chosen(request)
        if chosen.down_settings is None:
            yield None
            return
        with closed_port() as port:
            merged = {**chosen.settings, **chosen.down_settings}
            settings = substitute(merged, namespace=memcore_namespace, closed_port=port)
            try:
                down = registry.construct(chosen.name, registry.load_class(chosen.name), settings)
            except BackendLoadError as exc:
                pytest.fail(
                    f"{exc}. Built from --memcore-down-settings, the backend must construct while its service is "
                    "down: connect in the hooks, not in the constructor (memcore skips a backend whose constructor "
                    "raises, and keeps nothing of what is written for it)"
                )
            yield down

    @pytest.fixture
    def http_backend(
        self, request: pytest.FixtureRequest, memcore_namespace: str
    ) -> Callable[[httpx.BaseTransport], Any] | None:
        """For a backend class that takes a ``transport`` keyword (see docs/http.md): the fault tests run."""
        chosen = self._chosen(request)
        cls = registry.load_class(chosen.name)
        try:
            accepts = "transport" in inspect.signature(cls).parameters
        except (TypeError, ValueError):
            accepts = False
        if not accepts:
            return None
        settings = substitute(
            {k: v for k, v in chosen.settings.items() if k != "transport"}, namespace=memcore_namespace
        )

        def make(transport: httpx.BaseTransport) -> Any:
            return registry.construct(chosen.name, cls, {**settings, "transport": transport})

        return make

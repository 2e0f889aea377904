"""The conformance suite against the backend named by ``pytest --memcore-backend NAME`` (the plugin collects this
module only then)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .. import _plugins as registry
from ._plugin import selection
from ._suite import BackendSuite

__all__ = ["TestInstalledBackend"]


class TestInstalledBackend(BackendSuite):
    """The suite on the installed backend, built from ``--memcore-settings``; memcore closes it after each test."""

    @pytest.fixture
    def backend(self, request: pytest.FixtureRequest) -> Iterator[Any]:
        chosen = selection(request.config)
        yield registry.construct(chosen.name, registry.load_class(chosen.name), chosen.settings)

    @pytest.fixture
    def http_backend(self, request: pytest.FixtureRequest) -> Callable[[httpx.BaseTransport], Any] | None:
        """For a backend class that takes a ``transport`` keyword (see docs/http.md): the fault tests run."""
        chosen = selection(request.config)
        cls = registry.load_class(chosen.name)
        try:
            accepts = "transport" in inspect.signature(cls).parameters
        except (TypeError, ValueError):
            accepts = False
        if not accepts:
            return None
        settings = {k: v for k, v in chosen.settings.items() if k != "transport"}

        def make(transport: httpx.BaseTransport) -> Any:
            return registry.construct(chosen.name, cls, {**settings, "transport": transport})

        return make

"""The pytest plugin (entry point ``pytest11``: ``memcore``). Inert unless ``--memcore-backend NAME`` is given: then
it adds memcore's conformance suite, run against the installed backend NAME, to what pytest collects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

__all__ = ["Selection", "pytest_addoption", "pytest_configure", "selection"]

SELECTION = pytest.StashKey["Selection"]()


@attrs.frozen
class Selection:
    """The backend named on the command line and the keyword arguments for its class."""

    name: str
    settings: dict[str, Any]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memcore", "memcore backend conformance")
    group.addoption(
        "--memcore-backend",
        metavar="NAME",
        default=None,
        help="run memcore's conformance suite against the installed backend NAME (entry-point group "
        "memcore.backends; 'sqlite' is built in). With no test paths given, only the suite runs.",
    )
    group.addoption(
        "--memcore-settings",
        metavar="JSON",
        default=None,
        help="keyword arguments for the backend's class, as a JSON object, or @FILE holding one",
    )


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("memcore_backend", None)
    raw = config.getoption("memcore_settings", None)
    if name is None:
        if raw is not None:
            raise pytest.UsageError("--memcore-settings needs --memcore-backend NAME")
        return
    from .. import _plugins as registry  # only now: without the option the plugin does nothing at all

    known = registry.available(registry.BACKENDS_GROUP)
    if name not in known:
        raise pytest.UsageError(
            f"--memcore-backend {name!r}: no such backend is installed (known: {', '.join(sorted(known)) or 'none'})"
        )
    config.stash[SELECTION] = Selection(name, _settings(raw))
    suite = str(Path(__file__).with_name("_installed.py"))
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        config.args = [*config.args, suite]
    else:  # no paths on the command line: run the suite only, not the project's testpaths
        config.args = [suite]


def selection(config: pytest.Config) -> Selection:
    """The backend chosen with ``--memcore-backend`` (fails the test when the option was not given)."""
    chosen = config.stash.get(SELECTION, None)
    if chosen is None:
        pytest.fail("this module runs only with pytest --memcore-backend NAME (see docs/conformance.md)")
    return chosen


def _settings(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise pytest.UsageError(f"--memcore-settings {raw!r}: {exc}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise pytest.UsageError(f"--memcore-settings is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise pytest.UsageError("--memcore-settings must be a JSON object of keyword arguments")
    return value

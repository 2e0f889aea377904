"""The pytest plugin (entry point ``pytest11``: ``memcore``). Inert unless ``--memcore-backend NAME`` is given: then
it adds memcore's conformance suite, run against the installed backend NAME, to what pytest collects."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

__all__ = [
    "CLOSED_PORT",
    "NAMESPACE",
    "SUITE_OPTIONS",
    "Selection",
    "pytest_addoption",
    "pytest_configure",
    "selection",
    "substitute",
]

SELECTION = pytest.StashKey["Selection"]()

#: In ``--memcore-settings`` and ``--memcore-down-settings``: replaced by a value unique to each test (letters and
#: digits, starting with a letter), so that each test gets an empty store (a key prefix, a schema, a workspace).
NAMESPACE = "{namespace}"
#: In ``--memcore-down-settings``: replaced by a loopback TCP port where nothing listens (a string that is only the
#: placeholder becomes the port as an integer).
CLOSED_PORT = "{closed_port}"

#: What ``--memcore-suite`` may set: the suite's class attributes (docs/conformance.md, "Tuning"), and their types.
SUITE_OPTIONS: dict[str, tuple[type, ...]] = {
    "scoped_recall": (bool, type(None)),
    "recall_is_verbatim": (bool,),
    "forget_keeps_recall": (bool,),
    "index_deadline": (int, float),
    "flush_timeout": (int, float),
    "retry_deadline": (int, float),
    "jitter": (int, float),
}
#: Capabilities that are the backend's own to declare, never the command line's.
_BACKENDS_OWN = {
    "users": "the backend class declares it (separates_users = True): memcore reads it from the backend itself",
    "separates_users": "the backend class declares it (separates_users = True): memcore reads it from the backend",
    "http_transport": "it is on when the backend class takes a `transport` keyword",
    "down_service": "give --memcore-down-settings",
}


@attrs.frozen
class Selection:
    """The backend named on the command line: the keyword arguments for its class, those for the same backend
    pointed at a service that is down (``None``: not given), and the suite's class attributes to set."""

    name: str
    settings: dict[str, Any]
    down_settings: dict[str, Any] | None = None
    suite: dict[str, Any] = attrs.field(factory=dict)


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
        help="keyword arguments for the backend's class, as a JSON object, or @FILE holding one; '{namespace}' in a "
        "string is replaced by a value unique to each test (give each test an empty store with it)",
    )
    group.addoption(
        "--memcore-down-settings",
        metavar="JSON",
        default=None,
        help="keyword arguments, merged over --memcore-settings, that point the backend at a service that is down "
        "(turns on the down-service tests); '{closed_port}' is replaced by a loopback port where nothing listens, "
        'e.g. \'{"url": "redis://127.0.0.1:{closed_port}"}\'',
    )
    group.addoption(
        "--memcore-suite",
        metavar="JSON",
        default=None,
        help="the suite's class attributes, as a JSON object or @FILE: scoped_recall (true, false or null), "
        "recall_is_verbatim, forget_keeps_recall, index_deadline, flush_timeout, retry_deadline, jitter",
    )


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("memcore_backend", None)
    raw = {
        option: config.getoption(f"memcore_{option.replace('-', '_')}", None)
        for option in ("settings", "down-settings", "suite")
    }
    if name is None:
        given = [f"--memcore-{option}" for option, value in raw.items() if value is not None]
        if given:
            raise pytest.UsageError(f"{given[0]} needs --memcore-backend NAME")
        return
    from .. import _plugins as registry  # only now: without the option the plugin does nothing at all

    known = registry.available(registry.BACKENDS_GROUP)
    if name not in known:
        raise pytest.UsageError(
            f"--memcore-backend {name!r}: no such backend is installed (known: {', '.join(sorted(known)) or 'none'})"
        )
    settings = _json_object("--memcore-settings", raw["settings"]) or {}
    down = _json_object("--memcore-down-settings", raw["down-settings"])
    chosen = Selection(name, settings, down, _suite(_json_object("--memcore-suite", raw["suite"]) or {}))
    config.stash[SELECTION] = chosen
    if settings and not _mentions(settings, NAMESPACE):
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                "--memcore-settings has no '{namespace}': every test of the suite uses the same store, and what one "
                "test leaves there is seen by the next. Put '{namespace}' where the store is named (a key prefix, "
                "a schema, a workspace, a file name) to give each test an empty one; see docs/conformance.md"
            ),
            stacklevel=2,
        )
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


def substitute(value: Any, *, namespace: str, closed_port: int | None = None) -> Any:
    """``value`` (settings as JSON gave them) with :data:`NAMESPACE` and :data:`CLOSED_PORT` replaced in every
    string, keys included; a string that is only ``{closed_port}`` becomes the port itself."""
    if isinstance(value, str):
        if closed_port is not None:
            if value == CLOSED_PORT:
                return closed_port
            value = value.replace(CLOSED_PORT, str(closed_port))
        return value.replace(NAMESPACE, namespace)
    if isinstance(value, Mapping):
        return {
            substitute(k, namespace=namespace): substitute(v, namespace=namespace, closed_port=closed_port)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute(v, namespace=namespace, closed_port=closed_port) for v in value]
    return value


def _mentions(value: Any, placeholder: str) -> bool:
    if isinstance(value, str):
        return placeholder in value
    if isinstance(value, Mapping):
        return any(_mentions(k, placeholder) or _mentions(v, placeholder) for k, v in value.items())
    if isinstance(value, list):
        return any(_mentions(v, placeholder) for v in value)
    return False


def _suite(options: dict[str, Any]) -> dict[str, Any]:
    for key, value in options.items():
        if key in _BACKENDS_OWN:
            raise pytest.UsageError(f"--memcore-suite: {key!r} cannot be declared here: {_BACKENDS_OWN[key]}")
        if key not in SUITE_OPTIONS:
            raise pytest.UsageError(f"--memcore-suite: unknown {key!r}; known: {', '.join(SUITE_OPTIONS)}")
        types = SUITE_OPTIONS[key]
        wrong = not isinstance(value, types) or (bool not in types and isinstance(value, bool))
        if not wrong and isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            wrong = True
        if wrong:
            kind = "true, false or null" if type(None) in types else "true or false" if bool in types else "seconds"
            raise pytest.UsageError(f"--memcore-suite: {key} must be {kind}, not {value!r}")
    return dict(options)


def _json_object(option: str, raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise pytest.UsageError(f"{option} {raw!r}: {exc}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise pytest.UsageError(f"{option} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise pytest.UsageError(f"{option} must be a JSON object")
    return value

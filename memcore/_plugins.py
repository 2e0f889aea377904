"""Finding, constructing and registering backends and observer plugins (G11)."""

from __future__ import annotations

import difflib
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

import pluggy

from ._errors import BackendLoadError, PluginError, UnknownBackend
from ._hooks import BACKEND_HOOKS, PROJECT, BackendSpec, ObserverSpec
from ._records import Event

log = logging.getLogger("memcore")

BACKENDS_GROUP = "memcore.backends"
PLUGINS_GROUP = "memcore.plugins"
JOURNALS_GROUP = "memcore.journals"  #: journal stores by URL scheme: ``Memory(journal="postgresql://...")``
STRICT_ENV = "MEMCORE_STRICT"
_BUILTIN = {"sqlite": "memcore._sqlite:SQLiteBackend"}


def strict_mode() -> bool:
    """True when ``MEMCORE_STRICT`` asks for load errors to raise instead of being skipped."""
    return os.environ.get(STRICT_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(BackendSpec)
    pm.add_hookspecs(ObserverSpec)
    return pm


def available(group: str = BACKENDS_GROUP) -> dict[str, str]:
    """Installed entry points of ``group`` as ``{name: "module:attr"}`` (the built-in ``sqlite`` included)."""
    found = dict(_BUILTIN) if group == BACKENDS_GROUP else {}
    for ep in metadata.entry_points(group=group):
        found[ep.name] = ep.value
    return found


def load_class(name: str, group: str = BACKENDS_GROUP) -> Any:
    """Import the class an entry point names; :class:`UnknownBackend` if none, :class:`BackendLoadError` on failure."""
    known = available(group)
    if name not in known:
        hint = difflib.get_close_matches(name, known, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        what = {BACKENDS_GROUP: "backend", JOURNALS_GROUP: "journal store"}.get(group, "plugin")
        raise UnknownBackend(
            f"no {what} named {name!r} is installed (known: {', '.join(sorted(known)) or 'none'}){extra}"
        )
    try:
        return metadata.EntryPoint(name=name, value=known[name], group=group).load()
    except Exception as exc:
        raise BackendLoadError(f"{group} entry point {name!r} ({known[name]}) failed to import: {exc!r}") from exc


def journal_store(url: str) -> Any:
    """The journal store a URL names: the class the ``memcore.journals`` entry point of its scheme names (for example
    ``postgresql`` from memcore-postgres), constructed with the URL."""
    scheme = url.split("://", 1)[0].lower()
    cls = load_class(scheme, JOURNALS_GROUP)
    try:
        return cls(url)
    except Exception as exc:
        raise BackendLoadError(f"journal store {scheme!r} failed to construct: {exc!r}") from exc


def construct(name: str, cls: Any, settings: Mapping[str, Any] | None) -> Any:
    try:
        return cls(**dict(settings or {}))
    except Exception as exc:
        raise BackendLoadError(f"backend {name!r} failed to construct: {exc!r}") from exc


def capabilities(plugin: Any) -> frozenset[str]:
    """The backend hooks ``plugin`` (an instance or a class) implements, without the ``memcore_`` prefix."""
    pm = new_manager()
    names = set()
    for attr in dir(plugin):
        if attr in BACKEND_HOOKS and pm.parse_hookimpl_opts(plugin, attr) is not None:
            names.add(attr.removeprefix("memcore_"))
    return frozenset(names)


def plugin_name(plugin: Any) -> str:
    name = getattr(plugin, "name", None)
    if isinstance(name, str) and name:
        return name
    return type(plugin).__name__.lower()


def register(pm: pluggy.PluginManager, plugin: Any, *, backend: bool) -> str:
    """Register ``plugin`` and check it against the specs; :class:`PluginError` names the plugin on any mismatch."""
    name = plugin_name(plugin)
    label = f"{'backend' if backend else 'plugin'} {name!r} ({type(plugin).__module__}.{type(plugin).__qualname__})"
    if pm.has_plugin(name):
        raise PluginError(f"{label}: another plugin is already registered under that name")
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise PluginError(f"{label} was refused: {reason}") from exc
    problems = []
    for caller in pm.get_hookcallers(plugin) or ():
        if not caller.has_spec():
            hint = difflib.get_close_matches(caller.name, [*BACKEND_HOOKS, "memcore_event"], n=1)
            problems.append(f"{caller.name} is not a memcore hook" + (f" (did you mean {hint[0]}?)" if hint else ""))
        elif not backend and caller.name in BACKEND_HOOKS:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    problems.append(f"{caller.name}: an observer may only wrap backend hooks (wrapper=True)")
    if backend and "write" not in capabilities(plugin):
        problems.append("a backend must implement memcore_write")
    if problems:
        pm.unregister(plugin)
        raise PluginError(f"{label} was refused: " + "; ".join(problems))
    return name


def _positive_int(plugin: Any, name: str, attribute: str) -> int | None:
    """A backend's optional positive-int attribute (None when absent); anything else is refused."""
    value = getattr(plugin, attribute, None)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PluginError(f"backend {name!r}: {attribute} must be a positive integer or None, not {value!r}")
    return value


def max_write_messages(plugin: Any, name: str) -> int | None:
    """A backend's ``max_write_messages`` (a positive int, or None: any length); anything else is refused."""
    return _positive_int(plugin, name, "max_write_messages")


def max_concurrency(plugin: Any, name: str) -> int | None:
    """A backend's ``max_concurrency`` (a positive int: at most that many of its calls at once, lane workers and
    recall workers together; None: any number); anything else is refused."""
    return _positive_int(plugin, name, "max_concurrency")


class Backend:
    """A registered backend: its name, capabilities, and hook callers that reach only it (plus observer wrappers)."""

    __slots__ = (
        "_callers",
        "_direct",
        "_gate",
        "capabilities",
        "commits",
        "concurrency",
        "index",
        "key",
        "max_write",
        "name",
        "plugin",
        "users",
    )

    def __init__(self, pm: pluggy.PluginManager, plugin: Any, name: str, index: int, others: Iterable[Any]):
        self.plugin = plugin
        self.name = name
        self.index = index
        # What the journal files this backend's operations under: its ``journal_key`` if it has one (the SQLite
        # backend adds its database path, so two stores never replay into each other), else its name.
        key = getattr(plugin, "journal_key", None)
        self.key = key if isinstance(key, str) and key else name
        self.capabilities = capabilities(plugin)
        self.commits = "commit" in self.capabilities
        # Whether it keeps users apart (``separates_users = True``): only then may a user other than the default.
        self.users = getattr(plugin, "separates_users", False) is True
        # The most messages one memcore_write takes (``max_write_messages``): the core splits longer turns.
        self.max_write = max_write_messages(plugin, name)
        # At most ``max_concurrency`` of its calls at once (a library that is not thread-safe declares 1): the lane
        # pool never starts more, and this gate holds a recall back while a write runs, and the other way round.
        self.concurrency = max_concurrency(plugin, name)
        self._gate = None if self.concurrency is None else threading.BoundedSemaphore(self.concurrency)
        others = [p for p in others if p is not plugin]
        self._callers = {
            hook: pm.subset_hook_caller(hook, remove_plugins=others)
            for hook in BACKEND_HOOKS
            if hook.removeprefix("memcore_") in self.capabilities
        }
        # A hook that only this backend implements (no observer wraps it) is called straight, as pluggy calls it:
        # its function with the arguments it names, in order, and those it gives a default to by keyword if the call
        # has them. pluggy's dispatch costs about 4 us a call, a twentieth of a replayed operation. The plugins are
        # the Memory's from its construction (as observers are).
        self._direct: dict[str, tuple[Any, tuple[str, ...], tuple[str, ...]]] = {}
        for hook, caller in self._callers.items():
            impls = caller.get_hookimpls()
            if len(impls) == 1 and not (impls[0].wrapper or impls[0].hookwrapper):
                impl = impls[0]
                self._direct[hook] = (impl.function, tuple(impl.argnames), tuple(impl.kwargnames))

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call one of this backend's hooks; returns the backend's result (or None). With ``max_concurrency``, it
        waits for its turn first (``memcore_close`` does not: close runs only once the backend is idle)."""
        gate = self._gate
        if gate is None or hook == "memcore_close":
            return self._call(hook, kwargs)
        with gate:
            return self._call(hook, kwargs)

    def _call(self, hook: str, kwargs: dict[str, Any]) -> Any:
        direct = self._direct.get(hook)
        if direct is None:
            results = self._callers[hook](**kwargs)
            return results[0] if results else None
        function, names, optional = direct
        try:
            args = [kwargs[name] for name in names]
        except KeyError as exc:  # what pluggy raises for an argument the call lacks
            raise pluggy.HookCallError(f"hook call must provide argument {exc.args[0]!r}") from None
        if optional:
            return function(*args, **{name: kwargs[name] for name in optional if name in kwargs})
        return function(*args)

    def __repr__(self) -> str:
        return f"<Backend {self.name!r} {sorted(self.capabilities)}>"


class Observers:
    """Delivers events to each observer on its own, so that one that raises does not disturb the others."""

    def __init__(self, pm: pluggy.PluginManager):
        self._impls = list(pm.hook.memcore_event.get_hookimpls())

    def __bool__(self) -> bool:
        return bool(self._impls)

    def emit(self, event: Event) -> None:
        for impl in self._impls:
            try:
                impl.function(*[event for _ in impl.argnames])
            except Exception:
                log.exception("memcore observer %s raised on %s", impl.plugin_name, event.kind)

"""G11: safe plugins. Broken entry points are skipped with a reason (strict mode raises); bad hook implementations are
refused at registration with a message naming the plugin."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pluggy
import pytest
from recording import RecordingBackend

import memcore
from memcore import Message, Session, _plugins


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """A fake set of installed backends, with modules written to a temporary directory."""
    pkg = tmp_path / "fakebackends"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(
        textwrap.dedent(
            """
            import memcore

            class Good:
                name = "good"

                def __init__(self, greeting="hi"):
                    self.greeting = greeting
                    self.written = []

                @memcore.hookimpl
                def memcore_write(self, session, messages):
                    self.written.append((session.id, [m.content for m in messages]))

            class Angry:
                def __init__(self, **settings):
                    raise ValueError("missing api_key")
            """
        )
    )
    (pkg / "broken.py").write_text("import this_module_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = {
        "sqlite": "memcore._sqlite:SQLiteBackend",
        "good": "fakebackends.good:Good",
        "angry": "fakebackends.good:Angry",
        "broken": "fakebackends.broken:Thing",
    }
    monkeypatch.setattr(_plugins, "available", lambda group=_plugins.BACKENDS_GROUP: dict(found))
    yield found
    for name in [m for m in sys.modules if m.startswith("fakebackends")]:
        del sys.modules[name]


def test_g11_backend_loaded_by_entry_point_name_with_settings(entry_points, make_memory):
    memory = make_memory("good", settings={"good": {"greeting": "hello"}})
    assert memory.backends == ("good",)
    assert memory.capabilities == {"good": frozenset({"write"})}
    plugin = memory.plugin_manager.get_plugin("good")
    assert plugin.greeting == "hello"
    memory.lifecycle("s1").sync_turn("u", "a")
    memory.flush(timeout=5)
    assert plugin.written == [("s1", ["u", "a"])]


def test_g11_broken_backends_are_skipped_with_their_reason(entry_points, make_memory):
    memory = make_memory("broken", "good", "angry")
    assert memory.backends == ("good",)
    assert "this_module_does_not_exist" in memory.skipped["broken"]
    assert "missing api_key" in memory.skipped["angry"]
    report = memory.flush(timeout=1)
    assert set(report.skipped_backends) == {"broken", "angry"}


def test_g11_strict_mode_raises(entry_points, make_memory, monkeypatch):
    monkeypatch.setenv("MEMCORE_STRICT", "1")
    with pytest.raises(memcore.BackendLoadError, match="this_module_does_not_exist"):
        make_memory("good", "broken")
    with pytest.raises(memcore.BackendLoadError, match="missing api_key"):
        make_memory("angry", strict=True)


def test_g11_no_backend_left_is_an_error(entry_points, make_memory):
    with pytest.raises(memcore.BackendLoadError, match="no backend could be loaded"):
        make_memory("broken")


def test_g11_unknown_backend_name_is_a_clear_error(entry_points, make_memory):
    with pytest.raises(memcore.UnknownBackend, match=r"'sqlit'.*did you mean 'sqlite'"):
        make_memory("sqlit")


def test_g11_settings_for_an_unselected_backend_are_refused(entry_points, make_memory):
    with pytest.raises(memcore.UnknownBackend, match="not selected: other"):
        make_memory("good", settings={"other": {}})


def test_g11_wrong_hook_arguments_are_refused_naming_the_plugin(make_memory):
    class Sloppy:
        name = "sloppy"

        @memcore.hookimpl
        def memcore_write(self, session: Session, msgs: Sequence[Message]) -> None: ...

    with pytest.raises(memcore.PluginError, match=r"backend 'sloppy'.*msgs"):
        make_memory(Sloppy())


def test_g11_unknown_hook_is_refused_with_a_suggestion(make_memory):
    class Typo:
        name = "typo"

        @memcore.hookimpl
        def memcore_write(self, session: Session, messages: Sequence[Message]) -> None: ...

        @memcore.hookimpl
        def memcore_comit(self, session: Session) -> None: ...

    with pytest.raises(memcore.PluginError, match=r"backend 'typo'.*memcore_comit.*did you mean memcore_commit"):
        make_memory(Typo())


def test_g11_backend_without_write_is_refused(make_memory):
    class ReadOnly:
        name = "readonly"

        @memcore.hookimpl
        def memcore_commit(self, session: Session) -> None: ...

    with pytest.raises(memcore.PluginError, match="must implement memcore_write"):
        make_memory(ReadOnly())


def test_g11_two_backends_with_one_name_are_refused(make_memory):
    with pytest.raises(memcore.PluginError, match="already registered"):
        make_memory(RecordingBackend("x"), RecordingBackend("x"))


def test_g11_observer_may_wrap_but_not_implement_backend_hooks(make_memory, backend):
    calls: list[str] = []

    class Wrapper:
        name = "tracer"

        @memcore.hookimpl(wrapper=True)
        def memcore_write(self, session: Session, messages: Sequence[Message]):  # type: ignore[no-untyped-def]
            calls.append(f"before {session.id}")
            result = yield
            calls.append(f"after {session.id}")
            return result

    class Impostor:
        name = "impostor"

        @memcore.hookimpl
        def memcore_write(self, session: Session, messages: Sequence[Message]) -> None: ...

    memory = make_memory(backend, plugins=[Wrapper()])
    memory.lifecycle("s1").sync_turn("u", "a")
    memory.flush(timeout=5)
    assert calls == ["before s1", "after s1"] and backend.texts("s1") == ["u", "a"]
    with pytest.raises(memcore.PluginError, match=r"plugin 'impostor'.*may only wrap"):
        make_memory(RecordingBackend("other"), plugins=[Impostor()])


def test_a_hook_only_its_backend_implements_is_called_as_pluggy_would_call_it():
    """No observer wraps it: the backend's function is called straight (pluggy's dispatch cost ~4 us a call), with
    the arguments it names in the order it names them, one with a default only if the call has it, its result returned;
    a call lacking an argument it names fails as pluggy fails. A wrapped hook still goes through pluggy."""
    seen: list[tuple[object, ...]] = []

    class Alone:
        name = "alone"

        @memcore.hookimpl
        def memcore_write(self, messages: Sequence[Message], session: Session, extra: str = "default") -> str:
            seen.append((messages, session, extra))
            return "done"

        @memcore.hookimpl
        def memcore_commit(self, session: Session) -> None:
            seen.append((session,))

        @memcore.hookimpl
        def memcore_recall(self, query: str, session: Session | None, limit: int, user_id: str | None = "no") -> list:
            seen.append((query, session, limit, user_id))
            return []

    class Wrapper:
        name = "tracer"

        @memcore.hookimpl(wrapper=True)
        def memcore_commit(self, session: Session):  # type: ignore[no-untyped-def]
            seen.append(("wrapped", session.id))
            return (yield)

    pm = _plugins.new_manager()
    alone, wrapper = Alone(), Wrapper()
    _plugins.register(pm, alone, backend=True)
    _plugins.register(pm, wrapper, backend=False)
    backend = _plugins.Backend(pm, alone, "alone", 0, [alone])  # others: the other backends
    assert set(backend._direct) == {"memcore_write", "memcore_recall"}  # the commit hook has a wrapper
    session, messages = Session(id="s"), (Message(role="user", content="u"),)
    assert backend.call("memcore_write", session=session, messages=messages, key="k", attempt=1) == "done"
    assert seen == [(messages, session, "default")]
    with pytest.raises(pluggy.HookCallError, match="messages"):
        backend.call("memcore_write", session=session, key="k", attempt=1)
    assert backend.call("memcore_commit", session=session, key="k", attempt=1) is None
    assert seen[1:] == [("wrapped", "s"), (session,)]
    assert backend.call("memcore_recall", query="q", session=None, limit=3, user_id="alice") == []
    assert seen[-1] == ("q", None, 3, "alice")  # a defaulted argument the call has is passed, by keyword


def test_g11_capabilities_are_the_hooks_implemented(make_memory):
    class Minimal:
        name = "minimal"

        @memcore.hookimpl
        def memcore_write(self, session: Session, messages: Sequence[Message]) -> None: ...

    memory = make_memory(Minimal(), RecordingBackend())
    assert memory.capabilities["minimal"] == frozenset({"write"})
    assert memory.capabilities["rec"] == frozenset({"open_session", "write", "remember", "commit", "recall", "close"})
    lc = memory.lifecycle("s1")
    lc.remember("only where remember is implemented")
    lc.sync_turn("u", "a")
    lc.end()
    report = memory.flush(timeout=5)
    rec = memory.plugin_manager.get_plugin("rec")
    assert report.failed == 0 and rec.commits("s1") == 1 and len(rec.calls("remember")) == 1


def test_g11_a_backend_named_twice_is_refused(make_memory):
    with pytest.raises(memcore.PluginError, match="named more than once: sqlite"):
        make_memory("sqlite", "sqlite")
    with pytest.raises(TypeError, match="not a single string"):
        memcore.Memory(backends="sqlite")  # type: ignore[arg-type]

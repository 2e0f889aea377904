"""hermes-agent finds the provider: the plugin shim (0.19.0) and the entry point (newer releases)."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from plugins.memory import discover_memory_providers, load_memory_provider

from memcore_hermes import MemcoreMemoryProvider
from memcore_hermes._cli import main
from memcore_hermes._install import MARKER


def test_install_makes_hermes_load_the_adapter(homes: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert load_memory_provider("memcore") is None
    assert main(["install"]) == 0
    assert "installed" in capsys.readouterr().out
    shim = homes["hermes"] / "plugins" / "memcore" / "__init__.py"
    assert MARKER in shim.read_text()

    provider = load_memory_provider("memcore")
    assert isinstance(provider, MemcoreMemoryProvider)
    assert provider.is_available()
    assert ("memcore", provider_description(), True) in discover_memory_providers()

    before = shim.stat().st_mtime_ns
    assert main(["install"]) == 0  # idempotent: nothing rewritten
    assert "already installed" in capsys.readouterr().out
    assert shim.stat().st_mtime_ns == before

    assert main(["install", "--uninstall"]) == 0
    assert not shim.parent.exists()
    assert load_memory_provider("memcore") is None
    assert main(["install", "--uninstall"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def provider_description() -> str:
    from memcore_hermes._install import PLUGIN_YAML

    return str(yaml.safe_load(PLUGIN_YAML)["description"])


def test_install_leaves_a_foreign_plugin_alone(homes: dict[str, Path], tmp_path: Path) -> None:
    foreign = homes["hermes"] / "plugins" / "memcore"
    foreign.mkdir(parents=True)
    (foreign / "__init__.py").write_text("# someone else's MemoryProvider\n")
    assert main(["install"]) == 1
    assert main(["install", "--uninstall"]) == 1
    assert (foreign / "__init__.py").read_text() == "# someone else's MemoryProvider\n"
    other = tmp_path / "elsewhere"
    assert main(["install", "--hermes-home", str(other)]) == 0
    assert (other / "plugins" / "memcore" / "__init__.py").is_file()


def test_entry_point_is_declared() -> None:
    (ep,) = [ep for ep in entry_points(group="hermes_agent.memory_providers") if ep.name == "memcore"]
    assert ep.load() is MemcoreMemoryProvider


def test_settings_come_from_hermes_config(homes: dict[str, Path]) -> None:
    db = homes["hermes"] / "memcore" / "store.sqlite3"
    config = {
        "memory": {"provider": "memcore"},
        "plugins": {"memcore": {"backend": "sqlite", "settings": {"sqlite": {"path": str(db)}}, "recall_limit": 2}},
    }
    (homes["hermes"] / "config.yaml").write_text(yaml.safe_dump(config))
    provider = MemcoreMemoryProvider()
    provider.initialize("s1", hermes_home=str(homes["hermes"]), platform="cli", agent_context="primary")
    assert provider.memory is not None and provider.memory.backends == ("sqlite",)
    assert provider._config["recall_limit"] == 2
    provider.sync_turn("hello", "world", session_id="s1")
    provider.shutdown()
    assert provider.report is not None and provider.report.ok
    assert db.is_file()


def test_non_primary_contexts_do_not_write(homes: dict[str, Path]) -> None:
    provider = MemcoreMemoryProvider()
    provider.initialize("cron-1", hermes_home=str(homes["hermes"]), platform="cron", agent_context="cron")
    provider.sync_turn("system prompt of a cron job", "done", session_id="cron-1")
    provider.on_memory_write("add", "memory", "should not be kept")
    provider.shutdown()
    assert provider.report is not None and provider.report.delivered == 0


def test_save_config_round_trips(homes: dict[str, Path]) -> None:
    (homes["hermes"] / "config.yaml").write_text(yaml.safe_dump({"memory": {"provider": "memcore"}}))
    provider = MemcoreMemoryProvider()
    provider.save_config({"backend": "sqlite", "path": "/tmp/x.sqlite3", "recall_limit": 3}, str(homes["hermes"]))
    data = yaml.safe_load((homes["hermes"] / "config.yaml").read_text())
    assert data["memory"] == {"provider": "memcore"}
    assert data["plugins"]["memcore"] == {
        "backends": ["sqlite"],
        "settings": {"sqlite": {"path": "/tmp/x.sqlite3"}},
        "recall_limit": 3,
    }
    keys = {field["key"] for field in provider.get_config_schema()}
    assert {"backend", "path", "recall_limit"} <= keys

"""``memcore-hermes``: install or remove the hermes-agent plugin shim."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from . import _install
from ._provider import PROVIDER_NAME


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memcore-hermes", description="memcore as a hermes-agent memory provider")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="write the plugin shim into the hermes home (idempotent)")
    p.add_argument("--hermes-home", help="hermes home (default: $HERMES_HOME, else hermes' own default)")
    p.add_argument("--name", default=PROVIDER_NAME, help="plugin directory name (default: %(default)s)")
    p.add_argument("--uninstall", action="store_true", help="remove the shim instead")
    p.add_argument("--force", action="store_true", help="replace a plugin of that name that is not ours")
    args = parser.parse_args(argv)

    home = _install.hermes_home(args.hermes_home)
    try:
        if args.uninstall:
            target, changed = _install.uninstall(home, args.name)
            print(f"removed {target}" if changed else f"nothing to remove at {target}")
            return 0
        target, changed = _install.install(home, args.name, force=args.force)
    except _install.InstallError as exc:
        print(f"memcore-hermes: {exc}", file=sys.stderr)
        return 1
    print(f"installed {target}" if changed else f"already installed at {target}")
    if importlib.util.find_spec("agent.memory_provider") is None:
        print(
            f"warning: hermes-agent is not importable from {sys.executable}; install memcore-hermes into the "
            "environment that runs hermes-agent",
            file=sys.stderr,
        )
    print(f"now set `memory: {{provider: {args.name}}}` in {home / 'config.yaml'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

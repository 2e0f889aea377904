"""``python -m memcore``: the memcore command line."""

from ._cli import main

raise SystemExit(main())

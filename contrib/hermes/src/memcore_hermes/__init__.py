"""memcore-hermes: any memcore backend as a hermes-agent memory provider.

hermes-agent 0.19.0 finds it through the shim written by ``memcore-hermes install``; newer releases through the
``hermes_agent.memory_providers`` entry point. Either way ``memory.provider: memcore`` selects it.
"""

from __future__ import annotations

from typing import Any

from ._provider import MemcoreMemoryProvider, current_turn, format_recollections, switch_reason

__version__ = "0.1.0"

__all__ = ["MemcoreMemoryProvider", "__version__", "current_turn", "format_recollections", "register", "switch_reason"]


def register(ctx: Any) -> None:
    """hermes-agent plugin entry: ``register(ctx)`` calling ``ctx.register_memory_provider``."""
    ctx.register_memory_provider(MemcoreMemoryProvider())

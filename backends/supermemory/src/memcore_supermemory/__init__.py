"""memcore backend for Supermemory (supermemory.ai's hosted memory API, v5), over plain httpx."""

from ._backend import SupermemoryBackend, namespace_for

__all__ = ["SupermemoryBackend", "namespace_for"]

"""One memcore Memory per process and configuration, shared by every hermes conversation that uses it.

hermes-agent builds a MemoryManager and a provider per conversation (a gateway keeps one per chat). Each used to open
its own :class:`memcore.Memory`, with its own worker pool, recall pool and journal writer, so threads grew with the
number of conversations. Here a provider takes a *lease* on the Memory of its configuration at ``initialize`` and
gives it back at ``shutdown``: the Memory is opened by the first lease, closed by the last one to be given back (its
report goes to that provider), and closed at interpreter exit if leases are still held then. A conversation's
``shutdown`` never closes a Memory another conversation holds.

Opening and the last close happen under one process lock (as do taking and giving back leases), so a configuration
never has two Memories at once in this process: a conversation starting while the last one closes waits for that
close (bounded by its ``shutdown_timeout``) and then opens a fresh Memory.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Hashable

import memcore

log = logging.getLogger("memcore_hermes")

#: The budget a Memory still leased at interpreter exit gets to commit, drain and close, unless its lease said.
EXIT_TIMEOUT = 5.0


class _Entry:
    __slots__ = ("key", "leases", "memory", "timeout")

    def __init__(self, key: Hashable, memory: memcore.Memory, timeout: float):
        self.key = key
        self.memory = memory
        self.leases = 0
        self.timeout = timeout  # for the close at exit: the opening lease's shutdown budget


class Lease:
    """One provider's hold on a shared Memory. ``release`` is idempotent."""

    __slots__ = ("_entry", "_registry", "_released")

    def __init__(self, registry: Registry, entry: _Entry):
        self._registry = registry
        self._entry = entry
        self._released = False

    @property
    def memory(self) -> memcore.Memory:
        return self._entry.memory

    @property
    def released(self) -> bool:
        return self._released

    def release(self, timeout: float) -> memcore.Report | None:
        """Give the Memory back; the close report if this was its last lease (closed within ``timeout``), else None
        (other conversations still use it)."""
        return self._registry._release(self, timeout)


class Registry:
    """The process' shared Memories, by configuration key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Hashable, _Entry] = {}

    def acquire(self, key: Hashable, open_memory: Callable[[], memcore.Memory], *, timeout: float) -> Lease:
        """A lease on the Memory for ``key``, opened with ``open_memory()`` if none is open (its errors propagate
        and nothing is kept)."""
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                entry = _Entry(key, open_memory(), timeout)
                self._open[key] = entry
                # After the Memory's own exit hook (memcore's 5 s close): atexit runs the last registered first, so
                # this one closes it, with its lease's budget. Registered again for each Memory opened.
                atexit.unregister(self.close_all)
                atexit.register(self.close_all)
            entry.leases += 1
            return Lease(self, entry)

    def _release(self, lease: Lease, timeout: float) -> memcore.Report | None:
        with self._lock:
            if lease._released:
                return None
            lease._released = True
            entry = lease._entry
            if self._open.get(entry.key) is not entry:
                return None  # closed already (at exit)
            entry.leases -= 1
            if entry.leases > 0:
                return None
            del self._open[entry.key]
            # Closed under the lock: a conversation of this configuration starting now waits, then opens a new one.
            return entry.memory.close(timeout=timeout)

    def leases(self, memory: memcore.Memory) -> int:
        """How many providers hold ``memory`` (0 if it is not shared here, or closed)."""
        with self._lock:
            return sum(e.leases for e in self._open.values() if e.memory is memory)

    def memories(self) -> list[memcore.Memory]:
        """The shared Memories open now."""
        with self._lock:
            return [e.memory for e in self._open.values()]

    def close_all(self) -> None:
        """Close every shared Memory still leased (at interpreter exit): commits every dirty session, drains, closes
        the backends, each within its budget. Leases still held are released."""
        with self._lock:
            entries = list(self._open.values())
            self._open.clear()
            for entry in entries:
                entry.leases = 0
                try:
                    report = entry.memory.close(timeout=entry.timeout)
                except Exception as exc:
                    log.warning("memcore: closing the shared memory at exit failed: %r", exc)
                    continue
                if not report.ok:
                    log.warning(
                        "memcore: exit with %d pending (journaled: %d) and %d failed operations",
                        report.pending,
                        report.journaled,
                        report.failed,
                    )

    def _after_fork(self) -> None:
        # A forked child has none of the parent's threads: its Memories cannot run there, and a fork while another
        # thread held the lock must not deadlock the child. The child's first conversation opens its own Memory.
        self._lock = threading.Lock()
        self._open = {}


#: The registry every provider in this process uses.
registry = Registry()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=registry._after_fork)

"""The bound on pending work (G8): per backend and in total. Pure bookkeeping, under the scheduler's lock.

Each backend may hold at most ``per_backend`` operations in memory (queued, waiting out a backoff or in flight) and
all backends together at most ``total``. Past either bound, with the journal on, a backend's new operations *spill*:
they are kept only in the journal and loaded back, in order, as its lanes drain. From a backend's first spilled
operation on, every new one of that backend spills too until all are loaded back, so order holds in each of its lanes.
Without a journal an operation past the bound is refused (:class:`~memcore.PendingLimitExceeded`). A hung backend
fills only its own bound, so a healthy one beside it keeps delivering from memory.
"""

from __future__ import annotations


class PendingBound:
    def __init__(self, backends: int, *, total: int, per_backend: int | None = None):
        if total < 1:
            raise ValueError("max_pending must be at least 1")
        cap = max(total // backends, 1) if per_backend is None else per_backend
        if cap < 1:
            raise ValueError("max_pending_per_backend must be at least 1")
        self.total_cap = total
        self.cap = min(cap, total)
        self.total = 0  # in memory, all backends
        self.pending = [0] * backends  # in memory, per backend
        self.spilled = [0] * backends  # only in the journal, waiting to be loaded back
        self.spill_high = [0] * backends  # sequence number of the last spilled operation
        self.loaded_up_to = [0] * backends  # ... and of the last one loaded back
        self.replayed_up_to = [0] * backends  # spilled operations up to this sequence number were taken over at start
        self.reloading = [False] * backends

    def must_spill(self, i: int, n: int = 1) -> bool:
        """Whether ``n`` more operations of backend ``i`` go to the journal rather than into memory."""
        return bool(self.spilled[i]) or self.pending[i] + n > self.cap or self.total + n > self.total_cap

    def held(self, i: int) -> None:
        self.pending[i] += 1
        self.total += 1

    def released(self, i: int) -> None:
        self.pending[i] -= 1
        self.total -= 1

    def spill(self, i: int, seq: int) -> None:
        self.spilled[i] += 1
        self.spill_high[i] = seq

    def backlog(self, i: int, count: int, high: int) -> None:
        """``count`` operations of backend ``i`` taken over from the journal (up to sequence number ``high``) wait
        there to be loaded back like spilled ones: a start holds at most the bound of them in memory."""
        self.spilled[i] += count
        self.spill_high[i] = max(self.spill_high[i], high)
        self.replayed_up_to[i] = max(self.replayed_up_to[i], high)

    def reload_due(self, i: int) -> bool:
        """Whether backend ``i`` has spilled operations and room to load a good part of them back (and no reload
        under way): room for a quarter of its bound, or its lanes are empty and there is any room at all. Without
        that margin a lane that drains one operation at a time reloads one at a time (a query per operation)."""
        if not self.spilled[i] or self.reloading[i] or self.total >= self.total_cap:
            return False
        want = min(self.cap // 2 - self.pending[i], self.total_cap - self.total)
        return want >= max(self.cap // 4, 1) or self.pending[i] == 0

    def room(self, i: int) -> int:
        """How many spilled operations of backend ``i`` a reload may load: up to half its bound, within the total."""
        return max(min(self.cap // 2 - self.pending[i], self.total_cap - self.total), 1)

    def loaded(self, i: int, seq: int) -> None:
        """A spilled operation was loaded back (the caller then counts it as :meth:`held`)."""
        self.spilled[i] -= 1
        self.loaded_up_to[i] = seq

    @property
    def spilled_total(self) -> int:
        return sum(self.spilled)

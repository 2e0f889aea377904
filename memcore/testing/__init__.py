"""memcore's shared conformance suite, for every backend: ours and third parties'.

Subclass :class:`BackendSuite` with a ``backend`` fixture that yields an empty backend, or run
``pytest --memcore-backend NAME`` against an installed one. See ``docs/conformance.md``.
"""

import pytest

# Before the suite's modules are imported, so that their asserts explain themselves (pytest rewrites them).
pytest.register_assert_rewrite("memcore.testing._harness", "memcore.testing._poll", "memcore.testing._suite")

from ._guard import OverrideError  # noqa: E402
from ._harness import AWKWARD_SESSION_IDS, Harness, Tap, TapEntry, closed_port, decoys  # noqa: E402
from ._observers import CallGate, CommitView, EventLog, Jitter, ManualClock, Probe, RecallGate  # noqa: E402
from ._poll import poll  # noqa: E402
from ._requirements import CAPABILITIES, capabilities_of, requires, separates_users  # noqa: E402
from ._suite import LOOK_ALIKE_IDS, REFUSED_IDS, UNICODE_SAMPLES, BackendSuite  # noqa: E402

__all__ = [
    "AWKWARD_SESSION_IDS",
    "CAPABILITIES",
    "LOOK_ALIKE_IDS",
    "REFUSED_IDS",
    "UNICODE_SAMPLES",
    "BackendSuite",
    "CallGate",
    "CommitView",
    "EventLog",
    "Harness",
    "Jitter",
    "ManualClock",
    "OverrideError",
    "Probe",
    "RecallGate",
    "Tap",
    "TapEntry",
    "capabilities_of",
    "closed_port",
    "decoys",
    "poll",
    "requires",
    "separates_users",
]

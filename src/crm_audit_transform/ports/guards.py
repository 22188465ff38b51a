"""What a run checks before it writes, and the clock it asks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final, Protocol

CLOCK_METHODS: Final = ("now", "monotonic")
"""The methods of ``Clock``, checked when a use case's ports are built."""


class IndexState(Protocol):
    """Whether migration 035's indexes are in place: exactly-once rests on its unique index."""

    def missing_indexes(self) -> Sequence[str]:
        """``collection.index`` of every index that is absent or defined otherwise than 035 says."""
        ...


class FeatureFlags(Protocol):
    """Whether the migration is switched on for an account."""

    def is_enabled(self, company_sso_id: str) -> bool: ...


class Clock(Protocol):
    """Time comes in as a value: use cases ask this port, the core's rules never read a clock.

    Two readings: ``now`` for the times a job stores (``updated_at``, ``finished_at``, an in-memory
    store's lease expiry), ``monotonic`` for the durations a use case measures — how long since it
    last renewed its lease, to renew it again once half has passed. A wall clock stepped back (NTP,
    an operator, a VM restored) made such a duration shorter by the step, and a batch could go out
    on a lease that had less than half left.

    The ports a use case is given (``RunPorts``, ``RollbackPorts``, ``VerifyPorts``) check a clock
    for both methods when they are built: one without ``monotonic()`` (written before it was part of
    this port) is a ``TypeError`` naming the method before anything is read or written
    (``CLOCK_METHODS``), not an ``AttributeError`` after the run's lease was taken.
    """

    def now(self) -> dt.datetime:
        """The wall clock: an aware UTC ``datetime``."""
        ...

    def monotonic(self) -> float:
        """Seconds since an arbitrary point, never less than an earlier reading whatever the wall
        clock does (``time.monotonic``): only differences of two readings mean anything."""
        ...

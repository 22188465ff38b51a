"""Tunables of the run loop, resolved once by the caller."""

from __future__ import annotations

import datetime as dt
from typing import Final

from attrs import frozen

from ..halting import DEFAULT_DEGRADED_THRESHOLD, DEFAULT_HALT_SAMPLE, DEFAULT_HALT_THRESHOLD, HaltRule

DEFAULT_PAGE_SIZE: Final = 500


@frozen
class RunSettings:
    """Page size, batch size (≤ 20), the halt rule's thresholds and sample, and the lease's lifetime.

    The lease is renewed on every batch, so its TTL only has to outlast the slowest batch; a
    runner that dies leaves a lease another runner may take once it has expired. The halt rule
    (``halting.HaltRule``) is checked every ``halt_sample`` rows and at the end; with
    ``enforce_halt=False`` (the dry run) a run only reports where it would halt.
    """

    page_size: int = DEFAULT_PAGE_SIZE
    batch_size: int = 20
    halt_threshold: float = DEFAULT_HALT_THRESHOLD
    lease_seconds: float = 120.0
    degraded_threshold: float = DEFAULT_DEGRADED_THRESHOLD
    halt_sample: int = DEFAULT_HALT_SAMPLE
    enforce_halt: bool = True

    @property
    def halt_rule(self) -> HaltRule:
        return HaltRule(self.halt_threshold, self.degraded_threshold, self.halt_sample)

    @property
    def lease_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.lease_seconds)

"""Tunables of the run loop, resolved once by the caller."""

from __future__ import annotations

import datetime as dt
from typing import Final

from attrs import frozen

DEFAULT_PAGE_SIZE: Final = 500
DEFAULT_HALT_THRESHOLD: Final = 0.10


@frozen
class RunSettings:
    """Page size, batch size (≤ 20), the failure rate that halts a job, and the lease's lifetime.

    The lease is renewed on every batch, so its TTL only has to outlast the slowest batch; a
    runner that dies leaves a lease another runner may take once it has expired.
    """

    page_size: int = DEFAULT_PAGE_SIZE
    batch_size: int = 20
    halt_threshold: float = DEFAULT_HALT_THRESHOLD
    lease_seconds: float = 120.0

    @property
    def lease_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.lease_seconds)

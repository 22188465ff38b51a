"""What a run checks before it writes, and the clock it asks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol


class IndexState(Protocol):
    """Whether migration 035's indexes are in place: exactly-once rests on its unique index."""

    def missing_indexes(self) -> Sequence[str]:
        """``collection.index`` of every index that is absent or defined otherwise than 035 says."""
        ...


class FeatureFlags(Protocol):
    """Whether the migration is switched on for an account."""

    def is_enabled(self, company_sso_id: str) -> bool: ...


class Clock(Protocol):
    """Time comes in as a value: use cases ask this port, the core's rules never read a clock."""

    def now(self) -> dt.datetime: ...

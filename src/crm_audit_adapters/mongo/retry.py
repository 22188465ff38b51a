"""Retrying MongoDB calls that failed on the network, and translating what is left.

Every operation retried here is idempotent by construction (an insert with a client-chosen
``_id`` behind a unique index, a delete, a read, a conditional update), so a retry after an
acknowledgement was lost cannot write twice. After the last attempt, and for any other driver error,
the caller sees ``StoreUnavailable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from attrs import field, frozen
from pymongo.errors import ConnectionFailure, PyMongoError

from crm_audit_transform.errors import StoreUnavailable

__all__ = ["RetryPolicy", "call_with_retry", "is_retryable"]

T = TypeVar("T")


@frozen
class RetryPolicy:
    """How often and how patiently to retry; ``sleep`` is injectable so tests never wait."""

    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 3.0
    sleep: Callable[[float], None] = field(default=time.sleep, eq=False, repr=False)

    def delay(self, attempt: int) -> float:
        """Exponential backoff after the ``attempt``-th failure (1-based)."""
        return min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))


def is_retryable(exc: PyMongoError) -> bool:
    # AutoReconnect, NetworkTimeout, NotPrimaryError and ServerSelectionTimeoutError are all
    # ConnectionFailure; a server may also label an error as safe to retry.
    return isinstance(exc, ConnectionFailure) or exc.has_error_label("RetryableWriteError")


def call_with_retry(operation: Callable[[int], T], policy: RetryPolicy, what: str) -> T:
    """Run ``operation(attempt)`` until it succeeds; network errors are retried, others translated."""
    attempt = 1
    while True:
        try:
            return operation(attempt)
        except PyMongoError as exc:
            if not is_retryable(exc):
                raise StoreUnavailable(f"{what} failed: {exc}") from exc
            if attempt >= policy.attempts:
                raise StoreUnavailable(
                    f"{what}: MongoDB unreachable after {attempt} attempts: {exc}"
                ) from exc
            policy.sleep(policy.delay(attempt))
            attempt += 1

"""Write and retry errors say each thing once: the target of a failed write, the number of attempts."""

from __future__ import annotations

import errno
import io

import pytest
from pymongo.errors import AutoReconnect

from crm_audit_adapters.cli.exit_codes import one_line
from crm_audit_adapters.cli.standard_streams import STDOUT
from crm_audit_adapters.files import JsonlActivityLogSink
from crm_audit_adapters.files.errors import FileWriteError
from crm_audit_adapters.mongo.retry import call_with_retry
from crm_audit_adapters.retrying import RetryPolicy, attempts_made
from crm_audit_transform.errors import StoreUnavailable
from support.mongo import activity_log


class FullStdout(io.RawIOBase):
    """stdout on a full disk, as ``cli.standard_streams`` reports it: the errno, and ``<stdout>``."""

    def writable(self) -> bool:
        return True

    def write(self, _: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", STDOUT)


def test_a_full_stdout_is_named_once() -> None:
    """Before: ``cannot write activity logs to <stdout>: [Errno 28] No space left on device: '<stdout>'``."""
    sink = JsonlActivityLogSink.over_stream(FullStdout(), STDOUT)  # type: ignore[arg-type]
    with pytest.raises(FileWriteError) as caught:
        sink.insert_batch([activity_log(1)])
    assert (
        one_line(caught.value)
        == "FILE_ERROR: cannot write activity logs to <stdout>: No space left on device"
    )


@pytest.mark.parametrize(("count", "said"), [(1, "1 attempt"), (2, "2 attempts"), (4, "4 attempts")])
def test_the_attempts_are_counted_in_words(count: int, said: str) -> None:
    """``MongoDB unreachable after 1 attempts`` read wrong (``retry_attempts = 1``)."""
    assert attempts_made(count) == said


@pytest.mark.parametrize(("attempts", "said"), [(1, "after 1 attempt:"), (2, "after 2 attempts:")])
def test_mongodb_unreachable_says_how_many_attempts(attempts: int, said: str) -> None:
    """The store's ``StoreUnavailable`` after its retries, with one attempt allowed and with two."""

    def down(_: int) -> None:
        raise AutoReconnect("connection refused")

    policy = RetryPolicy(attempts=attempts, base_delay_s=0, jitter=False, sleep=lambda _: None)
    with pytest.raises(StoreUnavailable, match=f"MongoDB unreachable {said}"):
        call_with_retry(down, policy, "insert")

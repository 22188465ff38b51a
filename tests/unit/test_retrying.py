"""The adapters' one retry policy (tenacity): attempts, backoff, a server's wait, and counted retries."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from crm_audit_adapters.observability import MigrationMetrics
from crm_audit_adapters.retrying import RetryPolicy, add_retry_hook, remove_retry_hook


class Outage(Exception):
    pass


class Refusal(Exception):
    pass


def failing(times: int, error: Exception) -> tuple[list[int], Callable[[int], str]]:
    calls: list[int] = []

    def call(attempt: int) -> str:
        calls.append(attempt)
        if len(calls) <= times:
            raise error
        return "answer"

    return calls, call


def run(
    policy: RetryPolicy, call: Callable[[int], str], wait_hint: Callable[[BaseException], float] | None = None
) -> str:
    for attempt in policy.attempts_of("crm", retry_if=lambda e: isinstance(e, Outage), wait_hint=wait_hint):
        with attempt:
            return call(attempt.retry_state.attempt_number)
    raise AssertionError("unreachable")


class TestRetryPolicy:
    def test_retries_until_success_with_doubling_waits(self) -> None:
        """Failed attempts are retried after base, 2x base, … (no jitter), each call told its number."""
        waits: list[float] = []
        calls, call = failing(2, Outage())
        policy = RetryPolicy(attempts=4, base_delay_s=0.5, jitter=False, sleep=waits.append)
        assert run(policy, call) == "answer"
        assert calls == [1, 2, 3]
        assert waits == [0.5, 1.0]

    def test_the_last_failure_propagates_unchanged(self) -> None:
        """After the last attempt the call's own exception reaches the adapter, for it to translate."""
        error = Outage("down")
        calls, call = failing(9, error)
        with pytest.raises(Outage) as caught:
            run(RetryPolicy(attempts=3, sleep=lambda _: None), call)
        assert caught.value is error
        assert calls == [1, 2, 3]

    def test_what_is_not_worth_retrying_is_raised_at_once(self) -> None:
        """An exception the adapter does not call retryable ends the call on its first attempt."""
        calls, call = failing(1, Refusal())
        with pytest.raises(Refusal):
            run(RetryPolicy(attempts=5, sleep=lambda _: None), call)
        assert calls == [1]

    def test_jitter_keeps_each_wait_in_the_upper_half_and_under_the_cap(self) -> None:
        """With jitter the n-th wait lies in [ceiling/2, ceiling], ceiling = min(max, base * 2^(n-1))."""
        for draw in (0.0, 0.5, 0.999):
            policy = RetryPolicy(base_delay_s=0.1, max_delay_s=3.0, random=lambda d=draw: d)
            for n in range(1, 10):
                ceiling = min(3.0, 0.1 * 2 ** (n - 1))
                assert ceiling / 2 <= policy.delay(n) <= ceiling

    def test_a_server_requested_wait_longer_than_the_backoff_is_honoured(self) -> None:
        """``wait_hint`` (a Retry-After) replaces the backoff when it is longer, never when shorter."""
        waits: list[float] = []
        _, call = failing(2, Outage())
        policy = RetryPolicy(attempts=3, base_delay_s=1.0, jitter=False, sleep=waits.append)
        hints = iter([4.0, 0.1])
        run(policy, call, wait_hint=lambda _: next(hints))
        assert waits == [4.0, 2.0]

    def test_attempts_below_one_are_refused(self) -> None:
        """A policy that would never call is a configuration error."""
        with pytest.raises(ValueError, match="attempts"):
            RetryPolicy(attempts=0)


class TestRetriesAreCounted:
    def test_each_retry_reaches_the_hooks_and_the_metrics(self) -> None:
        """Every retry (not the final failure) reaches the hooks; the metric counts it per dependency."""
        registry = CollectorRegistry()
        metrics = MigrationMetrics(registry)
        seen: list[tuple[str, str, int]] = []

        def hook(dependency: str, error: BaseException, attempt: int) -> None:
            seen.append((dependency, type(error).__name__, attempt))

        add_retry_hook(hook)
        add_retry_hook(metrics.count_retry)
        try:
            _, call = failing(9, Outage())
            with pytest.raises(Outage):
                run(RetryPolicy(attempts=3, sleep=lambda _: None), call)
        finally:
            remove_retry_hook(hook)
            remove_retry_hook(metrics.count_retry)
        assert seen == [("crm", "Outage", 1), ("crm", "Outage", 2)]
        labels = {"dependency": "crm", "error": "Outage"}
        assert registry.get_sample_value("crm_audit_dependency_retries_total", labels) == 2

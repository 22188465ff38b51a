"""One retry policy for every adapter (CRM PostgreSQL, MongoDB, USMAN), on tenacity.

Each adapter says what is worth retrying (a dropped connection, a timeout, a 503) and what an
exhausted retry becomes (``SourceUnavailable``, ``StoreUnavailable``, ``UsmanUnavailable``); the
attempts, the exponential backoff with jitter and the counting are the same everywhere:

    for attempt in policy.attempts_of("mongo", retry_if=is_retryable):
        with attempt:
            return operation(attempt.retry_state.attempt_number)

After the last attempt the operation's own exception propagates (``reraise=True``), for the
adapter to translate. Every retry (an attempt that failed and will be followed by another) is
reported to the hooks added with :func:`add_retry_hook`; ``observability.process_metrics`` adds one
that counts ``crm_audit_dependency_retries_total{dependency, error}`` for Prometheus.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from attrs import field, frozen, validators

if TYPE_CHECKING:
    import tenacity

__all__ = ["RetryHook", "RetryPolicy", "add_retry_hook", "attempts_made", "remove_retry_hook"]

log = logging.getLogger(__name__)

RetryHook = Callable[[str, BaseException, int], None]
"""Told ``(dependency, error, failed attempt number)`` before each wait."""

_HOOKS: list[RetryHook] = []
_HOOKS_LOCK: Final = threading.Lock()


def add_retry_hook(hook: RetryHook) -> None:
    """Call ``hook`` on every retry of every adapter in this process (once, however often added)."""
    with _HOOKS_LOCK:
        if hook not in _HOOKS:
            _HOOKS.append(hook)


def remove_retry_hook(hook: RetryHook) -> None:
    with _HOOKS_LOCK:
        if hook in _HOOKS:
            _HOOKS.remove(hook)


def attempts_made(count: int) -> str:
    """``"1 attempt"``, ``"4 attempts"``: how many tries an error message says were made."""
    return "1 attempt" if count == 1 else f"{count} attempts"


def _report(dependency: str, attempts: int) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is None:
            return
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        # Driver messages may quote a server's text: only messages an adapter wrote itself are logged.
        detail = str(error) if getattr(error, "safe_to_log", False) else type(error).__name__
        log.warning(
            "%s attempt %d/%d failed (%s); retrying in %.3fs",
            dependency,
            state.attempt_number,
            attempts,
            detail,
            wait,
        )
        for hook in tuple(_HOOKS):
            hook(dependency, error, state.attempt_number)

    return before_sleep


@frozen
class RetryPolicy:
    """How often and how patiently an adapter retries a failed call.

    ``attempts`` counts the first call (1 = never retry). The wait after failed attempt ``n`` is
    ``min(max_delay_s, base_delay_s * 2 ** (n - 1))``, drawn uniformly from its upper half when
    ``jitter`` (so reconnecting runners do not stampede a server). ``sleep`` and ``random`` are
    injectable so tests never wait and can read the waits.
    """

    attempts: int = field(default=4, validator=validators.ge(1))
    base_delay_s: float = field(default=0.2, validator=validators.ge(0))
    max_delay_s: float = field(default=5.0, validator=validators.ge(0))
    jitter: bool = True
    sleep: Callable[[float], None] = field(default=time.sleep, eq=False, repr=False)
    random: Callable[[], float] = field(default=random.random, eq=False, repr=False)

    def delay(self, failed_attempt: int) -> float:
        """The wait in seconds after the ``failed_attempt``-th failure (1-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (failed_attempt - 1))
        return ceiling / 2 + self.random() * ceiling / 2 if self.jitter else ceiling

    def attempts_of(
        self,
        dependency: str,
        *,
        retry_if: Callable[[BaseException], bool],
        wait_hint: Callable[[BaseException], float | None] | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> tenacity.Retrying:
        """The attempts of one call to ``dependency`` (``postgres``, ``mongo``, ``usman``: the label
        retries are counted under). ``retry_if`` says which exceptions are worth another attempt;
        ``wait_hint`` may give the server's own wait (a ``Retry-After``) for an exception, used
        instead of the backoff when it is larger. With ``deadline`` (a ``clock()`` reading, monotonic
        seconds), no wait is begun that would end at or past it: the last error is raised instead."""

        import tenacity  # imported by the first call: a command that reaches no server never loads it

        def wait(state: tenacity.RetryCallState) -> float:
            backoff = self.delay(state.attempt_number)
            error = state.outcome.exception() if state.outcome is not None else None
            hint = wait_hint(error) if wait_hint is not None and error is not None else None
            chosen = max(backoff, hint) if hint is not None else backoff
            # Never past the deadline; ``stop`` then gives up, as the wait would reach it.
            return chosen if deadline is None else min(chosen, max(0.0, deadline - clock()))

        def stop(state: tenacity.RetryCallState) -> bool:
            # tenacity (>= 9) computes the wait before it asks whether to stop: upcoming_sleep is it.
            if state.attempt_number >= self.attempts:
                return True
            return deadline is not None and clock() + state.upcoming_sleep >= deadline

        return tenacity.Retrying(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(retry_if),
            sleep=self.sleep,
            before_sleep=_report(dependency, self.attempts),
            reraise=True,
        )

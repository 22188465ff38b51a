"""The runner's SIGINT handling in one process: raised once (``console.InterruptOnce``), held while
processes start (``fork_server.sigint_deferred``), and a run's second Ctrl-C aborting through the
handler it found. Each test restores the process's SIGINT handler (pytest-xdist shares the process).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from crm_audit_adapters.cli.commands import _stop_on_interrupt
from crm_audit_adapters.console import InterruptOnce
from crm_audit_adapters.fork_server import sigint_deferred


@pytest.fixture(autouse=True)
def restored_sigint() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class TestInterruptOnce:
    def test_the_first_sigint_raises_and_every_later_one_is_ignored(self) -> None:
        signal.signal(signal.SIGINT, InterruptOnce())
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # closing what it holds: not interrupted again
        signal.raise_signal(signal.SIGINT)


class TestSigintDeferred:
    def test_a_sigint_in_the_body_is_raised_when_it_ends(self) -> None:
        signal.signal(signal.SIGINT, InterruptOnce())
        ran = []

        def body() -> None:
            with sigint_deferred():
                signal.raise_signal(signal.SIGINT)
                ran.append("the rest of the body")

        with pytest.raises(KeyboardInterrupt):
            body()
        assert ran == ["the rest of the body"]

    def test_each_sigint_is_passed_on_in_order_to_the_handler_it_found(self) -> None:
        seen: list[int] = []

        def handler(signum: int, frame: FrameType | None) -> None:
            seen.append(signum)

        signal.signal(signal.SIGINT, handler)
        with sigint_deferred():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            assert seen == []
        assert seen == [signal.SIGINT, signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is handler

    def test_an_ignored_sigint_stays_ignored(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with sigint_deferred():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def ctrl_c_twice_in_a_run() -> None:
    with _stop_on_interrupt() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.is_set()  # once: stop after the batch
        signal.raise_signal(signal.SIGINT)  # twice: at once


class TestRunCtrlC:
    def test_the_second_ctrl_c_aborts_through_the_handler_it_found(self) -> None:
        """The console script's: a third Ctrl-C while the run closes is ignored."""
        signal.signal(signal.SIGINT, InterruptOnce())
        with pytest.raises(KeyboardInterrupt):
            ctrl_c_twice_in_a_run()
        signal.raise_signal(signal.SIGINT)
        assert isinstance(signal.getsignal(signal.SIGINT), InterruptOnce)

    def test_without_the_console_script_the_second_ctrl_c_still_raises(self) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(KeyboardInterrupt):
            ctrl_c_twice_in_a_run()

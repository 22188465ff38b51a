"""The runner's SIGINT handling in one process: raised once (``console.InterruptOnce``) unless
lost, held while processes start (``fork_server.sigint_deferred``), and a run's second Ctrl-C
aborting through the handler it found. Each test restores the process's SIGINT handler
(pytest-xdist shares the process).
"""

from __future__ import annotations

import contextlib
import copyreg
import gc
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from crm_audit_adapters.cli.commands import _stop_on_interrupt
from crm_audit_adapters.console import CtrlC, InterruptOnce, interrupt_reported
from crm_audit_adapters.fork_server import sigint_deferred


@pytest.fixture(autouse=True)
def restored_sigint() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class TestInterruptOnce:
    def test_the_first_sigint_raises_and_later_ones_are_ignored_while_it_exists(self) -> None:
        signal.signal(signal.SIGINT, InterruptOnce())
        with pytest.raises(KeyboardInterrupt) as caught:
            signal.raise_signal(signal.SIGINT)
        # ``caught`` holds it, as the command's closing does on its way out: not interrupted again.
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        assert caught.type is CtrlC

    def test_once_reported_later_ones_are_ignored_though_it_is_gone(self) -> None:
        signal.signal(signal.SIGINT, InterruptOnce())
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            interrupt_reported()  # what the CLI does as it reports it
        signal.raise_signal(signal.SIGINT)

    def test_one_dropped_unreported_is_raised_again(self) -> None:
        handler = InterruptOnce()
        signal.signal(signal.SIGINT, handler)
        with contextlib.suppress(KeyboardInterrupt):  # dropped, as C code may drop it
            signal.raise_signal(signal.SIGINT)
        assert handler.raised
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)

    def test_one_lost_in_copyregs_bare_except_is_raised_again(self) -> None:
        """What a dry run met: a Ctrl-C handled while ``copyreg._slotnames`` cached a class's slot
        names, which it does under a bare ``except: pass``. Pickling an aware datetime goes there
        each time (``datetime.timezone`` cannot take the cache), as each page span sent to a worker
        did. The interrupt is lost in there; the next Ctrl-C must raise, not be ignored as a second."""

        class CtrlCWhenCached(type):
            def __setattr__(cls, name: str, value: object) -> None:
                if name == "__slotnames__":
                    signal.raise_signal(signal.SIGINT)
                super().__setattr__(name, value)

        class Slotted(metaclass=CtrlCWhenCached):
            __slots__ = ("first",)

        handler = InterruptOnce()
        signal.signal(signal.SIGINT, handler)
        assert copyreg._slotnames(Slotted) == ["first"]  # type: ignore[attr-defined]  # returned: lost
        assert handler.raised
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)

    def test_one_dropped_in_a_reference_cycle_is_raised_again_before_the_collector_runs(self) -> None:
        """Code that keeps what it catches in a local of a frame of the exception's own traceback
        drops it inside a cycle (exception → traceback → frame → exception): it lives on until the
        garbage collector runs, and the next Ctrl-C was ignored as a second until then."""

        def keeps_what_it_catches() -> None:
            kept: BaseException | None = None
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt as caught:
                kept = caught  # the frame holds it after it returns: the traceback holds the frame
            assert kept is not None

        handler = InterruptOnce()
        signal.signal(signal.SIGINT, handler)
        enabled = gc.isenabled()
        gc.disable()  # the collector must not happen to run in between
        try:
            keeps_what_it_catches()
            assert handler.raised
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        finally:
            if enabled:
                gc.enable()


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

    def test_the_third_held_sigint_interrupts_the_body_at_once(self) -> None:
        """A start that never returns (its fork server stopped) gives way to a third Ctrl-C."""
        signal.signal(signal.SIGINT, InterruptOnce())
        ran = []

        def body() -> None:
            with sigint_deferred():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
                ran.append("after two: a terminal's Ctrl-C Ctrl-C is held")
                signal.raise_signal(signal.SIGINT)
                ran.append("after three")

        with pytest.raises(KeyboardInterrupt) as caught:
            body()
        assert ran == ["after two: a terminal's Ctrl-C Ctrl-C is held"]
        assert isinstance(signal.getsignal(signal.SIGINT), InterruptOnce)
        assert caught.type is CtrlC

    def test_a_run_held_three_times_stops_then_aborts_in_order(self) -> None:
        """Passed on at once, in order: a run's handler sees once (stop after the batch), then
        twice (abort)."""
        signal.signal(signal.SIGINT, InterruptOnce())
        stops: list[object] = []

        def run_starting_a_process() -> None:
            with _stop_on_interrupt() as stop, sigint_deferred():
                stops.append(stop)
                for _ in range(3):
                    signal.raise_signal(signal.SIGINT)
                stops.append("the rest of the start")

        with pytest.raises(KeyboardInterrupt):
            run_starting_a_process()
        assert len(stops) == 1
        assert isinstance(stops[0], threading.Event)
        assert stops[0].is_set()

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
        with pytest.raises(KeyboardInterrupt) as caught:
            ctrl_c_twice_in_a_run()
        signal.raise_signal(signal.SIGINT)  # while the abort is on its way out (``caught`` holds it)
        assert isinstance(signal.getsignal(signal.SIGINT), InterruptOnce)
        assert caught.type is CtrlC

    def test_without_the_console_script_the_second_ctrl_c_still_raises(self) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(KeyboardInterrupt):
            ctrl_c_twice_in_a_run()

    def test_a_run_started_ignoring_sigint_keeps_ignoring_it(self) -> None:
        """A command a script starts in the background (``cmd &``) inherits SIGINT ignored; the run
        installed its own handler over it, so two SIGINTs aborted a run meant to be out of reach of
        the shell's Ctrl-C. It now leaves SIG_IGN alone: no stop asked, no abort."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with _stop_on_interrupt() as stop:
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            assert not stop.is_set()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN

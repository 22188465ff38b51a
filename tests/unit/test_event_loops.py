"""``support.event_loops``: a test file that leaves an asyncio event loop running on the main thread
errors at its last test's teardown, naming where the loop was first seen; one that ends its loop with
the file passes. Run in a throwaway pytest project (pytester), in this process."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import asyncio

import pytest


def held():
    # A loop running on the main thread between tests, as Playwright's sync API leaves one.
    loop = asyncio.new_event_loop()
    asyncio._set_running_loop(loop)
    yield loop
    asyncio._set_running_loop(None)
    loop.close()


held_session = pytest.fixture(scope="session")(held)
held_module = pytest.fixture(scope="module")(held)
"""
TESTS = """
import asyncio


def test_one({fixture}):
    pass


def test_two():
    pass
"""
LATER = """
import asyncio


def test_later():
    pass
"""


def run(pytester: pytest.Pytester, fixture: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a=TESTS.format(fixture=fixture), test_b=LATER)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "support.event_loops", "-n", "0")


def test_a_loop_left_running_past_its_file_fails_that_file_once(pytester: pytest.Pytester) -> None:
    result = run(pytester, "held_session")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_two*",
            "*LoopLeftRunning: an asyncio event loop is still running on the main thread after test_a.py"
            " ended; first seen after test_a.py::test_one (fixtures: *held_session*",
        ]
    )


def test_a_loop_ended_with_its_file_passes(pytester: pytest.Pytester) -> None:
    run(pytester, "held_module").assert_outcomes(passed=3)

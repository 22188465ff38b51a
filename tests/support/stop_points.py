"""Which stop points a stop-at-every-step test visits: every other one per case, or all of them.

The tests that stop a run after each step in turn and resume it (or, with ``--workers 2``, crash
it at each save), in tests/integration/test_files_resume_repeats.py and test_files_long_repeats.py,
cost the square of a run's steps: each stop point runs the job again to its end. (The one-process
crash at every save is not shared out: the crash rule it holds is the mission's, for a few seconds.)
In a default session
(``scripts/check``, ``.ci/run``) each case of such a test visits every ``STRIDE``-th point, from an
offset its test gives it (``case``), so that the cases of one test together still visit every
point: e.g. a same-process and a new-process resume, or a source that holds a page of rows set
aside and one that pauses. ``CRM_AUDIT_TEST_STOPS=all`` makes every case visit every point.
"""

from __future__ import annotations

import os

__all__ = ["STOPS_ENV", "STRIDE", "stop_points"]

STOPS_ENV = "CRM_AUDIT_TEST_STOPS"
STRIDE = 2


def stop_points(first: int, last: int, case: int) -> range:
    """The points ``first`` to ``last`` (both included) that case number ``case`` visits: all of
    them when ``CRM_AUDIT_TEST_STOPS=all``, else every ``STRIDE``-th from ``first + case % STRIDE``
    (cases numbered 0, 1, ... each take the next offset; STRIDE of them cover every point)."""
    if os.environ.get(STOPS_ENV) == "all":
        return range(first, last + 1)
    return range(first + case % STRIDE, last + 1, STRIDE)

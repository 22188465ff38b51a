"""Session-wide fixtures: PostgreSQL, the MongoDB backends, Redis and Celery workers live in tests/support."""

import os
import signal

from hypothesis import settings

from support.celery_workers import *  # noqa: F403
from support.mongo import *  # noqa: F403
from support.postgres import *  # noqa: F403
from support.redis_server import *  # noqa: F403
from support.wire_mongo import *  # noqa: F403
from support.wire_sample import *  # noqa: F403

# Plugins of their own, as they have hooks of the same names as wire_sample's (imported above); the
# children of the test processes share one bytecode cache, compiled once (support/bytecode.py); a test
# file that leaves an asyncio event loop running on the main thread errors (support/event_loops.py).
pytest_plugins = ("support.file_order", "support.bytecode", "support.event_loops")

# The corpus's CDP holds a contact for 93-94% of each tenant's CRM people (the others are its
# contact_not_found rows), below the plan's 99% coverage gate: every command and worker the suite
# starts gets the gate at 90% from here. Tests of the gate itself set their own threshold or data.
os.environ.setdefault("CRM_AUDIT_COVERAGE_THRESHOLD", "0.9")

# A suite started in the background of a script (``cmd &`` with no job control, ``setsid``) inherits
# SIGINT ignored, and Python keeps an inherited SIG_IGN; every process the tests start inherits it in
# turn, and a command started ignoring SIGINT keeps ignoring it (``console.main``, by design). The
# Ctrl-C tests then saw exit 0 instead of 130. Each test process (one per pytest-xdist worker)
# takes SIGINT back, as a terminal gives it, unblocked, before any test runs.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

# Hypothesis fails an example that takes over 200 ms by default: on a shared 2-core machine that
# measures the machine, not the code (a passing property of tests/property/ failed so). Properties
# keep their examples and assertions; timings belong to benchmarks/.
settings.register_profile("suite", deadline=None)
# CI (``CI`` set, as .ci/run does) runs the same examples every time, with no example database, so
# its verdict on a commit is reproducible; a local run keeps exploring new examples.
settings.register_profile("ci", parent=settings.get_profile("suite"), derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "suite")

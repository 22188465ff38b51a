"""The ``wire_duplicate`` marker: which ``[wire]`` runs of the ``mongo_db`` tests a default session runs.

Every ``mongo_db`` test runs on mongomock and on the mongoeco emulator (``[wire]``). For most, the
wire run is cheap and is what the emulator is for: pymongo's network path under the adapters. A
few migrate a whole corpus account, and the emulator checks a compound unique index by scanning
the collection, so their wire run costs many times the mongomock one while repeating what it
proves. Those tests carry ``@pytest.mark.wire_duplicate``, and a default session (``scripts/check``,
``.ci/run``) leaves their ``[wire]`` run out ("deselected" in pytest's summary, never skipped):

* ``CRM_AUDIT_TEST_WIRE=all`` runs every ``[wire]`` run;
* ``-m wire_duplicate`` (or any ``-m`` naming the marker) selects by the marker as pytest does.

Their mongomock run always runs; so does their ``[real]`` run when ``CRM_AUDIT_TEST_MONGO_URI``
names a server, and so do the port contract suite and the cross-process e2e tests, all on the
emulator. Each such module keeps some ``[wire]`` runs by default (README: "Tests and what is real in them").
"""

from __future__ import annotations

import os

import pytest

__all__ = ["WIRE_ENV", "pytest_collection_modifyitems", "pytest_configure"]

WIRE_ENV = "CRM_AUDIT_TEST_WIRE"
MARKER = "wire_duplicate"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: its [wire] run repeats the mongomock run at whole-account cost; a default session "
        f"leaves that run out ({WIRE_ENV}=all runs it; tests/support/wire_sample.py)",
    )


def _is_sampled_out(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    on_wire = callspec is not None and callspec.params.get("mongo_db") == "wire"
    return on_wire and item.get_closest_marker(MARKER) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``[wire]`` runs of ``wire_duplicate`` tests unless asked for (module docstring)."""
    if os.environ.get(WIRE_ENV) == "all" or MARKER in (config.option.markexpr or ""):
        return
    left_out = [item for item in items if _is_sampled_out(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not _is_sampled_out(item)]

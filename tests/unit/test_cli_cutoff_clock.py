"""``--date-range-start`` in the future is refused on the service's clock (``MigrationService.clock``),
the one its guards read and the HTTP route reads, never the wall clock.

The option's callback compared it with the wall clock: under another clock (``Overrides.clock``, a
service embedding the CLI) a cutoff after the service's time but before the wall clock's passed the
callback and met the guards' ``ValueError`` (``INTERNAL``, exit 1), and one the service would take
was refused (``USAGE``).
"""

from __future__ import annotations

import datetime as dt
import json

import mongomock
import pytest
from click.testing import CliRunner

from crm_audit_adapters.cli import Overrides, cli, exit_codes
from crm_audit_transform.testing import FixedClock

ENV = {
    "CRM_AUDIT_SETTINGS": "",
    "CRM_AUDIT_MONGO_URI": "mongodb://unused.invalid",
    "CRM_AUDIT_DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
    "CRM_AUDIT_ENABLED_COMPANIES": "*",
}
TRIGGER = ["trigger", "--company-sso-id", "c", "--tenant", "acme", "--allow-unbound-tenant", "--json"]


def trigger_at(now: dt.datetime, cutoff: str) -> dict[str, object]:
    overrides = Overrides(mongo_client=mongomock.MongoClient(tz_aware=True), clock=FixedClock(now))
    result = CliRunner().invoke(cli, [*TRIGGER, "--date-range-start", cutoff], obj=overrides, env=ENV)
    document: dict[str, object] = json.loads(result.stdout)
    assert document["command"] == "trigger"
    return document


def test_a_cutoff_after_the_services_time_is_a_usage_error_though_the_wall_clock_is_later() -> None:
    """Fails on the old code: ``INTERNAL`` (exit 1), the guards' ``ValueError``."""
    error = trigger_at(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "2026-06-01")["error"]
    assert error == {
        "code": "USAGE",
        "message": "Invalid value for '--date-range-start': 2026-06-01T00:00:00+00:00 is in the future",
        "exit_code": exit_codes.USAGE,
    }


@pytest.mark.parametrize("cutoff", ["2099-01-01", "2099-12-31T23:59:59+0000"])
def test_a_cutoff_before_the_services_time_reaches_the_service_though_the_wall_clock_is_earlier(
    cutoff: str,
) -> None:
    """Fails on the old code: ``USAGE``, refused on the wall clock. Here the service answers: its
    indexes are not in place in this empty CDP (``INDEXES_MISSING``), past the cutoff's check."""
    error = trigger_at(dt.datetime(2100, 1, 1, tzinfo=dt.UTC), cutoff)["error"]
    assert isinstance(error, dict)
    assert error["code"] == "INDEXES_MISSING"

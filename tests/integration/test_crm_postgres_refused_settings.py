"""A DSN whose own settings rule the connection out is configuration, refused at once, never retried."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from crm_audit_adapters.crm_postgres import (
    PostgresConnectionFactory,
    PostgresPeopleCounter,
    ReadOnlySession,
    RetryPolicy,
)
from crm_audit_transform.errors import ConnectionRejected

pytestmark = pytest.mark.postgres

PASSWORD = "Kx9vQ7zR-pg"

# Each fails before a query on every attempt, whatever server the session runs on: libpq's own check
# of the settings, or a requirement no test server meets (none of them authenticates with GSSAPI).
REFUSED = [
    pytest.param(
        {"service": "crm_audit_no_such_service"}, 'definition of service "', id="service-not-defined"
    ),
    pytest.param({"service": "crm_audit_no_such_file"}, 'service file "', id="service-file-missing"),
    pytest.param(
        {"sslmode": "prefer", "sslnegotiation": "direct"}, "sslnegotiation", id="sslnegotiation-weak"
    ),
    pytest.param({"require_auth": "gss"}, "authentication method requirement", id="require-auth-not-met"),
]


@pytest.mark.parametrize(("options", "words"), REFUSED)
def test_settings_that_rule_the_connection_out_are_refused_without_a_retry(
    options: dict[str, str], words: str, crm_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ConnectionRejected`` (exit 3, never retried by a run or a Celery task) at the first attempt,
    naming libpq's reason and no secret. Before: ``SourceUnavailable`` after every retry (exit 6),
    as if the server were down, and retried again by each run."""
    # An empty service file defines no service; the service "…_no_such_file" is looked up in none.
    services = tmp_path / "pg_service.conf"
    if options.get("service") != "crm_audit_no_such_file":
        services.write_text("")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.setenv("PGSYSCONFDIR", str(tmp_path))
    dsn = make_conninfo(crm_dsn, password=PASSWORD, **options)
    slept: list[float] = []
    session = ReadOnlySession(
        PostgresConnectionFactory(dsn, connect_timeout_s=5),
        retry=RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02),
        sleep=slept.append,
    )
    with pytest.raises(ConnectionRejected) as refused:
        PostgresPeopleCounter(session).count_people("acme")
    message = str(refused.value)
    assert words in message
    assert "database_url" in message
    assert PASSWORD not in message
    assert slept == []  # the first attempt decided it


def test_a_dsn_the_server_accepts_still_connects(crm_dsn: str) -> None:
    """The settings above refused, not every DSN with options: the corpus DSN with ``sslmode=disable``."""
    dsn = make_conninfo(crm_dsn, sslmode="disable")
    assert conninfo_to_dict(dsn)["sslmode"] == "disable"
    with ReadOnlySession.from_dsn(dsn) as session:
        assert PostgresPeopleCounter(session).count_people("acme") > 0

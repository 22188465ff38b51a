"""``run --metrics-port``: the run's Prometheus metrics served over HTTP while it migrates."""

from __future__ import annotations

import json
import socket
import urllib.request

import cli_world
import mongomock
import pytest
from cli_world import COMPANY, TENANT, clean_world, make_cli, seed_contacts

from crm_audit_adapters.cli import exit_codes
from support.redis_server import free_port
from support.usman_server import TOKEN, UsmanServer

pytestmark = pytest.mark.postgres
usman = cli_world.usman  # the CLI world's fixture


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)]
    assert values, f"no sample {prefix!r}"
    return values[0]


class TestRunMetricsPort:
    def test_run_serves_counts_that_match_the_job_and_logs_json_lines(
        self, crm_dsn: str, usman: UsmanServer
    ) -> None:
        """After run --metrics-port, /metrics shows the job's rows and state; stderr has JSON batch lines."""
        client = mongomock.MongoClient(tz_aware=True)
        run_cli = make_cli(crm_dsn, usman, client)
        assert run_cli("indexes", "up").exit_code == 0
        seed_contacts(client)
        assert run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT).exit_code == 0
        port = free_port()
        ran = run_cli("run", "--company-sso-id", COMPANY, "--no-progress", "--metrics-port", str(port))
        assert ran.exit_code == 0, ran.output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        expected = clean_world().jobs.latest(COMPANY)
        assert expected is not None
        assert sample(text, "crm_audit_rows_total", outcome="migrated", reason="") >= expected.tally.migrated
        assert sample(text, "crm_audit_job_state", company_sso_id=COMPANY, status="completed") == 1.0
        assert sample(text, "crm_audit_batch_write_seconds_count") > 0
        lines = [json.loads(line) for line in ran.stderr.splitlines() if line.startswith("{")]
        batches = [line for line in lines if line["event"] == "batch"]
        assert sum(line["processed"] for line in batches) == expected.tally.processed
        assert TOKEN not in ran.stderr

    def test_a_metrics_port_in_use_is_a_configuration_error_before_anything_runs(
        self, crm_dsn: str, usman: UsmanServer
    ) -> None:
        """run --metrics-port on a port another process listens on: CONFIG_INVALID (exit 3) naming the
        option and the port, not FILE_ERROR; the job is not run."""
        client = mongomock.MongoClient(tz_aware=True)
        run_cli = make_cli(crm_dsn, usman, client)
        assert run_cli("indexes", "up").exit_code == 0
        seed_contacts(client)
        assert run_cli("trigger", "--company-sso-id", COMPANY, "--tenant", TENANT).exit_code == 0
        with socket.socket() as taken:
            taken.bind(("0.0.0.0", 0))
            taken.listen()
            port = taken.getsockname()[1]
            ran = run_cli("run", "--company-sso-id", COMPANY, "--no-progress", "--metrics-port", str(port))
        assert ran.exit_code == exit_codes.CONFIG, ran.output
        assert ran.stderr.startswith("error: CONFIG_INVALID"), ran.stderr
        assert f"--metrics-port: cannot serve /metrics on port {port}" in ran.stderr
        job = client["cdp"]["crm_activity_log_migration_jobs"].find_one({"company_sso_id": COMPANY})
        assert job is not None
        assert job["records_processed"] == 0

"""Metrics and log lines from the run loop's hook and port decorators, with a private registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from structlog.testing import capture_logs

from crm_audit_adapters.observability import JobObserver, MigrationMetrics, observed_ports
from crm_audit_adapters.observability.exporter import MULTIPROC_ENV, metrics_registry
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.testing import InMemorySsoDirectory
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.run import run_job
from support.corpus_account import World


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def observed_run(
    world: World, registry: CollectorRegistry
) -> tuple[list[dict[str, object]], MigrationMetrics]:
    metrics = MigrationMetrics(registry)
    observer = JobObserver(structlog.get_logger(), metrics=metrics)
    job = world.trigger()
    observer.started(job)
    with capture_logs() as lines:
        run_job(
            world.company,
            observed_ports(world.run_ports(), metrics),
            world.transformer,
            owner="runner-1",
            settings=RunSettings(halt_threshold=1.0),
            on_progress=observer,
        )
    return lines, metrics


class TestRunMetrics:
    def test_rows_by_outcome_and_reason_sum_to_the_jobs_counts(self) -> None:
        """crm_audit_rows_total per outcome and reason adds up to the finished job's tally."""
        world, registry = World("acme"), CollectorRegistry()
        observed_run(world, registry)
        job = world.jobs.latest(world.company)
        assert job is not None
        assert job.status == COMPLETED
        assert value(registry, "crm_audit_rows_total", outcome="migrated", reason="") == job.tally.migrated
        for reason, count in job.tally.skipped.items():
            assert value(registry, "crm_audit_rows_total", outcome="skipped", reason=reason) == count
        assert value(registry, "crm_audit_job_state", company_sso_id=world.company, status=COMPLETED) == 1.0

    def test_batch_writes_are_timed_and_lookups_counted(self) -> None:
        """Every insert lands in the latency histogram; each lookup port's calls and ids are counted."""
        world, registry = World("acme"), CollectorRegistry()
        observed_run(world, registry)
        job = world.jobs.latest(world.company)
        assert job is not None
        assert value(registry, "crm_audit_batch_write_seconds_count") >= job.tally.migrated / 20
        for port in ("users", "sso", "contacts"):
            assert value(registry, "crm_audit_lookup_calls_total", port=port) > 0
            assert value(registry, "crm_audit_lookup_ids_total", port=port) >= value(
                registry, "crm_audit_lookup_calls_total", port=port
            )

    def test_a_usman_outage_counts_degraded_actors(self) -> None:
        """Emails of a failed USMAN call are counted as degraded actors; the run still completes."""
        world, registry = World("acme"), CollectorRegistry()
        world.sso = InMemorySsoDirectory({}, failing=True)
        observed_run(world, registry)
        assert value(registry, "crm_audit_usman_degraded_total") > 0


class TestRunLogs:
    def test_one_line_per_batch_and_per_state_change_with_the_job_keys(self) -> None:
        """Each batch and the final state change log company_sso_id, job_id and shard."""
        world, registry = World("acme"), CollectorRegistry()
        lines, _ = observed_run(world, registry)
        batches = [line for line in lines if line["event"] == "batch"]
        states = [line for line in lines if line["event"] == "job_state"]
        job = world.jobs.latest(world.company)
        assert job is not None
        assert sum(int(line["processed"]) for line in batches) == job.tally.processed  # type: ignore[call-overload]
        assert [line["status"] for line in states] == [COMPLETED]
        for line in batches + states:
            assert (line["company_sso_id"], line["job_id"], line["shard"]) == (
                world.company,
                job.job_id,
                None,
            )


class TestJobStarted:
    def test_job_started_is_logged_with_the_first_write_under_the_lease_not_before(self) -> None:
        """started() logs nothing (the run may still wait for the lease); the first durable write logs
        job_started, with the cursor the run started from, before its batch line."""
        world = World("acme")
        observer = JobObserver(structlog.get_logger(), metrics=MigrationMetrics(CollectorRegistry()))
        job = world.trigger()
        with capture_logs() as before:
            observer.started(job)
        assert before == []
        with capture_logs() as lines:
            run_job(
                world.company,
                world.run_ports(),
                world.transformer,
                owner="runner-1",
                settings=RunSettings(halt_threshold=1.0),
                on_progress=observer,
            )
        events = [line["event"] for line in lines]
        assert events[:2] == ["job_started", "batch"]
        assert events.count("job_started") == 1
        assert (lines[0]["status"], lines[0]["last_audit_id"]) == ("in_progress", 0)


class TestMultiprocessExporter:
    def test_a_value_file_just_created_empty_is_left_out_not_a_failed_scrape(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A prefork process creates its value file empty, then sizes it: a scrape in between read 0
        bytes and failed whole (struct.error, HTTP 500). Now that file is left out and every other
        process's values are served. Fails on the old code with struct.error."""
        written = MmapedDict(str(tmp_path / "counter_101.db"))
        key = mmap_key(
            "crm_audit_rows_total", "crm_audit_rows_total", ["outcome", "reason"], ["migrated", ""], ""
        )
        written.write_value(key, 7.0, 0.0)
        written.close()
        (tmp_path / "counter_102.db").touch()  # another process's, created but not sized yet
        monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
        text = generate_latest(metrics_registry()).decode()
        assert 'crm_audit_rows_total{outcome="migrated",reason=""} 7.0' in text

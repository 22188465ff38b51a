"""`status --all`'s runner column: whether anything runs an account's job in progress."""

from __future__ import annotations

import datetime as dt

import pytest

from crm_audit_adapters.cli.status_text import runner, show_status
from crm_audit_transform.jobs import JobShard
from crm_audit_transform.usecases import MigrationStatus

NOW = dt.datetime(2026, 12, 3, 2, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(seconds=60)
EARLIER = NOW - dt.timedelta(seconds=60)


def job(status: str = "in_progress", **fields: object) -> MigrationStatus:
    return MigrationStatus(company_sso_id="c-1", status=status, job_id="job-1", **fields)  # type: ignore[arg-type]


def shard(n: int, status: str = "in_progress", **lease: object) -> JobShard:
    return JobShard(
        shard=n, after_id=n * 10, until_id=n * 10 + 10, last_audit_id=n * 10, status=status, **lease
    )  # type: ignore[arg-type]


class TestRunner:
    @pytest.mark.parametrize(
        ("fields", "shown"),
        [
            ({}, "none"),
            ({"lease_owner": "h:1:celery", "lease_expires_at": LATER}, "live"),
            ({"lease_owner": "h:1:celery", "lease_expires_at": EARLIER}, "expired"),
            # A naive expiry (a store that drops the zone) is read as UTC, never a TypeError.
            ({"lease_owner": "h:1:celery", "lease_expires_at": LATER.replace(tzinfo=None)}, "live"),
        ],
    )
    def test_an_unsharded_job_in_progress_shows_its_lease(
        self, fields: dict[str, object], shown: str
    ) -> None:
        """A job no runner holds (a broker that lost its task) reads `none`, not just `in_progress`."""
        assert runner(job(**fields), NOW) == shown

    @pytest.mark.parametrize("status", ["completed", "halted", "cancelled", "not_started"])
    def test_a_job_not_in_progress_has_no_runner_column(self, status: str) -> None:
        assert runner(job(status, lease_owner="h:1:celery", lease_expires_at=LATER), NOW) == "-"

    def test_a_sharded_job_is_live_while_one_unfinished_shard_holds_a_live_lease(self) -> None:
        """Completed shards hand their lease back; one live shard among expired ones is `live`."""
        shards = (
            shard(0, "completed"),
            shard(1, lease_owner="h:1:celery", lease_expires_at=EARLIER),
            shard(2, lease_owner="h:2:celery", lease_expires_at=LATER),
        )
        assert runner(job(shards=shards), NOW) == "live"
        assert runner(job(shards=shards[:2]), NOW) == "expired"
        assert runner(job(shards=(shard(0, "completed"), shard(1))), NOW) == "none"


class TestLogsDeletedRow:
    def test_an_unfinished_chunk_is_shown_beside_logs_deleted(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A rollback killed mid-chunk: the table says how many more logs may be gone, not only 2."""
        show_status(job("rolling_back", logs_deleted=2, logs_in_unfinished_chunk=1000), as_json=False)
        rows = [line.split(None, 1) for line in capsys.readouterr().out.splitlines()]
        assert ["logs_deleted", "2, and up to 1000 more in an unfinished chunk"] in rows

    def test_a_rolled_back_job_shows_its_count_alone(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Nothing unfinished: the row is the count, as before."""
        show_status(job("rolled_back", logs_deleted=5), as_json=False)
        rows = [line.split(None, 1) for line in capsys.readouterr().out.splitlines()]
        assert ["logs_deleted", "5"] in rows

"""`status --all`'s runner column: whether anything runs an account's job in progress."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from crm_audit_adapters.cli.status_text import account_lines, runner, show_status
from crm_audit_transform.jobs import JobShard, MigrationJob
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


class TestNotResent:
    """A job whose task could not send itself again (``not_resent_at``), from the job store's record."""

    def test_a_job_no_runner_holds_with_a_task_not_re_sent_reads_not_resent(self) -> None:
        """Told apart from `none` (a message simply gone); a live or expired lease still comes first."""
        assert runner(job(not_resent_at=EARLIER), NOW) == "not-resent"
        held = {"lease_owner": "h:1:celery", "not_resent_at": EARLIER}
        assert runner(job(lease_expires_at=LATER, **held), NOW) == "live"
        assert runner(job(lease_expires_at=EARLIER, **held), NOW) == "expired"
        stamped = (shard(0, "completed"), shard(1, not_resent_at=EARLIER))
        assert runner(job(shards=stamped), NOW) == "not-resent"
        assert runner(job(shards=(shard(0, "completed", not_resent_at=EARLIER), shard(1))), NOW) == "none"

    def test_status_shows_it_in_the_table_and_the_document(self, capsys: pytest.CaptureFixture[str]) -> None:
        shards = (shard(0, not_resent_at=EARLIER), shard(1))
        show_status(job(not_resent_at=EARLIER, shards=shards), as_json=False)
        out = capsys.readouterr().out
        rows = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith("shard "))
        assert rows["not_resent"].startswith(
            "at 2026-12-03T01:59:00Z a worker's task of this job was not sent"
        )
        assert "`enqueue` sends it again" in rows["not_resent"]
        assert "task not re-sent at 2026-12-03T01:59:00Z" in out.split("shard 0", 1)[1].splitlines()[0]
        assert "not re-sent" not in out.split("shard 1", 1)[1]
        doc = job(not_resent_at=EARLIER, shards=shards).as_dict()
        assert doc["not_resent_at"] == "2026-12-03T01:59:00Z"
        assert [s["not_resent_at"] for s in doc["shards"]] == ["2026-12-03T01:59:00Z", None]

    def test_a_stamp_left_on_a_job_or_shard_that_ended_is_not_shown(self) -> None:
        """A copy's stamp, while another runner finished the job (or the shard): nothing waits any more."""
        ended = MigrationJob(
            job_id="job-1",
            company_sso_id="c-1",
            tenant="t",
            status="completed",
            cutoff=EARLIER,
            created_at=EARLIER,
            updated_at=NOW,
            not_resent_at=EARLIER,
        )
        assert MigrationStatus.of(ended).not_resent_at is None
        running = attrs.evolve(
            ended, status="in_progress", shards=(shard(0, "completed", not_resent_at=EARLIER), shard(1))
        )
        status = MigrationStatus.of(running)
        assert status.not_resent_at == EARLIER
        assert [s.not_resent_at for s in status.shards] == [None, None]


class TestDatabaseTextStaysOnItsLine:
    """A company id (or job id, tenant, reason, lease owner) holding a newline or another character
    that does not print is shown escaped, as verify's ids are: printed raw, it made a row of its own
    (a ``status: completed`` line after a crafted id) or rewrote the screen (ESC)."""

    CRAFTED = "acme\nstatus            completed\x1b[2J"

    def test_the_table_escapes_each_value(self, capsys: pytest.CaptureFixture[str]) -> None:
        show_status(
            MigrationStatus(
                company_sso_id=self.CRAFTED,
                status="halted",  # type: ignore[arg-type]
                job_id="job\r1",
                halted_reason="rate\x07",
                lease_owner="h:1\u202e",
                lease_expires_at=LATER,
            ),
            as_json=False,
        )
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "company_sso_id      acme\\nstatus            completed\\x1b[2J"
        assert [line.split(None, 1)[0] for line in lines].count("status") == 1
        rows = dict(line.split(None, 1) for line in lines)
        assert (rows["job_id"], rows["halted_reason"]) == ("job\\r1", "rate\\x07")
        assert rows["lease"].startswith("h:1\\u202e until ")
        assert all(line.isprintable() for line in lines)

    def test_status_all_keeps_one_line_per_account(self) -> None:
        crafted = MigrationStatus(company_sso_id=self.CRAFTED, status="completed", job_id="job\n2")  # type: ignore[arg-type]
        lines = list(account_lines([job(), crafted], NOW))
        assert len(lines) == 3
        assert lines[2].startswith("acme\\nstatus            completed\\x1b[2J  completed")
        assert lines[2].endswith("  job\\n2")
        assert all(line.isprintable() for line in lines)

    def test_a_long_id_is_shown_cut(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A job id, tenant or lease owner of 200,000 characters made a row of that size in the table
        and in status --all; each is its first 200 characters and its length, as verify shows ids."""
        long = "j" * 200_000
        show_status(
            MigrationStatus(
                company_sso_id="c-1",
                status="in_progress",  # type: ignore[arg-type]
                job_id=long,
                tenant=long,
                lease_owner=long,
                lease_expires_at=LATER,
            ),
            as_json=False,
        )
        rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
        for key in ("job_id", "tenant", "lease"):
            assert rows[key].startswith("j" * 200 + "… (200000 characters)"), key
            assert len(rows[key]) < 300
        listed = MigrationStatus(company_sso_id=long, status="completed", job_id=long)  # type: ignore[arg-type]
        (_, line) = account_lines([listed], NOW)
        assert len(line) < 600
        assert line.endswith("… (200000 characters)")

    def test_printable_text_is_shown_as_it_is(self) -> None:
        lines = list(account_lines([job()], NOW))
        assert lines[1].startswith(f"{'c-1':<36}  in_progress")
        assert lines[1].endswith("  job-1")

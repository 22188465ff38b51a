"""Rows with missing or odd keys each get one counted outcome in a run; loader limits are settings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from crm_audit_adapters.bootstrap import build_runtime
from crm_audit_adapters.settings import load_settings
from crm_audit_transform.domain import AuditRow, Failed, Migrated, Outcome, UnreadableTime
from crm_audit_transform.errors import ConfigError
from crm_audit_transform.jobs import COMPLETED
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.lookup import LookupContext
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World


def row(
    audit_id: int, created_at: dt.datetime | UnreadableTime | None = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
) -> AuditRow:
    return AuditRow("acme", audit_id, "Crm::Person", 1, "create", "---\nfirst_name: Ann\n", created_at)


class TestOddRowsInARun:
    def test_ids_at_or_below_zero_and_null_times_are_each_counted(self) -> None:
        """Ids -2 and 0 migrate like any row; a NULL created_at fails as missing_created_at; all counted."""
        world = World(rows=[row(-2), row(0), row(1), row(2, created_at=None)])
        job = world.trigger()
        assert job.last_audit_id == -3
        seen: list[Outcome] = []

        def record(outcomes: Sequence[Outcome]) -> None:
            seen.extend(outcomes)

        result = world.run(settings=RunSettings(halt_threshold=1.0), on_outcomes=record)
        assert result.job.status == COMPLETED
        assert (result.job.tally.processed, result.job.tally.migrated) == (4, 3)
        assert dict(result.job.tally.failed) == {"missing_created_at": 1}
        assert sorted(log.external_id for log in world.logs.logs) == [
            "crm:acme:audit:-2",
            "crm:acme:audit:0",
            "crm:acme:audit:1",
        ]
        assert [o.audit_id for o in seen] == [-2, 0, 1, 2]
        assert isinstance(seen[0], Migrated)
        assert seen[3] == Failed(2, "missing_created_at", "created_at is NULL")

    def test_explain_on_a_null_created_at_row_names_the_reason(self) -> None:
        """The stage trace of such a row ends in its failure instead of raising."""
        world = World(rows=[row(2, created_at=None)])
        trace = world.transformer.explain(row(2, created_at=None), LookupContext(), company_sso_id="co")
        assert (trace[-1].stage, trace[-1].verdict) == ("row", "failed")
        assert trace[-1].detail == "created_at is NULL"

    def test_a_time_no_datetime_holds_fails_its_row_alone(self) -> None:
        """An UnreadableTime ('infinity' read from PostgreSQL) is the row's invalid_audit_row; a run
        around it completes, and the in-memory source keeps it in every range as PostgreSQL does."""
        world = World(rows=[row(1), row(2, created_at=UnreadableTime("infinity")), row(3)])
        world.trigger(date_range_start=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        seen: list[Outcome] = []
        result = world.run(settings=RunSettings(halt_threshold=1.0), on_outcomes=seen.extend)
        assert result.job.status == COMPLETED
        assert [type(o).__name__ for o in seen] == ["Migrated", "Failed", "Migrated"]
        assert seen[1] == Failed(
            2,
            "invalid_audit_row",
            "created_at 'infinity' is not a time of the years 1-9999 (UTC) that a datetime can hold",
        )
        unreadable = row(2, created_at=UnreadableTime("infinity"))
        trace = world.transformer.explain(unreadable, LookupContext(), company_sso_id="co")
        assert (trace[-1].stage, trace[-1].verdict) == ("row", "failed")


class TestLoaderLimitSettings:
    def test_environment_and_file_set_the_limits(self, tmp_path: Path) -> None:
        """``[loader]`` in the file and ``CRM_AUDIT_LOADER_*`` (which wins) make the runtime's limits."""
        path = tmp_path / "s.toml"
        path.write_text("[loader]\nmax_bytes = 1000\nmax_depth = 9\n")
        settings = load_settings(
            path, {"CRM_AUDIT_LOADER_MAX_DEPTH": "12", "CRM_AUDIT_LOADER_MAX_NODES": "77"}
        )
        assert settings.loader == LoaderLimits(max_bytes=1000, max_nodes=77, max_depth=12)
        assert settings.describe()["loader"]["max_bytes"] == 1000
        transformer = build_runtime(settings).transformer
        big = attrs.evolve(row(1), audited_changes="---\nnotes: '" + "x" * 2000 + "'\n")
        outcome = transformer.prepare([big])[0]
        assert outcome.problem is not None
        assert outcome.problem.detail.startswith("limit_exceeded")

    def test_defaults_are_the_loaders(self) -> None:
        """With nothing set the runner uses LoaderLimits' defaults."""
        assert load_settings(None, {}).loader == LoaderLimits()

    def test_bad_values_are_reported_together(self, tmp_path: Path) -> None:
        """A non-number, a zero and an unknown key are each a problem with its source."""
        path = tmp_path / "s.toml"
        path.write_text("[loader]\nmax_nodes = 0\ncolour = 1\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, {"CRM_AUDIT_LOADER_MAX_BYTES": "1_000"})
        assert sorted(caught.value.problems) == [
            ("environment variable CRM_AUDIT_LOADER_MAX_BYTES", "expected a positive integer, got 1_000"),
            (f"settings file {path}: loader.colour", "unknown setting"),
            (f"settings file {path}: loader.max_nodes", "expected a positive integer, got 0"),
        ]
